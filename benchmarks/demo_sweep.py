"""Validation sweep of ``cpo demo``: candidate settings and beta, measured on the validation split only.

    PYTHONPATH=src python benchmarks/demo_sweep.py '{"temperature": 1.0}' '{"temperature": 0.7, "include_greedy": true}'

Each argument is a JSON object of :class:`cpo.demo.pipeline.DemoSettings` fields changed from ``FULL``. Stage 1
(SFT on the flawed references) runs once per seed and is shared by every setting that does not change it; then each
setting samples its candidates, builds its pairs and trains CPO, SFT on the chosen candidates and SFT on the
references from it. One JSON line per setting: validation exact match, chrF and preference accuracy of every run,
and the pairs' statistics. The test split is never touched.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path

import torch

from cpo.demo.pipeline import FULL, build_data, load_model, run_stage2, train_stage1

# the fields stage 1 depends on: a setting that changes one of them trains its own stage 1
STAGE1_FIELDS = ("lang", "high", "test_numbers", "validation_numbers", "sft_numbers", "pref_numbers", "flaw_share",
                 "steps", "batch_size", "learning_rate", "trainable_layers", "seed")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("overrides", nargs="+", help="JSON objects of DemoSettings fields to change from FULL")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    base, tokenizer, _ = load_model(None)
    stage1 = {}
    for text in args.overrides:
        start = time.perf_counter()
        settings = replace(FULL, **json.loads(text), seed=args.seed, eval_split="validation")
        data = build_data(settings)
        key = tuple(getattr(settings, f) for f in STAGE1_FIELDS)
        with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(sys.stderr):  # progress to stderr
            if key not in stage1:
                stage1[key] = train_stage1(base, tokenizer, data, settings, Path(tmp), progress=False)
            model, first = stage1[key]
            runs, stats, duplicates = run_stage2(model, tokenizer, data, settings, Path(tmp), progress=False)
        scores = {k: {m: round(getattr(r, m), 4) for m in ("exact_match", "chrf", "preference_accuracy")}
                  for k, r in {"sft_ref": first, **runs}.items()}
        print(json.dumps({"override": json.loads(text), "seed": args.seed, "split": "validation", "runs": scores,
                          "judges": stats, "duplicates": duplicates, "seconds": round(time.perf_counter() - start),
                          "settings": asdict(settings)}), flush=True)


if __name__ == "__main__":
    main()

"""Validation sweep behind ``cpo demo``'s settings: SFT and CPO at each setting, measured on the validation split.

The model is loaded once; every run starts from a fresh copy of it. Prints one JSON line per run (and the base
model's line first). The test split is never touched here.

    python benchmarks/demo_sweep.py '{"learning_rate": 1e-4}' '{"learning_rate": 3e-4, "trainable_layers": 4}'
"""

from __future__ import annotations

import argparse
import copy
import json
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path

import torch

from cpo.demo.measure import normalise
from cpo.demo.pipeline import FULL, build_data, measure, train_and_measure
from cpo.gguf import align_special_tokens, load_gguf_model, load_gguf_tokenizer, smollm2_gguf_path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("overrides", nargs="+", help="JSON objects of DemoSettings fields to change from FULL")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--losses", default="sft,sigmoid", help="comma-separated loss types to run per setting")
    parser.add_argument("--no-base", action="store_true", help="skip measuring the base model")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    path = smollm2_gguf_path()
    base_model, tokenizer = load_gguf_model(path), load_gguf_tokenizer(path)
    align_special_tokens(base_model, tokenizer)
    if not args.no_base:
        settings = replace(FULL, eval_split="validation")
        result = measure("base", base_model, tokenizer, build_data(settings), settings.eval_batch_size, progress=False)
        print(json.dumps({"run": "base", "exact_match": result.exact_match, "threads": args.threads}), flush=True)
    for override in args.overrides:
        settings = replace(FULL, eval_split="validation", **json.loads(override))
        data = build_data(settings)
        for loss_type in args.losses.split(","):
            start = time.perf_counter()
            with tempfile.TemporaryDirectory() as tmp:
                result, before = train_and_measure(loss_type, copy.deepcopy(base_model), tokenizer, loss_type,
                                                   data, settings, Path(tmp), progress=False,
                                                   measure_before=True)
                state = json.loads((Path(tmp) / "trainer_state.json").read_text())
            last = [h for h in state["log_history"] if "loss" in h][-1]
            items = list({p.number: p for p in data.eval_pairs}.values())
            errors = [[p.number, a] for p, a in zip(items, result.answers) if normalise(a) != normalise(p.chosen)]
            print(json.dumps({
                "run": loss_type, **json.loads(override), "exact_match": result.exact_match,
                "preference_accuracy": result.preference_accuracy, "preference_accuracy_before": before,
                "last_train_loss": last["loss"], "last_nll_loss": last.get("nll_loss"),
                "seconds": round(time.perf_counter() - start, 1), "threads": args.threads,
                "settings": asdict(settings), "errors": errors[:15],
            }), flush=True)


if __name__ == "__main__":
    main()

"""``cpo demo --task mt`` as a benchmark: the CPO paper's recipe on German->English WMT with Gemma 3 270M, 3 seeds.

    PYTHONPATH=src python benchmarks/demo_mt.py [--seed 100] [--seeds 3] [--split test]

The protocol is in docs/mt.md ("The translation demo: the protocol"), committed before the test split was run.
Stage 1 (SFT-ref) once; per seed: preference prompts, candidates, both judges' pairs, and SFT on the references, then
SFT on the chosen candidates, CPO and ARPO per judge, all from SFT-ref with the same steps, batch, learning rate and
data order. Prints one JSON line per model and per comparison; writes the results (every model's translations and
round-trip back-translations, so that each number recomputes) to ``benchmarks/results/demo-mt-<split>-cpu.json``,
the report beside it as ``.txt``, and (test split) ``docs/demo_mt.png``. Needs the Gemma packages (``make demo-mt``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch
from common import ROOT, machine

from cpo.demo.mt_pipeline import FULL, run_mt_demo
from cpo.demo.mt_report import mt_differences, write_mt_report
from cpo.files import atomic_write


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=100)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--split", choices=["test", "validation"], default="test")
    parser.add_argument("--work_dir", type=Path, default=Path("/tmp/demo-mt"),
                        help="the run folders, candidates and pairs (not kept in the repository)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    settings = replace(FULL, eval_split=args.split, seed=args.seed)
    with contextlib.redirect_stdout(sys.stderr):  # the pipeline's progress lines go to stderr
        results = run_mt_demo(settings, args.work_dir, seeds=args.seeds, progress=False)
    results["machine"] = machine()
    results["total_seconds"] = time.perf_counter() - started
    out = ROOT / "benchmarks" / "results" / f"demo-mt{'' if args.split == 'test' else '-validation'}-cpu.json"
    with atomic_write(out) as f:
        f.write(json.dumps(results, indent=1, ensure_ascii=False) + "\n")
    runs = {"base": results["base"], "sft_ref": results["stage1"]}
    for key, run in [*runs.items(), *((k, r) for s in results["seeds"] for k, r in s["runs"].items())]:
        print(json.dumps({"run": key, **{m: round(run[m], 3) for m in ("chrf", "bleu", "roundtrip")}}))
    for d in mt_differences(results):
        print(json.dumps({"comparison": f"{d['a']} - {d['b']}", **{k: d[k] for k in (
            "metric", "n", "mean", "low", "high", "outcome", "differences")}}))
    report = write_mt_report(results, args.work_dir, results["total_seconds"])
    with atomic_write(out.with_suffix(".txt")) as f:
        f.write(report.strip() + "\n")
    if args.split == "test":
        with atomic_write(ROOT / "docs" / "demo_mt.png", binary=True) as f:
            f.write((args.work_dir / "mt.png").read_bytes())
    print(json.dumps({"wall_seconds": round(results["total_seconds"]), "results": str(out.relative_to(ROOT))}))


if __name__ == "__main__":
    main()

"""``cpo demo`` with judges that err: does CPO's rejected side earn its keep when the judge is imperfect?

    PYTHONPATH=src python benchmarks/demo_judges.py [--seeds 100 101 102 103 104] [--split test]

The protocol is in docs/demo.md ("Judges that err"), committed before the test split was run. Per seed: stage 1
(SFT-ref) and SFT on the references once; candidates once; then per judge (oracle, noisy-0.2, noisy-0.4, chrf-ref)
its own pairs, and SFT on the chosen candidates, CPO and ARPO on them, all from SFT-ref with the same steps, batch,
learning rate and data order. Prints one JSON line per model per seed; writes the results (every seed's answers, so
that each number recomputes) to ``benchmarks/results/demo-judges-<split>-cpu.json`` after every seed, the report
beside it as ``.txt``, and ``docs/demo_judges.png``.
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

from cpo.demo.pipeline import FULL, run_demo
from cpo.demo.report import differences, judges_figure, write_report
from cpo.files import atomic_write

JUDGES = ("oracle", "noisy-0.2", "noisy-0.4", "chrf-ref")
ARMS = ("sft_chosen", "cpo", "arpo")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[100, 101, 102, 103, 104])
    parser.add_argument("--split", choices=["test", "validation"], default="test")
    parser.add_argument("--judges", nargs="+", default=list(JUDGES))
    parser.add_argument("--work_dir", type=Path, default=Path("/tmp/demo-judges"),
                        help="the run folders, candidates and pairs (large; not kept in the repository)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    settings = replace(FULL, eval_split=args.split, arms=ARMS, judges=tuple(args.judges), seed=args.seeds[0])
    with contextlib.redirect_stdout(sys.stderr):  # the pipeline's progress lines go to stderr
        results = run_demo(settings, args.work_dir, progress=False, seed_list=args.seeds)
    results["machine"] = machine()
    results["total_seconds"] = time.perf_counter() - started
    out = ROOT / "benchmarks" / "results" / f"demo-judges{'' if args.split == 'test' else '-validation'}-cpu.json"
    with atomic_write(out) as f:
        f.write(json.dumps(results, indent=1, ensure_ascii=False) + "\n")
    for seed in results["seeds"]:
        for key, run in seed["runs"].items():
            print(json.dumps({"seed": seed["seed"], "split": args.split, "run": key,
                              **{m: round(run[m], 4) for m in ("exact_match", "chrf", "preference_accuracy")}}))
    for d in differences(results):
        print(json.dumps({"comparison": f"{d['a']} - {d['b']}", **{k: d[k] for k in ("n", "mean", "low", "high",
                                                                                       "outcome", "differences")},
                          "mcnemar": d["mcnemar"]}))
    report = write_report(results, args.work_dir, results["total_seconds"])
    with atomic_write(out.with_suffix(".txt")) as f:
        f.write(report.strip() + "\n")
    if args.split == "test":
        judges_figure(results, ROOT / "docs" / "demo_judges.png")
    print(json.dumps({"wall_seconds": round(results["total_seconds"]), "results": str(out.relative_to(ROOT))}))


if __name__ == "__main__":
    main()

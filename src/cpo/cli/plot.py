"""`cpo plot`: training curves of one or several runs (train solid, eval dashed), from their trainer_state.json."""

from __future__ import annotations

from pathlib import Path

from .common import add_output_argument, subcommand_parser

EXAMPLES = """\
examples (runs/... are output_dir folders of `cpo train`):
  cpo plot runs/cpo                          # writes runs/cpo/training_curves.png
  cpo plot runs/cpo/checkpoint-200 --output ckpt200.png
  cpo plot runs/beta0.1 runs/beta0.5 --labels 'beta 0.1' 'beta 0.5' --output compare.png
"""


def build_parser():
    p = subcommand_parser("plot", "Draw loss, nll_loss, rewards/margins, rewards/accuracies and rewards/chosen + "
                          "rewards/rejected against step (train solid, eval dashed) from trainer_state.json of a "
                          "finished or running job, or a checkpoint folder. Several runs are overlaid.", EXAMPLES)
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run folder, checkpoint folder or its state JSON")
    add_output_argument(p, "PNG to write; default: RUN_DIR/training_curves.png for one run, "
                        "training_curves_comparison.png for several")
    p.add_argument("--labels", nargs="+", help="one legend label per run (default: folder names)")
    return p


def run(args) -> int:
    """The curves of one or several runs in one PNG."""
    from ..plot import plot_training_curves

    out = args.output
    if out is None:
        first = Path(args.run_dirs[0])
        out = (first if first.is_dir() else first.parent) / "training_curves.png" if len(args.run_dirs) == 1 \
            else Path("training_curves_comparison.png")
    print(f"written to {plot_training_curves(args.run_dirs, out, args.labels)}")
    return 0

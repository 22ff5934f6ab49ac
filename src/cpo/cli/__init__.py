"""The `cpo` command: ``train``, ``generate``, ``prefs``, ``eval``, ``plot`` and ``demo``.

Each subcommand is one module of this package, built the same way: ``HELP`` (its line in ``cpo --help``),
``build_parser()``, an optional ``parse(argv)`` (when it checks more than argparse does), and ``run(args)``, which
returns the exit status. The module is imported only when its subcommand runs, and each imports torch,
transformers, datasets, matplotlib or sacrebleu only inside ``run``, so ``cpo --help`` answers at once. A user's
mistake (:class:`cpo.errors.UsageError`) prints one message and exits with status 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from ..errors import UsageError
from .common import Formatter, setup_logging

# subcommand -> its line in `cpo --help` (kept here so that the help imports no subcommand module)
COMMANDS = {
    "train": "train with CPO: every CPOConfig flag, --config run.yaml (see `cpo train --help`)",
    "generate": "sample candidate answers from a model (prompts or sentences to translate), for `cpo prefs`",
    "prefs": "build preference pairs from scored candidates (best vs worst): chrF/BLEU, given scores, your scorer",
    "eval": "preference metrics on held-out pairs, or BLEU/chrF of translations",
    "plot": "draw training curves of one or several runs",
    "demo": "a short end-to-end demonstration on a real model (see `cpo demo --help`)",
}
DESCRIPTION = """\
Preference-train language models with Contrastive Preference Optimization (arXiv 2401.08417).

the CPO paper's loop on your own model and files (docs/cli.md has it with real numbers):
  cpo generate --model_name_or_path MODEL --src train.de --src_lang de --tgt_lang en --ref train.en \\
      --num_samples 4 --include_greedy --output cands.jsonl        # candidates from the model
  cpo prefs --candidates cands.jsonl --scorer my_qe.py:score --output prefs.jsonl   # best vs worst, your scorer
  cpo train --model_name_or_path MODEL --dataset_name prefs.jsonl --output_dir run
  cpo eval --mode translate --model_name_or_path run --src test.de --ref test.en \\
      --src_lang de --tgt_lang en --hypotheses run/hyp.en
  cpo plot run

pairs from translations you already have (your files, e.g. a WMT test set and two systems' outputs):
  cpo prefs --src test.de-en.de --ref test.de-en.en --system GPT4=gpt4.en --system ALMA=alma.en \\
      --src_lang de --tgt_lang en --output prefs.jsonl

`cpo SUBCOMMAND --help` shows each subcommand's options and examples.
"""


def version() -> str:
    """``cpo <version>`` from the installed package's metadata (no import of the library)."""
    import importlib.metadata  # here, not at the top: it costs `cpo --help` about 20 ms

    try:
        return f"cpo {importlib.metadata.version('cpo')}"
    except importlib.metadata.PackageNotFoundError:  # run from a source tree that was never installed
        return "cpo (not installed, so no version: pip install -e . in the clone)"


class _Version(argparse.Action):
    """``--version``: argparse's version action, with the version looked up only when asked for."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, help=None):
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        print(version())
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    """The top-level ``cpo`` parser; each subcommand parses its own arguments."""
    parser = argparse.ArgumentParser(prog="cpo", description=DESCRIPTION, formatter_class=Formatter)
    parser.add_argument("--version", action=_Version, help="print cpo's version and exit")
    sub = parser.add_subparsers(dest="command", metavar="{" + ",".join(COMMANDS) + "}")
    for name, line in COMMANDS.items():
        sub.add_parser(name, help=line, add_help=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``cpo`` command; returns the exit status (0 ok, 1 nothing produced, 2 a usage error)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in COMMANDS:
        parser = build_parser()
        parser.parse_args(argv)  # --help, or an unknown subcommand: argparse answers and exits
        parser.print_help(sys.stderr)
        return 2
    command, rest = argv[0], argv[1:]
    setup_logging()
    module = importlib.import_module(f"{__name__}.{command}")
    try:
        args = module.parse(rest) if hasattr(module, "parse") else module.build_parser().parse_args(rest)
        return int(module.run(args) or 0)
    except UsageError as err:
        print(f"cpo {command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"cpo {command}: interrupted", file=sys.stderr)
        return 130

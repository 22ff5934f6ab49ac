"""What every subcommand shares: the parser and its help formatter, the shared options, logging to stderr, and
writing a JSON result."""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from pathlib import Path

logger = logging.getLogger("cpo")

SPELLING_NOTE = "Every option may be written with - or _ (--output-dir is --output_dir)."


class Formatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Help text as written (examples keep their lines), with each option's default when it has one worth showing:
    not ``None`` or ``False``, and not when the help already says "default"."""

    def _get_help_string(self, action) -> str:
        text = action.help or ""
        if action.default is None or action.default is False or action.default == argparse.SUPPRESS \
                or "default" in text.lower():
            return text
        return super()._get_help_string(action)


def underscored(arg: str) -> str:
    """``--output-dir=x`` -> ``--output_dir=x``: the one spelling the parsers register (values are left alone)."""
    if not arg.startswith("--") or arg == "--":
        return arg
    name, eq, value = arg.partition("=")
    return "--" + name[2:].replace("-", "_") + eq + value


class _Underscored:
    """A parser mixin that reads ``--a-b`` as ``--a_b`` (up to a bare ``--``), so both spellings work everywhere, and
    reports a bad argument in one line."""

    def parse_known_args(self, args=None, namespace=None):
        args = list(sys.argv[1:] if args is None else args)
        end = args.index("--") if "--" in args else len(args)
        return super().parse_known_args([underscored(a) for a in args[:end]] + args[end:], namespace)

    def error(self, message):
        """One line, as a UsageError prints (not argparse's whole usage block), then exit status 2."""
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def subcommand_parser(name: str, description: str, examples: str = "", parser_class=argparse.ArgumentParser,
                      **kwargs) -> argparse.ArgumentParser:
    """The parser of ``cpo <name>``, built the same way for every subcommand: options spelled with ``_`` (``-`` is
    accepted too), no abbreviations, the examples as the epilog."""
    cls = type(parser_class.__name__, (_Underscored, parser_class), {})
    epilog = "\n\n".join(x for x in (examples.rstrip("\n"), SPELLING_NOTE) if x)
    return cls(prog=f"cpo {name}", description=description, epilog=epilog, formatter_class=Formatter,
               allow_abbrev=False, **kwargs)


def number(kind: type = int, low: float | None = None, high: float | None = None, *, above: bool = False):
    """An argparse ``type`` that reads an ``int`` or a finite ``float`` and checks its range where it is parsed:
    ``low <= value <= high`` (``low < value`` with ``above``). A bad value is argparse's one-line error naming the
    flag, the value and what is allowed (exit status 2)."""
    bounds = [f"{'>' if above else '>='} {low}"] * (low is not None) + [f"<= {high}"] * (high is not None)
    allowed = " ".join(["an integer" if kind is int else "a finite number", " and ".join(bounds)]).strip()

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {allowed}") from None
        if kind is float and not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"{text!r} is not {allowed}")
        if (low is not None and (value <= low if above else value < low)) or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"{text} is out of range: give {allowed}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


def seed_argument(parser, help: str) -> None:
    """``--seed``: an integer in [0, 2**32), the range every random generator cpo seeds accepts."""
    parser.add_argument("--seed", type=number(int, 0, 2**32 - 1), default=0, help=help)


def add_output_argument(parser, help: str, required: bool = False) -> None:
    """``--output FILE``: the file a subcommand writes (``--output_dir`` names a folder)."""
    parser.add_argument("--output", required=required, metavar="FILE", help=help)


def add_progress_argument(parser) -> None:
    """``--disable_tqdm``: progress bars off, spelled as ``cpo train``'s (TrainingArguments) flag."""
    parser.add_argument("--disable_tqdm", action="store_true", help="no progress bars (e.g. in logs of batch jobs)")


def add_model_arguments(parser) -> None:
    """``--dtype``, ``--trust_remote_code`` and ``--use_cpu``: how a subcommand loads a model for inference."""
    parser.add_argument("--dtype", choices=["auto", "float32", "bfloat16", "float16"],
                        help="weights dtype; default: the checkpoint's")
    parser.add_argument("--trust_remote_code", action="store_true", help="allow models that ship their own code")
    parser.add_argument("--use_cpu", action="store_true", help="run on the CPU even when a GPU is available (fp32)")


def add_translation_arguments(group, reference: str) -> None:
    """The sources of a translation subcommand (``--src``, ``--src_lang``, ``--tgt_lang``, ``--src_field``), its
    references (``--ref``, ``--ref_field``; ``reference`` says what they are for) and the prompt ``--template``."""
    group.add_argument("--src", help="source sentences: text file (one a line) or .json/.jsonl")
    group.add_argument("--ref", help=f"{reference}: same formats (may be the same JSON file as --src)")
    group.add_argument("--src_lang", help="source language code, e.g. de (prompt and JSON field)")
    group.add_argument("--tgt_lang", help="target language code, e.g. en (prompt, JSON field, BLEU tokenizer)")
    group.add_argument("--src_field", help="JSON field of the source (default translation.<src_lang> or <src_lang>)")
    group.add_argument("--ref_field", help="JSON field of the reference (default translation.<tgt_lang> or "
                       "<tgt_lang>)")
    group.add_argument("--template", choices=["alma", "chat"], default="alma",
                       help="alma: 'Translate this from German to English:\\nGerman: ...\\nEnglish:' (cut at the "
                       "first newline); chat: the same text as a user turn in the tokenizer's chat template")


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time (it may be swapped, e.g. by a test's capture)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def setup_logging() -> None:
    """The ``cpo`` logger's messages go to stderr, plain, from INFO up."""
    if not any(isinstance(h, _StderrHandler) for h in logger.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)


def write_json(path: str | Path, data: dict) -> Path:
    """Write ``data`` as indented UTF-8 JSON, atomically (a failure leaves what was there), creating parent folders;
    returns the path."""
    from ..files import atomic_write

    with atomic_write(path) as f:
        f.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    return Path(path)

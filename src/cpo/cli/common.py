"""What every subcommand shares: the help formatter, logging to stderr, and writing a JSON result."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

logger = logging.getLogger("cpo")


class Formatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Help text as written (examples keep their lines), with each option's default."""


def subcommand_parser(name: str, description: str, examples: str = "", parser_class=argparse.ArgumentParser,
                      **kwargs) -> argparse.ArgumentParser:
    """The parser of ``cpo <name>``, built the same way for every subcommand."""
    return parser_class(prog=f"cpo {name}", description=description, epilog=examples or None,
                        formatter_class=Formatter, allow_abbrev=False, **kwargs)


def add_model_arguments(parser) -> None:
    """``--dtype``, ``--trust_remote_code`` and ``--use_cpu``: how a subcommand loads a model for inference."""
    parser.add_argument("--dtype", choices=["auto", "float32", "bfloat16", "float16"], help="weights dtype")
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
    """Write ``data`` as indented UTF-8 JSON, creating parent folders; returns the path."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return p

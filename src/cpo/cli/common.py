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

"""Segment readers and writers: line-aligned text files (one segment a line, as the WMT test sets) and JSON files.

Light on purpose (standard library only), so that ``cpo prefs`` and the ``cpo`` parser stay fast.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

from ..errors import UsageError

JSON_SUFFIXES = (".json", ".jsonl")


def check_file(path: str | Path, what: str) -> Path:
    """``path`` as a ``Path`` if it is an existing file; otherwise a :class:`UsageError` naming ``what`` it is."""
    p = Path(path)
    if not p.exists():
        raise UsageError(f"The {what} file {str(path)!r} does not exist. Check the path (relative paths start at "
                         f"{Path.cwd()}).")
    if not p.is_file():
        raise UsageError(f"The {what} {str(path)!r} is a folder, not a file. Give the file inside it.")
    return p


def _read_text(path: Path, what: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        line = path.read_bytes()[: err.start].count(b"\n") + 1
        raise UsageError(f"The {what} file {str(path)!r} is not UTF-8 (line {line}, byte {err.start}). "
                         "Convert it, e.g. `iconv -f latin1 -t utf-8`.") from None


def read_lines(path: str | Path, what: str = "input") -> list[str]:
    """One segment per line, as in the WMT test sets: ``\\n`` ends a line, a trailing ``\\r`` is dropped, empty lines
    are kept (they are segments too). Only ``\\n`` splits: a Unicode line separator inside a sentence does not.

    Raises:
        UsageError: missing file, not UTF-8, or no lines at all.
    """
    p = check_file(path, what)
    text = _read_text(p, what)
    if not text:
        raise UsageError(f"The {what} file {str(path)!r} is empty: it needs one segment per line.")
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()  # the newline that ends the last line
    return [line[:-1] if line.endswith("\r") else line for line in lines]


def read_json_records(p: Path, what: str) -> list:
    """The records of a JSON array file, or of a JSON Lines file (blank lines skipped); errors name the line."""
    text = _read_text(p, what)
    if not text.strip():
        raise UsageError(f"The {what} file {str(p)!r} is empty: it needs one JSON record per segment.")
    if text.lstrip().startswith("["):  # a JSON array (as in wmt-human-written); else JSON Lines
        try:
            return json.loads(text)
        except json.JSONDecodeError as err:
            raise UsageError(f"The {what} file {str(p)!r} is not valid JSON (line {err.lineno}: {err.msg}).") from None
    records = []
    for n, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as err:
            raise UsageError(f"The {what} file {str(p)!r}, line {n}, is not valid JSON ({err.msg}). A .json/.jsonl "
                             "file holds a JSON array, or one JSON object per line.") from None
    return records


def _field_paths(record, prefix: str = "") -> list[str]:
    if not isinstance(record, dict):
        return [prefix] if prefix else []
    paths = []
    for key, value in record.items():
        paths.extend(_field_paths(value, f"{prefix}{key}.") if isinstance(value, dict) else [f"{prefix}{key}"])
    return paths


def _get_field(record, field: str):
    value = record
    for key in field.split("."):
        if not isinstance(value, dict) or key not in value:
            return None, False
        value = value[key]
    return value, True


def default_field(record, lang: str | None) -> str | None:
    """The field that holds ``lang``: ``translation.<lang>`` when records have a ``translation`` object, else
    ``<lang>``."""
    if lang is None:
        return None
    return f"translation.{lang}" if isinstance(record, dict) and "translation" in record else lang


def read_json_segments(path: str | Path, field: str | None = None, lang: str | None = None,
                       what: str = "input") -> list[str]:
    """Segments from a JSON array or JSON Lines file, one record per segment.

    Args:
        field: a (dotted) field name, e.g. ``"text"`` or ``"translation.de"``.
        lang: used when ``field`` is not given: ``translation.<lang>`` (WMT layout), else ``<lang>``.

    Raises:
        UsageError: no field to read, or a record without it (naming the row and the fields it has).
    """
    p = check_file(path, what)
    records = read_json_records(p, what)
    if not records:
        raise UsageError(f"The {what} file {str(path)!r} holds no records.")
    field = field or default_field(records[0], lang)
    if field is None:
        raise UsageError(f"Which field of {str(path)!r} is the {what}? Give its language (e.g. --src_lang de) or a "
                         f"field name (fields of row 1: {', '.join(_field_paths(records[0]))}).")
    out = []
    for n, record in enumerate(records, start=1):
        value, found = _get_field(record, field)
        if not found:
            raise UsageError(f"The {what} file {str(path)!r}, row {n}, has no field {field!r} (it has: "
                             f"{', '.join(_field_paths(record)) or 'no fields'}). Give the right field name or "
                             "language code.")
        if not isinstance(value, str):
            raise UsageError(f"The {what} file {str(path)!r}, row {n}, field {field!r} is a "
                             f"{type(value).__name__}, not text.")
        out.append(value)
    return out


def read_segments(path: str | Path, field: str | None = None, lang: str | None = None,
                  what: str = "input") -> list[str]:
    """Segments from a ``.json``/``.jsonl`` file (see :func:`read_json_segments`) or a text file (one a line)."""
    if Path(path).suffix.lower() in JSON_SUFFIXES:
        return read_json_segments(path, field=field, lang=lang, what=what)
    if field is not None:
        raise UsageError(f"A field name ({field!r}) was given for {str(path)!r}, which is a plain text file. Fields "
                         "apply to .json and .jsonl files only.")
    return read_lines(path, what)


def check_aligned(named: Sequence[tuple[str, Sequence]]) -> int:
    """Check that line-aligned inputs have the same number of segments; returns it.

    Args:
        named: ``(description, segments)`` pairs, e.g. ``[("source test.de", src), ("reference test.en", ref)]``.

    Raises:
        UsageError: giving both counts of the first mismatch.
    """
    (first_name, first), *rest = named
    for name, segments in rest:
        if len(segments) != len(first):
            raise UsageError(
                f"Misaligned inputs: the {first_name} has {len(first)} segments but the {name} has {len(segments)}. "
                "Line-aligned files need one segment per line for the same sentences, in the same order."
            )
    return len(first)


@contextlib.contextmanager
def atomic_write(path: str | Path):
    """Open ``path`` for writing (UTF-8, parent folders created) through a temporary file next to it that replaces
    ``path`` only when the block ends without an error: a reader never sees a half-written file, and a failure
    leaves no file (or the previous one) behind."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            yield f
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # the permissions open() would give, not mkstemp's private 0600
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_lines(path: str | Path, lines: Sequence[str]) -> int:
    """Write one segment a line, atomically. A newline inside a segment would break the alignment, so it becomes a
    space; returns how many segments were changed that way."""
    changed = 0
    with atomic_write(path) as f:
        for line in lines:
            flat = " ".join(line.replace("\r", "\n").split("\n"))
            changed += flat != line
            f.write(flat + "\n")
    return changed


def write_jsonl(path: str | Path, rows: Iterable[dict]) -> int:
    """Write rows as JSON Lines (UTF-8, non-ASCII kept), atomically; returns the row count."""
    n = 0
    with atomic_write(path) as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
            n += 1
    return n

"""Segments of translation data: line-aligned text files (one segment a line, as the WMT test sets) and JSON files
whose records hold a language's text (``translation.<lang>``). The file helpers are :mod:`cpo.files`.

Light on purpose (standard library only), so that ``cpo prefs`` and the ``cpo`` parser stay fast.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import UsageError
from ..files import check_file, read_json_records, read_lines

JSON_SUFFIXES = (".json", ".jsonl")


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



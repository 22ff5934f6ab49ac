"""Files cpo reads and writes: existing-file checks, UTF-8 text with the failing line named, JSON and JSON Lines
records, line-aligned segments, and atomic writes (a temporary file in the same folder, then ``os.replace``).

Standard library only, so that the ``cpo`` parser and ``cpo prefs`` stay fast.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

from .errors import UsageError


def check_file(path: str | Path, what: str) -> Path:
    """``path`` as a ``Path`` if it is an existing file; otherwise a :class:`UsageError` naming ``what`` it is."""
    p = Path(path)
    if not p.exists():
        raise UsageError(f"The {what} file {str(path)!r} does not exist. Check the path (relative paths start at "
                         f"{Path.cwd()}).")
    if not p.is_file():
        raise UsageError(f"The {what} {str(path)!r} is a folder, not a file. Give the file inside it.")
    return p


def read_text(path: Path, what: str) -> str:
    """The UTF-8 text of ``path``; a file in another encoding is a :class:`UsageError` naming the file and line."""
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        line = path.read_bytes()[: err.start].count(b"\n") + 1
        raise UsageError(f"The {what} file {str(path)!r} is not UTF-8 (line {line}, byte {err.start}). "
                         "Convert it, e.g. `iconv -f latin1 -t utf-8`.") from None


def check_utf8(path: Path, what: str, block: int = 1 << 20) -> None:
    """Check that ``path`` is UTF-8 without holding it in memory; a file in another encoding is a
    :class:`UsageError` naming the file and the line (what :func:`read_text` says, for files read by another library).
    """
    import codecs

    decoder, line, offset = codecs.getincrementaldecoder("utf-8")(), 1, 0
    with path.open("rb") as f:
        while chunk := f.read(block):
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError as err:
                line += chunk[: max(err.start, 0)].count(b"\n")
                raise UsageError(f"The {what} file {str(path)!r} is not UTF-8 (line {line}, byte {offset + err.start}"
                                 "). Convert it, e.g. `iconv -f latin1 -t utf-8`.") from None
            line, offset = line + chunk.count(b"\n"), offset + len(chunk)
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            raise UsageError(f"The {what} file {str(path)!r} is not UTF-8 (it ends inside a character, line {line})."
                             " Convert it, e.g. `iconv -f latin1 -t utf-8`.") from None


def read_lines(path: str | Path, what: str = "input") -> list[str]:
    """One segment per line, as in the WMT test sets: ``\\n`` ends a line, a trailing ``\\r`` is dropped, empty lines
    are kept (they are segments too). Only ``\\n`` splits: a Unicode line separator inside a sentence does not.

    Raises:
        UsageError: missing file, not UTF-8, or no lines at all.
    """
    p = check_file(path, what)
    text = read_text(p, what)
    if not text:
        raise UsageError(f"The {what} file {str(path)!r} is empty: it needs one segment per line.")
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()  # the newline that ends the last line
    return [line[:-1] if line.endswith("\r") else line for line in lines]


def read_json_records(p: Path, what: str) -> list:
    """The records of a JSON array file, or of a JSON Lines file (blank lines skipped); errors name the line."""
    text = read_text(p, what)
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


def chmod_as_open(path: str | Path) -> None:
    """Give a ``mkstemp`` file the permissions ``open()`` would have given it (``0o666`` less the umask), not
    ``mkstemp``'s private ``0o600``."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


@contextlib.contextmanager
def atomic_write(path: str | Path, binary: bool = False):
    """Open ``path`` for writing (UTF-8 text, or bytes with ``binary``; parent folders created) through a temporary
    file next to it that replaces ``path`` only when the block ends without an error, after an ``fsync``: a reader
    never sees a half-written file, and a failure leaves the previous file (or none) and no temporary file behind."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    try:
        with os.fdopen(fd, "wb") if binary else os.fdopen(fd, "w", encoding="utf-8") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())  # on disk before it replaces what was there
        chmod_as_open(tmp)
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

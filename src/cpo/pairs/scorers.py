"""Scores of candidate answers from outside: score files, and a user's scorer callable.

The callable is how a reference-free quality model (the CPO paper's KIWI-XXL / XCOMET role), a reward model or a
program that checks answers plugs in. It is named ``module:function`` or ``path/to/file.py:function`` and called
in batches of candidates::

    def score(sources: list, candidates: list[str], references: list[str | None] | None) -> list[float]:
        ...  # one float per candidate, higher is better (or pass --lower_is_better)

``sources[k]`` is the source sentence (or, without one, the prompt: a string or a list of messages) of
``candidates[k]``; ``references`` is None when no prompt has a reference.
"""

from __future__ import annotations

import importlib
import importlib.util
import math
import numbers
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from ..errors import UsageError
from ..files import read_lines


def parse_score(value: str, path: str, line: int) -> float | None:
    """A score from a score file: a number, or ``None``/``nan``/empty for a missing one."""
    text = value.strip()
    if text.lower() in ("", "none", "nan", "na", "null"):
        return None
    try:
        score = float(text)
    except ValueError:
        raise UsageError(f"The score file {path!r}, line {line}, holds {text!r}, which is not a number. A score file "
                         "has one number per line (None or an empty line for a missing score).") from None
    return score if math.isfinite(score) else None


def read_score_file(path: str, what: str) -> list[float | None]:
    """One score per line (None/nan/empty for a missing score)."""
    return [parse_score(v, path, n) for n, v in enumerate(read_lines(path, what), start=1)]


def load_scorer(spec: str) -> Callable:
    """The function named by ``module:function`` (an importable module) or ``path/to/file.py:function``.

    Raises:
        UsageError: a malformed spec, a missing file or module, or a name that is not a callable in it.
    """
    where, sep, name = spec.rpartition(":")
    if not sep or not where or not name.isidentifier():
        raise UsageError(f"--scorer {spec!r} is not MODULE:FUNCTION or FILE.py:FUNCTION (e.g. my_qe.py:score).")
    try:
        if where.endswith(".py"):
            path = Path(where).expanduser()
            if not path.is_file():
                raise UsageError(f"The scorer file {where!r} does not exist.")
            module_name = f"cpo_user_scorer_{abs(hash(str(path.resolve())))}"
            loader_spec = importlib.util.spec_from_file_location(module_name, path)
            module = importlib.util.module_from_spec(loader_spec)
            sys.modules[module_name] = module
            loader_spec.loader.exec_module(module)
        else:
            module = importlib.import_module(where)
    except UsageError:
        raise
    except Exception as err:  # the user's module failed to import: say which and why
        raise UsageError(f"Cannot load the scorer module {where!r}: {type(err).__name__}: {err}") from err
    fn = getattr(module, name, None)
    if not callable(fn):
        raise UsageError(f"The scorer module {where!r} has no function {name!r}.")
    return fn


def call_scorer(fn: Callable, sources: Sequence, candidates: Sequence[Sequence[str]],
                references: Sequence[str | None] | None, *, ids: Sequence | None = None, batch_size: int = 64,
                name: str = "scorer") -> list[list[float]]:
    """Score every candidate of every prompt with ``fn``, ``batch_size`` candidates a call.

    Args:
        sources: the source (or prompt) of each prompt.
        candidates: the candidate texts of each prompt.
        references: one reference (or None) per prompt, or None when there are none at all.
        ids: how the errors name each prompt (default: its 1-based position).

    Returns:
        The scores of each prompt's candidates, as floats.

    Raises:
        UsageError: the scorer raised, returned the wrong number of scores, or a score that is not a finite number;
        the message names the prompt and the candidate.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise UsageError(f"The {name} batch size must be an integer >= 1, got {batch_size!r}.")
    ids = list(ids) if ids is not None else list(range(1, len(candidates) + 1))
    flat = [(i, j) for i, cands in enumerate(candidates) for j in range(len(cands))]
    scores: list[list[float]] = [[0.0] * len(c) for c in candidates]
    for start in range(0, len(flat), batch_size):
        chunk = flat[start: start + batch_size]
        first = f"prompt {ids[chunk[0][0]]} candidate {chunk[0][1] + 1}"
        args = ([sources[i] for i, _ in chunk], [candidates[i][j] for i, j in chunk],
                None if references is None else [references[i] for i, _ in chunk])
        try:
            out = fn(*args)
        except Exception as err:  # the user's code: report where, keep the cause chained
            raise UsageError(f"The {name} raised {type(err).__name__}: {err} (on a batch of {len(chunk)} candidates "
                             f"starting at {first}). Nothing was written.") from err
        out = _scores_of(out, name, len(chunk), first)
        if len(out) != len(chunk):
            raise UsageError(f"The {name} returned {len(out)} scores for a batch of {len(chunk)} candidates (starting "
                             f"at {first}); it must return one float per candidate. Nothing was written.")
        for (i, j), raw in zip(chunk, out):
            value = _real(raw)
            if value is None or not math.isfinite(value):
                raise UsageError(f"The {name} gave {raw!r} for prompt {ids[i]} candidate {j + 1} "
                                 f"({candidates[i][j][:60]!r}), a {type(raw).__name__}; scores must be finite real "
                                 "numbers (int or float, not bool or str). Nothing was written.")
            scores[i][j] = value
    return scores


def _scores_of(out, name: str, size: int, first: str) -> list:
    """A scorer's return value as a list: an ordered iterable (list, tuple, generator, array, tensor), not a string,
    mapping or set, whose items :func:`call_scorer` then checks one by one."""
    if not isinstance(out, (str, bytes, dict, set, frozenset)):
        try:
            return list(out)
        except TypeError:  # not iterable (a number, a 0-d array)
            pass
    raise UsageError(f"The {name} returned a {type(out).__name__} for a batch of {size} candidates (starting at "
                     f"{first}); it must return a list of {size} numbers. Nothing was written.")


def _real(raw) -> float | None:
    """``raw`` as a float when it is a real number (a Python int or float, or a 0-d numpy/torch number), else None:
    bools, strings and containers are not scores."""
    if hasattr(raw, "item") and getattr(raw, "ndim", None) == 0 and getattr(raw, "dtype", None) is not None:
        if "bool" in str(raw.dtype) or "complex" in str(raw.dtype):
            return None
        raw = raw.item()
    if isinstance(raw, bool) or not isinstance(raw, numbers.Real):
        return None
    return float(raw)

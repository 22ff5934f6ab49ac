"""Candidates of prompts, as ``cpo generate`` writes them: a ``prompt`` (text or messages) or a ``source`` sentence,
its ``candidates``, and optionally a reference and given scores per row; then scored for :func:`cpo.pairs.rule.build_rows`
by a user's scorer, by the given scores, or by a metric against the reference.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from ..errors import UsageError
from ..files import check_aligned, check_file, read_json_records
from .rule import Candidate, Segment
from .scorers import call_scorer, load_scorer, parse_score

GENERATED_FIELDS = ("candidates", "scores", "reference_score")


@dataclass(frozen=True)
class CandidateRows:
    """What :func:`read_candidates` read: one segment per row (candidates not yet scored), the reference of each row
    (None where it has none), and whether the rows are translations (a ``source`` field) or prompts."""

    segments: list[Segment]
    references: list[str | None]
    translation: bool
    given_scores: list[list[float | None]] | None


def _row_error(path, n: int, field: str, problem: str, fix: str) -> UsageError:
    return UsageError(f"The candidates file {str(path)!r}, row {n}, field {field!r}: {problem}. {fix}")


def _check_candidate_row(path, n: int, row) -> list[str]:
    if not isinstance(row, dict):
        raise _row_error(path, n, "", f"is a {type(row).__name__}, not a JSON object", "Write one object per line.")
    cands = row.get("candidates")
    if not isinstance(cands, list) or not all(isinstance(c, str) for c in cands):
        raise _row_error(path, n, "candidates", f"is {type(cands).__name__}, not a list of strings",
                         "Give each row a 'candidates' list of texts (what `cpo generate` writes).")
    if "source" not in row and "prompt" not in row:
        raise _row_error(path, n, "prompt", "is missing (and so is 'source')",
                         "Give each row the prompt it answers, or the source sentence it translates.")
    key = "source" if "source" in row else "prompt"
    if not isinstance(row[key], (str, list)) or not row[key]:
        raise _row_error(path, n, key, "is empty or not text / a list of messages", "Give the prompt or source.")
    return cands


def read_candidates(path: str, *, references: Sequence[str | None] | None = None, reference_field: str = "reference",
                    include_reference: bool = True, reference_name: str = "reference") -> CandidateRows:
    """Rows of candidates from a JSON Lines (or JSON array) file, as ``cpo generate`` writes them: ``prompt`` (text or
    messages) or ``source`` (a sentence to translate), ``candidates`` (texts), and other fields kept with the row.

    The reference of a row is ``references[n]`` (one per row, e.g. a reference file's lines), else the row's
    ``reference_field``; with ``include_reference`` it joins the candidates as ``reference_name``. A ``scores`` list
    (one per candidate) and a ``reference_score`` are the scores of ``--metric given``.

    Raises:
        UsageError: a malformed row (naming the row and the field), or a reference file of another length.
    """
    p = check_file(path, "candidates")
    rows = read_json_records(p, "candidates")
    if not rows:
        raise UsageError(f"The candidates file {path!r} holds no rows.")
    refs = list(references) if references is not None else None
    if refs is not None:
        check_aligned([(f"candidates file {path}", rows), ("references", refs)])
    segments, references, given = [], [], []
    for n, row in enumerate(rows, start=1):
        cands = _check_candidate_row(path, n, row)
        reference = refs[n - 1] if refs is not None else row.get(reference_field)
        if reference is not None and not isinstance(reference, str):
            raise _row_error(path, n, reference_field, f"is a {type(reference).__name__}", "Give the reference text.")
        scores = row.get("scores")
        if scores is not None and (not isinstance(scores, list) or len(scores) != len(cands)):
            raise _row_error(path, n, "scores", f"does not hold one score for each of the {len(cands)} candidates",
                             "Give one number per candidate, in order.")
        candidates = [Candidate(f"candidate{j}", text, None) for j, text in enumerate(cands, start=1)]
        row_scores = list(scores) if scores is not None else [None] * len(cands)
        if include_reference and reference is not None:
            candidates.insert(0, Candidate(reference_name, reference, None))
            row_scores.insert(0, row.get("reference_score"))
        source = row["source"] if "source" in row else row["prompt"]
        kept = {k: v for k, v in row.items() if k not in (*GENERATED_FIELDS, "prompt", "source", reference_field)}
        segments.append(Segment(row.get("id", n), source, candidates, kept))
        references.append(reference)
        given.append([_given(path, n, v) for v in row_scores])
    translation = all("source" in row for row in rows)
    has_given = any(row.get("scores") is not None for row in rows)
    return CandidateRows(segments, references, translation, given if has_given else None)


def _given(path, n: int, value) -> float | None:
    if value is None:
        return None
    return parse_score(str(value), f"{path} (row {n}, field 'scores')", n)


def score_candidates(rows: CandidateRows, *, scorer: str | None = None, given: bool = False,
                     against_reference: Callable[[list[str], list[str]], list[float]] | None = None,
                     metric_name: str = "the metric", batch_size: int = 64) -> list[Segment]:
    """The segments of ``rows`` with every candidate scored, in exactly one way: by the user's ``scorer`` callable
    (``MODULE:FUNCTION``, see :mod:`cpo.pairs.scorers`), by the rows' ``scores`` fields (``given``), or by
    ``against_reference(texts, references)`` (e.g. ``cpo.mt``'s sentence chrF; ``metric_name`` names it in errors).

    Raises:
        UsageError: no reference for a reference-based metric, missing given scores, or a scorer that fails (naming
        the row and the candidate); nothing is scored partly.
    """
    segs = rows.segments
    if (scorer is not None) + given + (against_reference is not None) != 1:
        raise ValueError("score_candidates takes exactly one of scorer, given and against_reference.")
    if scorer is not None:
        fn = load_scorer(scorer)
        refs = rows.references if any(r is not None for r in rows.references) else None
        scores = call_scorer(fn, [s.source for s in segs], [[c.text for c in s.candidates] for s in segs], refs,
                             ids=[s.id for s in segs], batch_size=batch_size, name=f"scorer {scorer}")
    elif given:
        if rows.given_scores is None:
            raise UsageError("--metric given reads each row's 'scores' field (and 'reference_score'), and no row has "
                             "one. Add them, or score with --metric chrf / --scorer.")
        scores = rows.given_scores
    else:
        missing = next((s.id for s, r in zip(segs, rows.references) if r is None), None)
        if missing is not None:
            raise UsageError(f"{metric_name} scores against the reference, and row {missing} has none. Give --ref, "
                             "a 'reference' field in every row, or a reference-free --scorer.")
        scores = [against_reference([c.text for c in s.candidates], [r] * len(s.candidates))
                  for s, r in zip(segs, rows.references)]
    return [replace(s, candidates=[replace(c, score=v) for c, v in zip(s.candidates, sc)])
            for s, sc in zip(segs, scores)]

"""Scorer callables for `cpo prefs --scorer examples/scorers.py:NAME` (see cpo.pairs.scorers for the contract).

A scorer gets three lists of equal length, one entry per candidate: the source sentence (or prompt), the candidate,
and its row's reference (``references`` is None when no row has one). It returns one float per candidate, higher is
better. These two run on any machine; a neural quality-estimation model (the CPO paper's KIWI-XXL / XCOMET role) is
wrapped the same way: build its inputs from the three lists, return its segment scores.
"""

from __future__ import annotations

from sacrebleu.metrics import CHRF

_CHRF = CHRF()


def chrf_against_reference(sources: list, candidates: list[str], references: list | None) -> list[float]:
    """Sentence chrF of each candidate against its row's reference (what ``--metric chrf`` computes), as a callable."""
    if references is None:
        raise ValueError("chrf_against_reference needs references: give --ref or a 'reference' field per row.")
    return [_CHRF.sentence_score(c, [r]).score if r is not None else 0.0 for c, r in zip(candidates, references)]


def copy_and_length_check(sources: list, candidates: list[str], references: list | None) -> list[float]:
    """A reference-free check of translations: 0 for an empty answer, minus the chrF of the answer against the
    source (an answer that copies the source is not a translation), minus 50 per unit of |log2(length ratio)|
    (an answer half or twice as long as the source loses 50)."""
    import math

    scores = []
    for source, cand in zip(sources, candidates):
        if not cand.strip():
            scores.append(-200.0)
            continue
        copied = _CHRF.sentence_score(cand, [source]).score
        ratio = abs(math.log2(max(len(cand), 1) / max(len(source), 1)))
        scores.append(-copied - 50.0 * ratio)
    return scores

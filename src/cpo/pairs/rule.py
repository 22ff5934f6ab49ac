"""The best/worst rule: preference pairs from scored candidates, the CPO-paper way (arXiv 2401.08417, section 3).

For each source sentence (or prompt), every candidate (the human reference, each system's output, or samples of the
model being trained) gets a score; the best is *chosen*, the worst is *rejected*. The paper scores translations with
reference-free KIWI-XXL and XCOMET; here the score is anything a caller gives: a user's scorer callable (a quality
model, a reward model, a checker), given scores (e.g. human MQM), or a metric against the reference (``cpo.mt``'s
chrF and BLEU).

Nothing is dropped silently: every skipped segment is counted under its reason (:data:`SKIP_REASONS`).

>>> seg = Segment(1, "Hallo.", [Candidate("ref", "Hello.", 100.0), Candidate("sys", "Hi.", 20.0)])
>>> select_pair(seg, higher_is_better=True, threshold=0.0)[:2]
(Candidate(system='ref', text='Hello.', score=100.0), Candidate(system='sys', text='Hi.', score=20.0))
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

SKIP_REASONS = {
    "empty_source": "the source segment (or prompt) is empty",
    "fewer_than_two_candidates": "fewer than two non-empty, scored candidates",
    "identical": "the best and the worst candidate are the same text",
    "tie": "the best and the worst candidate have the same score",
    "below_threshold": "the score gap is smaller than --threshold",
}


@dataclass(frozen=True)
class Candidate:
    """One candidate translation of a segment; ``score`` is None when it has none."""

    system: str
    text: str
    score: float | None


@dataclass(frozen=True)
class Segment:
    """A source sentence, or a prompt (a string or a list of messages), and its candidates. ``id`` is its 1-based
    line or row number, or the data set's segment id; ``fields`` are other columns to carry into its pair row."""

    id: int | str
    source: Any
    candidates: list[Candidate]
    fields: dict = field(default_factory=dict)


def _is_empty(source: Any) -> bool:
    if isinstance(source, str):
        return not source.strip()
    return not source  # a conversation: no messages


def select_pair(segment: Segment, higher_is_better: bool, threshold: float, rng: random.Random | None = None
                ) -> tuple[Candidate | None, Candidate | None, str]:
    """The best and the worst candidate of a segment, or the reason to skip it.

    Empty and unscored candidates take no part. Among equally scored candidates, ``rng`` picks at random (so no
    system wins ties because of its name, as many do in MQM, where a perfect translation scores 0); without it the
    earliest one is *chosen* and the latest one *rejected*.

    Returns:
        ``(chosen, rejected, "")``, or ``(None, None, reason)`` with a key of :data:`SKIP_REASONS`.
    """
    if _is_empty(segment.source):
        return None, None, "empty_source"
    usable = [c for c in segment.candidates if c.text.strip() and c.score is not None]
    if len(usable) < 2:
        return None, None, "fewer_than_two_candidates"
    sign = 1.0 if higher_is_better else -1.0
    top, bottom = max(sign * c.score for c in usable), min(sign * c.score for c in usable)
    best = [c for c in usable if sign * c.score == top]
    worst = [c for c in usable if sign * c.score == bottom]
    if top == bottom:
        return None, None, "tie"
    chosen, rejected = (rng.choice(best), rng.choice(worst)) if rng is not None else (best[0], worst[-1])
    if chosen.text.strip() == rejected.text.strip():
        return None, None, "identical"
    if top - bottom < threshold:
        return None, None, "below_threshold"
    return chosen, rejected, ""


def unusable_candidates(segments: Iterable[Segment]) -> Counter:
    """How many candidates take no part in their segment's choice, by reason (``empty``, ``unscored``)."""
    counts = Counter()
    for seg in segments:
        for c in seg.candidates:
            if not c.text.strip():
                counts["empty"] += 1
            elif c.score is None:
                counts["unscored"] += 1
    return counts


def prompt_pair_row(segment: Segment, chosen: Candidate, rejected: Candidate) -> dict:
    """One preference row for a prompt (``segment.source``), plus metadata columns and the segment's ``fields``.

    A string prompt gives a standard row whose completions are the candidate texts as they are (the prompt and a
    completion concatenate to what the model generated); a conversation gives a conversational row with one
    assistant turn per completion.
    """
    if isinstance(segment.source, str):
        row = {"prompt": segment.source, "chosen": chosen.text, "rejected": rejected.text}
    else:
        row = {"prompt": segment.source, "chosen": [{"role": "assistant", "content": chosen.text.strip()}],
               "rejected": [{"role": "assistant", "content": rejected.text.strip()}]}
    return {**segment.fields, **row, **metadata(segment, chosen, rejected)}


def metadata(segment: Segment, chosen: Candidate, rejected: Candidate) -> dict:
    """The columns a pair row carries besides the pair (the trainer ignores them): segment, systems and scores."""
    return {"segment_id": segment.id, "chosen_system": chosen.system, "rejected_system": rejected.system,
            "chosen_score": chosen.score, "rejected_score": rejected.score}


@dataclass
class PairReport:
    """What :func:`build_rows` did: rows kept, segments skipped by reason, candidates left out, system wins."""

    segments: int
    rows: int
    skipped: Counter
    unusable: Counter
    chosen_systems: Counter
    rejected_systems: Counter
    reference: str | None = None

    def lines(self) -> list[str]:
        """A human-readable summary, one fact a line."""
        out = [f"segments: {self.segments}", f"pairs written: {self.rows}"]
        total = sum(self.skipped.values())
        out.append(f"segments skipped: {total}" + (":" if total else ""))
        out += [f"  {n} {k} ({SKIP_REASONS[k]})" for k, n in sorted(self.skipped.items())]
        if self.unusable:
            out.append("candidates left out of the choice: "
                       + ", ".join(f"{n} {k}" for k, n in sorted(self.unusable.items())))
        out.append("chosen by system: " + ", ".join(f"{s} {n}" for s, n in self.chosen_systems.most_common()))
        out.append("rejected by system: " + ", ".join(f"{s} {n}" for s, n in self.rejected_systems.most_common()))
        if self.reference is not None:
            out.append(f"the reference was chosen in {self.chosen_systems[self.reference]} of {self.rows} pairs and "
                       f"rejected in {self.rejected_systems[self.reference]}")
        return out


def build_rows(segments: Sequence[Segment], make_row: Callable[[Segment, Candidate, Candidate], dict], *,
               higher_is_better: bool = True, threshold: float = 0.0, seed: int | None = 0,
               reference: str | None = None) -> tuple[list[dict], PairReport]:
    """Preference rows for every segment whose best and worst candidates make a pair (see :func:`select_pair`).

    Args:
        make_row: builds a row from a segment and its chosen and rejected candidates: :func:`prompt_pair_row` for
            prompts, :func:`cpo.mt.pairs.pair_row` (with its languages bound) for translations.
        seed: breaks ties at random (None: by candidate order).
        reference: the name of the reference candidate, if any, for the report.
    """
    rng = random.Random(seed) if seed is not None else None
    rows, skipped, chosen_by, rejected_by = [], Counter(), Counter(), Counter()
    for seg in segments:
        chosen, rejected, reason = select_pair(seg, higher_is_better, threshold, rng)
        if reason:
            skipped[reason] += 1
            continue
        rows.append(make_row(seg, chosen, rejected))
        chosen_by[chosen.system] += 1
        rejected_by[rejected.system] += 1
    report = PairReport(len(segments), len(rows), skipped, unusable_candidates(segments), chosen_by, rejected_by,
                        reference if any(c.system == reference for s in segments for c in s.candidates) else None)
    return rows, report

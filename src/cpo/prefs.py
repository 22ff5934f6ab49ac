"""Preference pairs from scored candidate translations, the CPO-paper way (arXiv 2401.08417, section 3).

For each source sentence, every candidate translation (the human reference and each system's output) gets a score;
the best is *chosen*, the worst is *rejected*. The paper scores with reference-free KIWI-XXL and XCOMET; here the score
is sentence chrF or BLEU against the reference (sacrebleu), or scores the user gives (e.g. human MQM).

Nothing is dropped silently: every skipped segment is counted under its reason (:data:`SKIP_REASONS`).

>>> seg = Segment(1, "Hallo.", [Candidate("ref", "Hello.", 100.0), Candidate("sys", "Hi.", 20.0)])
>>> select_pair(seg, higher_is_better=True, threshold=0.0)[:2]
(Candidate(system='ref', text='Hello.', score=100.0), Candidate(system='sys', text='Hi.', score=20.0))
"""

from __future__ import annotations

import json
import math
import random
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from .errors import UsageError
from .mt import alma_prompt

METRICS = ("chrf", "bleu", "given")
FORMATS = ("standard", "conversational")
SKIP_REASONS = {
    "empty_source": "the source segment is empty",
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
    """A source sentence (``id``: its 1-based line number, or the data set's segment id) and its candidates."""

    id: int | str
    source: str
    candidates: list[Candidate]


def sentence_scores(hypotheses: Sequence[str], references: Sequence[str], metric: str,
                    tgt_lang: str | None = None) -> list[float]:
    """Sentence-level chrF (``chrf``) or BLEU (``bleu``, with effective n-gram order) of each hypothesis against its
    reference, on sacrebleu's 0-100 scale. BLEU's tokenizer follows ``tgt_lang`` (e.g. ``zh``) as in sacrebleu.

    Equals ``sacrebleu.sentence_chrf(h, [r]).score`` for chrF.
    """
    from sacrebleu.metrics import BLEU, CHRF

    if metric == "chrf":
        scorer = CHRF()
    elif metric == "bleu":
        scorer = BLEU(effective_order=True, trg_lang=tgt_lang or "")
    else:
        raise UsageError(f"Unknown metric {metric!r}; use one of {', '.join(METRICS)}.")
    return [scorer.sentence_score(h, [r]).score for h, r in zip(hypotheses, references)]


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


def select_pair(segment: Segment, higher_is_better: bool, threshold: float, rng: random.Random | None = None
                ) -> tuple[Candidate | None, Candidate | None, str]:
    """The best and the worst candidate of a segment, or the reason to skip it.

    Empty and unscored candidates take no part. Among equally scored candidates, ``rng`` picks at random (so no
    system wins ties because of its name, as many do in MQM, where a perfect translation scores 0); without it the
    earliest one is *chosen* and the latest one *rejected*.

    Returns:
        ``(chosen, rejected, "")``, or ``(None, None, reason)`` with a key of :data:`SKIP_REASONS`.
    """
    if not segment.source.strip():
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


def pair_row(segment: Segment, chosen: Candidate, rejected: Candidate, *, src_lang: str, tgt_lang: str,
             fmt: str = "standard", completion_prefix: str = " ") -> dict:
    """One preference row with the ALMA prompt applied, plus metadata columns (which the trainer ignores).

    Standard: ``{"prompt": "Translate this ...\\nEnglish:", "chosen": " <text>", "rejected": " <text>"}``; the
    completions start with ``completion_prefix`` (a space) so that prompt + completion reads ``English: <text>``.
    Conversational: a user turn holding the same prompt, and one assistant turn per completion.
    """
    prompt = alma_prompt(segment.source, src_lang, tgt_lang)
    if fmt == "standard":
        row = {"prompt": prompt, "chosen": completion_prefix + chosen.text.strip(),
               "rejected": completion_prefix + rejected.text.strip()}
    elif fmt == "conversational":
        row = {
            "prompt": [{"role": "user", "content": prompt}],
            "chosen": [{"role": "assistant", "content": chosen.text.strip()}],
            "rejected": [{"role": "assistant", "content": rejected.text.strip()}],
        }
    else:
        raise UsageError(f"Unknown output format {fmt!r}; use one of {', '.join(FORMATS)}.")
    row.update(segment_id=segment.id, chosen_system=chosen.system, rejected_system=rejected.system,
               chosen_score=chosen.score, rejected_score=rejected.score)
    return row


@dataclass
class PairReport:
    """What :func:`build_rows` did: rows kept, segments skipped by reason, candidates left out, system wins."""

    segments: int
    rows: int
    skipped: Counter
    unusable: Counter
    chosen_systems: Counter
    rejected_systems: Counter

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
        return out


def build_rows(segments: Sequence[Segment], *, higher_is_better: bool, threshold: float, src_lang: str,
               tgt_lang: str, fmt: str = "standard", completion_prefix: str = " ", seed: int | None = 0
               ) -> tuple[list[dict], PairReport]:
    """Preference rows for every segment whose best and worst candidates make a pair (see :func:`select_pair`);
    ``seed`` breaks ties at random (None: by candidate order)."""
    rng = random.Random(seed) if seed is not None else None
    rows, skipped, chosen_by, rejected_by = [], Counter(), Counter(), Counter()
    for seg in segments:
        chosen, rejected, reason = select_pair(seg, higher_is_better, threshold, rng)
        if reason:
            skipped[reason] += 1
            continue
        rows.append(pair_row(seg, chosen, rejected, src_lang=src_lang, tgt_lang=tgt_lang, fmt=fmt,
                             completion_prefix=completion_prefix))
        chosen_by[chosen.system] += 1
        rejected_by[rejected.system] += 1
    report = PairReport(len(segments), len(rows), skipped, unusable_candidates(segments), chosen_by, rejected_by)
    return rows, report


def write_jsonl(path: str | Path, rows: Iterable[dict]) -> int:
    """Write rows as JSON Lines (UTF-8, non-ASCII kept), creating parent folders; returns the row count."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with p.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
            n += 1
    return n

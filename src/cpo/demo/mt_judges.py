"""The translation demo's judges: how each preference prompt's candidates (its reference and the samples of SFT-ref)
become a chosen and a rejected translation, best against worst (:func:`cpo.pairs.rule.build_rows`, ties skipped
and counted).

- ``roundtrip``: reference-free, as the CPO paper's quality models are. Each candidate is translated back into the
  source language by the base model and scored by chrF against the source (:mod:`cpo.mt.roundtrip`, what
  ``cpo prefs --scorer cpo.mt.roundtrip:score`` runs). The reference is one of the candidates: the judge cannot
  tell it from a sample.
- ``chrf-ref``: sentence chrF against the reference (``cpo prefs --metric chrf``), the reference-based judging the
  paper argues against. The reference is left out of the candidates: it would score 100 and always be chosen.

Both judges score every candidate once (:func:`score_prompts`), so each can be asked about the other's pairs.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from ..mt.pairs import pair_row
from ..mt.roundtrip import BackTranslate, roundtrip_scores
from ..mt.scores import sentence_scores
from ..pairs.rule import Candidate, Segment, build_rows

JUDGES = ("roundtrip", "chrf-ref")
REFERENCE = "reference"


@dataclass(frozen=True)
class ScoredPrompt:
    """One preference prompt: its sentence ``id``, source and reference, the unique samples, and each judge's score
    of every candidate, the reference first (``texts[0]``); ``back`` holds the round-trip back-translations."""

    id: int
    source: str
    reference: str
    samples: list[str]
    roundtrip: list[float]
    chrf: list[float]
    back: list[str]

    @property
    def texts(self) -> list[str]:
        return [self.reference, *self.samples]

    def scores(self, judge: str) -> list[float]:
        return self.roundtrip if judge == "roundtrip" else self.chrf


def system(index: int) -> str:
    """The candidate name of ``texts[index]`` in pair rows: ``reference``, ``sample1``, ``sample2``, ..."""
    return REFERENCE if index == 0 else f"sample{index}"


def index_of(name: str) -> int:
    return 0 if name == REFERENCE else int(name.removeprefix("sample"))


def score_prompts(ids: list[int], sources: list[str], references: list[str], samples: list[list[str]],
                  back_translate: BackTranslate) -> list[ScoredPrompt]:
    """Score the reference and the samples of every prompt by both judges, in one back-translation pass.

    Args:
        samples: each prompt's unique samples (:func:`cpo.generation.unique_candidates`).
        back_translate: texts of the target language -> texts of the source language
            (:func:`cpo.mt.roundtrip.model_back_translator`).
    """
    texts = [t for ref, cands in zip(references, samples) for t in (ref, *cands)]
    owners = [k for k, cands in enumerate(samples) for _ in range(len(cands) + 1)]
    back: list[str] = []

    def recording(batch: list[str]) -> list[str]:
        out = list(back_translate(batch))
        back.extend(out)
        return out

    roundtrip = roundtrip_scores([sources[k] for k in owners], texts, recording)
    chrf = sentence_scores(texts, [references[k] for k in owners], "chrf")
    out, start = [], 0
    for k, cands in enumerate(samples):
        end = start + len(cands) + 1
        out.append(ScoredPrompt(ids[k], sources[k], references[k], list(cands), roundtrip[start:end],
                                chrf[start:end], back[start:end]))
        start = end
    return out


def segments(scored: list[ScoredPrompt], judge: str) -> list[Segment]:
    """The candidates each judge chooses from, scored: all of them for ``roundtrip``, the samples for ``chrf-ref``."""
    first = 0 if judge == "roundtrip" else 1
    return [Segment(p.id, p.source, [Candidate(system(i), p.texts[i], p.scores(judge)[i])
                                     for i in range(first, len(p.texts))]) for p in scored]


def judge_pairs(scored: list[ScoredPrompt], judge: str, src_lang: str, tgt_lang: str, seed: int
                ) -> tuple[list[dict], dict]:
    """The pair rows ``judge`` makes (standard ALMA-prompt rows, :func:`cpo.mt.pairs.pair_row`) and what they are:

    - ``prompts``, ``pairs`` and ``skipped`` (by reason);
    - ``reference_chosen`` / ``reference_rejected``: pairs with the reference on that side;
    - ``prefers_reference``: the share of prompts where this judge scores the reference above every sample, when the
      reference is among the candidates (for ``chrf-ref`` that is by construction, unless a sample equals it);
    - ``agreement``: of this judge's pairs of two samples, the share the other judge orders the same way (a tie there
      counts as no agreement), with their number in ``agreement_pairs``.
    """
    if judge not in JUDGES:
        raise ValueError(f"Unknown translation judge {judge!r}; use one of {', '.join(JUDGES)}.")
    make_row = functools.partial(pair_row, src_lang=src_lang, tgt_lang=tgt_lang)
    rows, report = build_rows(segments(scored, judge), make_row, seed=seed, reference=REFERENCE)
    other = JUDGES[1 - JUDGES.index(judge)]
    by_id = {p.id: p for p in scored}
    both_samples = [r for r in rows if REFERENCE not in (r["chosen_system"], r["rejected_system"])]
    agree = sum(by_id[r["segment_id"]].scores(other)[index_of(r["chosen_system"])]
                > by_id[r["segment_id"]].scores(other)[index_of(r["rejected_system"])] for r in both_samples)
    prefers = sum(p.scores(judge)[0] > max(p.scores(judge)[1:], default=float("-inf")) for p in scored)
    stats = {"judge": judge, "prompts": report.segments, "pairs": report.rows, "skipped": dict(report.skipped),
             "reference_chosen": sum(r["chosen_system"] == REFERENCE for r in rows),
             "reference_rejected": sum(r["rejected_system"] == REFERENCE for r in rows),
             "prefers_reference": prefers / max(len(scored), 1),
             "agreement": agree / len(both_samples) if both_samples else None, "agreement_pairs": len(both_samples)}
    return rows, stats

"""The demo's judges: how each preference prompt's candidates become a chosen and a rejected answer.

The CPO paper scores candidates with a quality model (KIWI-XXL, XCOMET) that errs; the demo's checker does not. A
judge lets the demo ask what CPO's rejected side is worth when the judge errs:

- ``oracle``: the checker (:func:`cpo.demo.task.checker_scores`), the reference among the candidates. Best against
  worst; a right answer always beats a wrong one.
- ``noisy-P`` (``0 < P < 1``, e.g. ``noisy-0.2``): the oracle's pairs, each one's chosen and rejected answers swapped
  with probability ``P``. The draw is one uniform number per pair from the seed, shared by every ``P`` (so
  ``noisy-0.2`` flips a subset of the pairs that ``noisy-0.4`` flips): the judge's pair accuracy is ``1 - P`` in
  expectation, and exactly the share of pairs not flipped.
- ``chrf-ref``: chrF of each sample against the training reference, which is flawed for a share of the prompts; the
  reference itself is left out of the candidates (it would always score 100). The reference-based judging that the
  paper argues against.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

from ..mt.scores import sentence_scores
from ..pairs.candidates import read_candidates, score_candidates
from ..pairs.rule import build_rows, prompt_pair_row
from .task import check_answer, normalise, prompt_number

CHECKER = "cpo.demo.task:checker_scores"
JUDGE_CHOICES = "oracle, noisy-P (0 < P < 1, e.g. noisy-0.2) or chrf-ref"
_NOISY = re.compile(r"^noisy-(0?\.\d+)$")


@dataclass(frozen=True)
class Judge:
    """One way of scoring the candidates: its ``name`` (as ``--judge`` takes it), the chance ``flip`` that a pair's
    comparison is swapped, and whether it scores against the reference (which then is no candidate)."""

    name: str
    flip: float = 0.0
    against_reference: bool = False


def parse_judge(name: str) -> Judge:
    """The judge ``--judge NAME`` names.

    >>> parse_judge("noisy-0.2")
    Judge(name='noisy-0.2', flip=0.2, against_reference=False)

    Raises:
        ValueError: an unknown name, or a noise level outside (0, 1); the message names the choices.
    """
    if name == "oracle":
        return Judge(name)
    if name == "chrf-ref":
        return Judge(name, against_reference=True)
    match = _NOISY.match(name)
    if match is None or not 0 < float(match.group(1)) < 1:
        raise ValueError(f"--judge {name!r} is not a judge; use {JUDGE_CHOICES}.")
    return Judge(name, flip=float(match.group(1)))


def chrf_against_reference(texts: list[str], references: list[str]) -> list[float]:
    """Sentence chrF (0-100) of each normalised text against its normalised reference (the ``chrf-ref`` judge)."""
    return sentence_scores([normalise(t) for t in texts], [normalise(r) for r in references], "chrf")


def _swap(row: dict) -> dict:
    """A pair row with its chosen and rejected sides (texts, systems, scores) exchanged."""
    out = dict(row)
    for a, b in (("chosen", "rejected"), ("chosen_system", "rejected_system"), ("chosen_score", "rejected_score")):
        out[a], out[b] = row[b], row[a]
    return out


def judge_pairs(judge: Judge, candidates_path: str, seed: int) -> tuple[list[dict], dict]:
    """The pairs ``judge`` makes of a ``candidates.jsonl`` (rows with ``prompt``, ``reference``, ``flaw`` and
    ``candidates``, as the demo writes them), and what they are worth by the checker's truth.

    Returns:
        ``(pair rows, stats)``: ``stats`` has the prompts, pairs, skips by reason, how often the reference was chosen
        or rejected (a flawed one chosen), ``flipped`` pairs, and, by the checker's truth, ``chosen_correct`` (the
        share of pairs whose chosen answer is right) and ``pair_accuracy`` (the share whose chosen answer the checker
        scores above the rejected one).
    """
    rows = read_candidates(candidates_path, include_reference=not judge.against_reference)
    if judge.against_reference:
        segments = score_candidates(rows, against_reference=chrf_against_reference, metric_name="chrf-ref")
    else:
        segments = score_candidates(rows, scorer=CHECKER)
    pairs, report = build_rows(segments, prompt_pair_row, seed=seed, reference="reference")
    draws = random.Random(f"noisy-{seed}")
    flips = [draws.random() < judge.flip for _ in pairs]
    pairs = [_swap(p) if flip else p for p, flip in zip(pairs, flips)]
    truth = [(check_answer(p["chosen"][0]["content"], *prompt_number(p["prompt"])),
              check_answer(p["rejected"][0]["content"], *prompt_number(p["prompt"]))) for p in pairs]
    stats = {"judge": judge.name, "prompts": report.segments, "pairs": report.rows, "skipped": dict(report.skipped),
             "reference_chosen": sum(p["chosen_system"] == "reference" for p in pairs),
             "reference_rejected": sum(p["rejected_system"] == "reference" for p in pairs),
             "flawed_references_chosen": sum(p["chosen_system"] == "reference" and p["flaw"] is not None
                                             for p in pairs),
             "flipped": sum(flips),
             "chosen_correct": sum(c == 100.0 for c, _ in truth) / max(len(pairs), 1),
             "pair_accuracy": sum(c > r for c, r in truth) / max(len(pairs), 1)}
    return pairs, stats

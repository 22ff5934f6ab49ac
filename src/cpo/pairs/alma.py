"""The ALMA-R rule: preference pairs from the CPO paper's released triplets (``haoranxu/ALMA-R-Preference``).

Each row holds, per target language ``t``, three translations in this order: the human reference ``t``, GPT-4's
``gpt4_t`` and ALMA-13B-LoRA's ``alma_t``, each scored by KIWI-XXL (a reference-free quality model), XCOMET (a
learned metric) and their average (``ref_t_kiwi``, ``gpt4_t_xcomet``, ``alma_t_kiwi_xcomet``, ...). The rule, as
the paper's released code applies it:

- the highest score is chosen and the lowest rejected; a tie goes to the earliest of reference, GPT-4, ALMA, so the
  reference wins ties on both sides (and can be rejected);
- where ``Delta`` is non-zero a human compared GPT-4 with ALMA: ``Delta > 0`` makes GPT-4 chosen, ``Delta < 0``
  ALMA (what the code does; the dataset card states the opposite);
- a row gives both directions of its language pair, or only ``required_directions`` when that is set;
- a pair whose chosen and rejected texts are equal is dropped and counted (the released code trains on it).

Rows of X-ALMA-Preference (``source``, ``chosen``, ``reject``, ``directions``) are pairs already; they are read as
they are, ``reject`` taken as the rejected side.

>>> row = {"translation": {"language_pair": "de-en", "de": "Hallo.", "en": "Hello.", "gpt4_en": "Hi.",
...        "alma_en": "Hallo.", "ref_en_kiwi_xcomet": 0.9, "gpt4_en_kiwi_xcomet": 0.9, "alma_en_kiwi_xcomet": 0.2,
...        "Delta": 0, "required_directions": "de-en"}}
>>> pairs, report = alma_pairs([row], ["de-en"])
>>> (pairs[0].chosen, pairs[0].rejected, pairs[0].chosen_system, pairs[0].rejected_system)
('Hello.', 'Hallo.', 'ref', 'alma')
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field

from ..rows import RowError

SCORE_FIELDS = ("kiwi_xcomet", "kiwi", "xcomet")
SYSTEMS = ("ref", "gpt4", "alma")  # the tie-break order
SCHEMAS = ("alma-r", "x-alma")


@dataclass(frozen=True)
class AlmaPair:
    """One preference pair: the row it came from, its direction (``"de-en"``), source and the two translations."""

    row: int
    direction: str
    source: str
    chosen: str
    rejected: str
    chosen_system: str = ""
    rejected_system: str = ""
    human: bool = False


@dataclass
class AlmaReport:
    """What the rule did: rows read, pairs per direction, the reference's fate, ties, and what was dropped."""

    schema: str = ""
    rows: int = 0
    pairs: Counter = field(default_factory=Counter)
    human_judged: int = 0
    reference_chosen: int = 0
    reference_rejected: int = 0
    top_ties: int = 0
    bottom_ties: int = 0
    identical_dropped: int = 0
    invalid: Counter = field(default_factory=Counter)

    def lines(self) -> list[str]:
        out = [f"read {self.rows} rows ({self.schema} schema); {sum(self.pairs.values())} pairs: "
               + ", ".join(f"{d} {n}" for d, n in sorted(self.pairs.items()))]
        if self.schema == "alma-r":
            out += [f"human-judged (Delta != 0, GPT-4 against ALMA): {self.human_judged}",
                    f"reference chosen {self.reference_chosen}, rejected {self.reference_rejected}",
                    f"ties for the highest score {self.top_ties}, for the lowest {self.bottom_ties} (the earliest of "
                    "reference, GPT-4, ALMA wins)",
                    f"identical chosen and rejected, dropped: {self.identical_dropped} (the released code would have "
                    "trained on them)"]
        out += [f"invalid rows skipped: {n} ({why})" for why, n in sorted(self.invalid.items())]
        return out


def detect_schema(row: dict) -> str:
    """``"alma-r"`` for ALMA-R-Preference rows (a ``translation`` mapping), ``"x-alma"`` for X-ALMA-Preference rows
    (``source``, ``chosen``, ``reject``); raises :class:`RowError` for anything else."""
    if isinstance(row.get("translation"), dict):
        return "alma-r"
    if {"source", "chosen", "reject"} <= set(row):
        return "x-alma"
    raise RowError(0, "translation", f"is missing: the columns are {sorted(row)}",
                   "give rows of haoranxu/ALMA-R-Preference (a 'translation' field) or of X-ALMA-Preference "
                   "('source', 'chosen', 'reject', 'directions')")


def _directions(pair: str, required: str | None, row: int) -> list[str]:
    parts = pair.split("-") if isinstance(pair, str) else []
    if len(parts) != 2 or not all(parts):
        raise RowError(row, "translation.language_pair", f"{pair!r} is not a language pair like 'de-en'",
                       "fix the row, or skip it with --invalid_rows skip")
    a, b = parts
    if required:
        if required not in (f"{a}-{b}", f"{b}-{a}"):
            raise RowError(row, "translation.required_directions", f"{required!r} is not a direction of {pair!r}",
                           "leave it empty or name one of the pair's two directions")
        return [required]
    return [f"{a}-{b}", f"{b}-{a}"]


def _score(t: dict, key: str, row: int) -> float:
    value = t.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        problem = "is missing" if key not in t else f"is {value!r}, not a finite number"
        raise RowError(row, f"translation.{key}", problem, "give every candidate a score in this field, pick "
                       "another with --score_field, or skip the row with --invalid_rows skip")
    return float(value)


def _text(t: dict, key: str, row: int) -> str:
    value = t.get(key)
    if not isinstance(value, str):
        raise RowError(row, f"translation.{key}", "is missing" if key not in t else "is not a string",
                       "fix the row, or skip it with --invalid_rows skip")
    return value


def _alma_r_pair(t: dict, direction: str, score_field: str, row: int, report: AlmaReport) -> AlmaPair:
    src, tgt = direction.split("-")
    source = _text(t, src, row)
    texts = [_text(t, key, row) for key in (tgt, f"gpt4_{tgt}", f"alma_{tgt}")]
    delta = t.get("Delta") or 0
    if isinstance(delta, bool) or not isinstance(delta, (int, float)) or not math.isfinite(delta):
        raise RowError(row, "translation.Delta", f"is {delta!r}, not a number", "use 0 for rows without a human "
                       "judgement, or skip the row with --invalid_rows skip")
    if delta != 0:
        best, worst = (1, 2) if delta > 0 else (2, 1)
        report.human_judged += 1
    else:
        scores = [_score(t, f"{name}_{tgt}_{score_field}", row) for name in SYSTEMS]
        best = scores.index(max(scores))  # index() finds the first: the earliest system wins a tie
        worst = scores.index(min(scores))
        report.top_ties += scores.count(max(scores)) > 1
        report.bottom_ties += scores.count(min(scores)) > 1
    return AlmaPair(row, direction, source, texts[best], texts[worst], SYSTEMS[best], SYSTEMS[worst], delta != 0)


def _x_alma_pair(r: dict, row: int) -> AlmaPair:
    for key in ("source", "chosen", "reject", "directions"):
        if not isinstance(r.get(key), str):
            raise RowError(row, key, "is missing" if key not in r else "is not a string",
                           "fix the row, or skip it with --invalid_rows skip")
    return AlmaPair(row, r["directions"], r["source"], r["chosen"], r["reject"])


def alma_pairs(rows: Iterable[dict], directions: Collection[str], *, score_field: str = "kiwi_xcomet",
               languages: Collection[str] | None = None, invalid_rows: str = "raise",
               ) -> tuple[list[AlmaPair], AlmaReport]:
    """The pairs of the ALMA-R rule (or of X-ALMA-Preference rows) for the wanted directions, and a report.

    Args:
        rows: dataset rows (dicts), 0-indexed in error messages.
        directions: wanted directions, e.g. ``["de-en", "en-de"]``.
        score_field: ``kiwi_xcomet`` (the paper's), ``kiwi`` or ``xcomet``.
        languages: the known language codes; a row in another language is an error listing them (None: any).
        invalid_rows: ``"raise"`` (a :class:`RowError` naming the row and field) or ``"skip"`` (counted).

    Raises:
        ValueError: an unknown ``score_field``, or a wanted direction that no row has.
    """
    if score_field not in SCORE_FIELDS:
        raise ValueError(f"Unknown score field {score_field!r}; use one of {', '.join(SCORE_FIELDS)}.")
    wanted, pairs, report, seen = set(directions), [], AlmaReport(), set()
    for index, row in enumerate(rows):
        report.rows += 1
        try:
            report.schema = report.schema or detect_schema(row)
            if report.schema == "x-alma":
                found = [_x_alma_pair(row, index)]
                seen.add(found[0].direction)
                found = [p for p in found if p.direction in wanted]
            else:
                t = row.get("translation")
                if not isinstance(t, dict):
                    raise RowError(index, "translation", "is missing", "give every row a 'translation' mapping")
                mine = _directions(t.get("language_pair"), t.get("required_directions") or None, index)
                seen.update(mine)
                found = [_alma_r_pair(t, d, score_field, index, report) for d in mine if d in wanted]
            for pair in found:
                _check_languages(pair, languages, index)
        except RowError as err:
            if invalid_rows == "raise":
                raise
            report.invalid[err.problem if err.field == "translation" else f"field {err.field}"] += 1
            continue
        for pair in found:
            if pair.chosen == pair.rejected:
                report.identical_dropped += 1
                continue
            report.pairs[pair.direction] += 1
            report.reference_chosen += pair.chosen_system == "ref"
            report.reference_rejected += pair.rejected_system == "ref"
            pairs.append(pair)
    missing = sorted(wanted - seen)
    if missing:
        raise ValueError(f"No row has the direction(s) {', '.join(missing)}; the data has "
                         f"{', '.join(sorted(seen)) or 'none'}. Pick --directions among those.")
    return pairs, report


def _check_languages(pair: AlmaPair, languages: Collection[str] | None, row: int) -> None:
    if languages is None:
        return
    for code in pair.direction.split("-"):
        if code not in languages:
            raise RowError(row, "translation.language_pair", f"has the unknown language code {code!r}",
                           f"use one of {', '.join(sorted(languages))}")

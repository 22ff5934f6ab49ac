"""The demo task: write a number in words, with ground truth from ``num2words``, near misses, flawed references
and the checker that scores answers.

A prompt is "Write 347 in German words."; the one correct answer is ``num2words(347, lang="de")``, i.e.
"dreihundertsiebenundvierzig". A rejected answer is a *near miss*: the words of another number, "adequate but not
perfect", one wrong word (or one wrong part of a compound word) away. Two kinds:

- ``typo`` (the demo's): the number with one typo in its digits, the edit kind drawn uniformly among substitution
  (347 -> 367), deletion (-> 37), insertion (-> 3447) and swap of neighbours (-> 437): the mistakes a model makes
  when it copies digits into words (a validation sweep found SFT's errors to be mostly of these kinds, see
  docs/demo.md).
- ``digit``: one digit of the zero-padded number changed (347 -> 346, 377, 947; 68 -> 168).

The numbers are split into train, validation and test before any pair is built, and every near miss is drawn from its
own split, so no number (as a prompt or as a rejected answer) is shared between splits.

The training references are *imperfect*, as human references often are (the CPO paper's premise): a fixed share of
them carries one flaw (:data:`FLAW_KINDS`). The held-out splits are always right. The checker
(:func:`checker_scores`) knows the right answer of every prompt: the demo's quality model.

>>> near_miss_candidates(347, width=3)[:4]
[47, 147, 247, 447]
>>> typo_candidates(68)["insertion"][:5]
[168, 268, 368, 468, 568]
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from functools import lru_cache

from num2words import num2words

from ..mt.prompts import language_name
from ..mt.scores import sentence_scores

# The languages the demo offers (num2words writes them; the prompt names them as cpo.mt.prompts does).
DEMO_LANGUAGES = ("en", "de", "fr", "es", "it", "nl", "pt")
SPLITS = ("train", "validation", "test")
_DIGITS = "0123456789"


@lru_cache(maxsize=65536)
def number_words(number: int, lang: str) -> str:
    """The correct answer: ``num2words(number, lang=lang)``."""
    return num2words(number, lang=lang)


def prompt_text(number: int, lang: str) -> str:
    """The user message, e.g. ``"Write 347 in German words."``."""
    if lang not in DEMO_LANGUAGES:
        raise ValueError(f"Unknown demo language {lang!r}; use one of {', '.join(DEMO_LANGUAGES)}.")
    return f"Write {number} in {language_name(lang)} words."


def near_miss_candidates(number: int, width: int) -> list[int]:
    """Numbers whose ``width``-digit zero-padded form differs from ``number``'s in exactly one digit.

    Ordered by digit position (most significant first), then by the new digit.

    >>> near_miss_candidates(7, width=2)
    [17, 27, 37, 47, 57, 67, 77, 87, 97, 0, 1, 2, 3, 4, 5, 6, 8, 9]
    """
    digits = f"{number:0{width}d}"
    if len(digits) != width or number < 0:
        raise ValueError(f"{number} is not a number of at most {width} digits.")
    return [
        int(digits[:pos] + new + digits[pos + 1 :])
        for pos in range(width) for new in "0123456789" if new != digits[pos]
    ]


def typo_candidates(number: int) -> dict[str, list[int]]:
    """Numbers one typo away from ``number``'s decimal digits, by kind of edit (no leading zeros), each list sorted.

    >>> typo_candidates(12)
    {'substitution': [10, 11, 13, 14, 15, 16, 17, 18, 19, 22, 32, 42, 52, 62, 72, 82, 92], 'deletion': [1, 2], \
'insertion': [102, 112, 120, 121, 122, 123, 124, 125, 126, 127, 128, 129, 132, 142, 152, 162, 172, 182, 192, 212, \
312, 412, 512, 612, 712, 812, 912], 'transposition': [21]}
    """
    s = str(number)
    edits = {
        "substitution": [s[:i] + d + s[i + 1 :] for i in range(len(s)) for d in _DIGITS],
        "deletion": [s[:i] + s[i + 1 :] for i in range(len(s))],
        "insertion": [s[:i] + d + s[i:] for i in range(len(s) + 1) for d in _DIGITS],
        "transposition": [s[:i] + s[i + 1] + s[i] + s[i + 2 :] for i in range(len(s) - 1)],
    }
    valid = lambda t: t != "" and (t == "0" or t[0] != "0")  # noqa: E731
    return {kind: sorted({int(t) for t in texts if valid(t)} - {number}) for kind, texts in edits.items()}


def pick_near_miss(number: int, pool: set[int], width: int, lang: str, rng: random.Random,
                   kind: str = "digit") -> int:
    """A near miss of ``number`` from ``pool``, its words different from ``number``'s: for ``kind="digit"`` a random
    one-digit change, for ``kind="typo"`` a random typo of a random edit kind among those the pool has; else (none
    in the pool) the closest number in the pool."""
    answer = number_words(number, lang)
    if kind == "digit":
        groups = [near_miss_candidates(number, width)]
    elif kind == "typo":
        groups = list(typo_candidates(number).values())
    else:
        raise ValueError(f"Unknown near-miss kind {kind!r}; use 'typo' or 'digit'.")
    groups = [g for g in ([m for m in g if m in pool and number_words(m, lang) != answer] for g in groups) if g]
    if groups:  # (one draw when there is one group: a kind is only drawn when there is a choice of kinds)
        return rng.choice(groups[0] if len(groups) == 1 else rng.choice(groups))
    others = sorted((m for m in pool if m != number and number_words(m, lang) != answer), key=lambda m: abs(m - number))
    if not others:
        raise ValueError(f"No near miss for {number}: its split has no other number. Use a larger number range.")
    return others[0]


@dataclass(frozen=True)
class Pair:
    """One preference pair of the task: a prompt, its correct answer and a near miss."""

    number: int
    rejected_number: int
    lang: str

    @property
    def prompt(self) -> str:
        return prompt_text(self.number, self.lang)

    @property
    def chosen(self) -> str:
        return number_words(self.number, self.lang)

    @property
    def rejected(self) -> str:
        return number_words(self.rejected_number, self.lang)

    def row(self) -> dict[str, list[dict[str, str]]]:
        """The pair as a conversational preference row (explicit prompt), as ``CPOTrainer`` takes it."""
        return {
            "prompt": [{"role": "user", "content": self.prompt}],
            "chosen": [{"role": "assistant", "content": self.chosen}],
            "rejected": [{"role": "assistant", "content": self.rejected}],
        }


def split_numbers(high: int, sizes: dict[str, int], seed: int) -> dict[str, list[int]]:
    """Shuffle ``0..high`` with ``seed`` and cut it into disjoint splits of the given sizes (train: the rest)."""
    numbers = list(range(high + 1))
    random.Random(seed).shuffle(numbers)
    out, start = {}, 0
    for name in ("test", "validation"):
        out[name] = numbers[start : start + sizes[name]]
        start += sizes[name]
    out["train"] = numbers[start:]
    if min(len(v) for v in out.values()) < 2:
        raise ValueError(f"Splits {sizes} leave fewer than 2 numbers in a split of 0..{high}; use smaller sizes.")
    return out


def build_task(lang: str = "en", high: int = 999, test: int = 100, validation: int = 100, seed: int = 0,
               pairs_per_number: int = 1, near_misses: str = "typo") -> dict[str, list[Pair]]:
    """All pairs of the demo task, by split (``train``, ``validation``, ``test``).

    Args:
        lang: one of :data:`DEMO_LANGUAGES`.
        high: numbers are ``0..high``.
        test, validation: numbers held out in each of those splits; the rest are train numbers.
        seed: drives the split and the choice of near misses.
        pairs_per_number: near misses per number (each a separate pair, each one different when possible).
        near_misses: ``typo`` or ``digit`` (see the module docstring).

    Returns:
        ``{split: [Pair, ...]}``, pairs ordered as their numbers were shuffled.
    """
    prompt_text(0, lang)  # validates lang
    width = len(str(high))
    numbers = split_numbers(high, {"test": test, "validation": validation}, seed)
    rng = random.Random(seed + 1)
    task = {}
    for name in SPLITS:
        pool = set(numbers[name])
        pairs = []
        for number in numbers[name]:
            used: set[int] = set()
            for _ in range(pairs_per_number):
                candidates = pool - used if len(pool - used) > 1 else pool
                rejected = pick_near_miss(number, candidates, width, lang, rng, near_misses)
                used.add(rejected)
                pairs.append(Pair(number, rejected, lang))
        task[name] = pairs
    return task


# ----------------------------------------------------------------------------------------- imperfect references

FLAW_KINDS = ("no_and", "no_hyphen", "neighbour")


def normalise(text: str) -> str:
    """Lower case, whitespace collapsed, surrounding spaces and final full stops removed.

    >>> normalise("  Three hundred  and forty-seven.\\n")
    'three hundred and forty-seven'
    """
    return re.sub(r"\s+", " ", text).strip().lower().rstrip(".").strip()


def flaw_variants(number: int, lang: str, high: int) -> dict[str, list[str]]:
    """Every flawed version of ``number``'s words, by kind: a dropped "and" (when it has one), a missing hyphen
    (when it has one), and the words of each neighbouring number within ``0..high``.

    >>> flaw_variants(347, "en", 999)["no_and"], flaw_variants(0, "en", 999)["neighbour"]
    (['three hundred forty-seven'], ['one'])
    """
    words = number_words(number, lang)
    return {"no_and": [words.replace(" and ", " ", 1)] if " and " in words else [],
            "no_hyphen": [words.replace("-", " ")] if "-" in words else [],
            "neighbour": [number_words(n, lang) for n in (number - 1, number + 1) if 0 <= n <= high]}


def flaw_kinds(number: int, lang: str, high: int = 999) -> list[str]:
    """The flaws that apply to ``number``'s words (:func:`flaw_variants` has one of that kind)."""
    return [k for k, variants in flaw_variants(number, lang, high).items() if variants]


def flawed_words(number: int, lang: str, kind: str, high: int, rng: random.Random) -> str:
    """``number``'s words with one flaw of ``kind``: "three hundred forty-seven" (``no_and``), "three hundred and
    forty seven" (``no_hyphen``), or the words of ``number +/- 1`` within ``0..high`` (``neighbour``, drawn)."""
    if kind not in FLAW_KINDS:
        raise ValueError(f"Unknown flaw {kind!r}; use one of {', '.join(FLAW_KINDS)}.")
    variants = flaw_variants(number, lang, high)[kind]
    if not variants:
        raise ValueError(f"The flaw {kind!r} does not apply to {number}.")
    return rng.choice(variants) if kind == "neighbour" else variants[0]


def flaw_shape(answer: str, number: int, lang: str, high: int = 999) -> str | None:
    """The kind of flaw a wrong ``answer`` to ``number`` has the shape of (its :func:`normalise` equals a
    :func:`flaw_variants` entry), else None: the errors SFT could have learnt from flawed references.

    >>> flaw_shape("Three hundred forty-seven.", 347, "en"), flaw_shape("three hundred and forty-eight", 347, "en")
    ('no_and', 'neighbour')
    >>> flaw_shape("five hundred and seventy-five", 507, "en") is None
    True
    """
    said = normalise(answer)
    for kind, variants in flaw_variants(number, lang, high).items():
        if said in {normalise(v) for v in variants}:
            return kind
    return None


@dataclass(frozen=True)
class Reference:
    """The reference answer of a training prompt, as a human might have written it: correct, or with one ``flaw``."""

    number: int
    lang: str
    text: str
    flaw: str | None = None

    @property
    def prompt(self) -> list[dict[str, str]]:
        return [{"role": "user", "content": prompt_text(self.number, self.lang)}]


def flawed_references(numbers: list[int], lang: str, share: float, high: int, rng: random.Random) -> list[Reference]:
    """References of ``numbers`` of which exactly ``round(share * len(numbers))``, drawn with ``rng``, carry one flaw
    each, its kind drawn uniformly among those that apply (:func:`flaw_kinds`); the others are correct."""
    flawed = set(rng.sample(range(len(numbers)), round(share * len(numbers))))
    out = []
    for i, number in enumerate(numbers):
        if i in flawed:
            kind = rng.choice(flaw_kinds(number, lang, high))
            out.append(Reference(number, lang, flawed_words(number, lang, kind, high, rng), kind))
        else:
            out.append(Reference(number, lang, number_words(number, lang)))
    return out


# ----------------------------------------------------------------------------------------------- the checker

_PROMPT = re.compile(r"^Write (\d+) in (\w+) words\.$")


def prompt_number(prompt) -> tuple[int, str]:
    """``(number, lang)`` of a task prompt: its text, or a conversation whose last user turn is it."""
    text = prompt if isinstance(prompt, str) else [m for m in prompt if m["role"] == "user"][-1]["content"]
    match = _PROMPT.match(text.strip())
    codes = {language_name(code): code for code in DEMO_LANGUAGES}
    if match is None or match.group(2) not in codes:
        raise ValueError(f"Not a prompt of the demo task: {text!r} (expected 'Write 347 in English words.').")
    return int(match.group(1)), codes[match.group(2)]


def check_answer(answer: str, number: int, lang: str) -> float:
    """The checker's score of an answer: 100 when it is right (after :func:`normalise`), else its sentence chrF
    against the right answer, at most 99 (so that no wrong answer ties with a right one)."""
    truth = number_words(number, lang)
    if normalise(answer) == normalise(truth):
        return 100.0
    return min(sentence_scores([normalise(answer)], [truth], "chrf")[0], 99.0)


def checker_scores(sources: list, candidates: list[str], references: list | None) -> list[float]:
    """The demo's scorer for ``cpo prefs --scorer cpo.demo.task:checker_scores``: each candidate's
    :func:`check_answer` for the number its prompt asks for. It plays the CPO paper's quality-estimation model
    (KIWI-XXL / XCOMET), reference-free like them, but it is a perfect judge: it knows the right answer."""
    return [check_answer(c, *prompt_number(s)) for s, c in zip(sources, candidates)]

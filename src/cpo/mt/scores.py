"""Scores of candidate answers: chrF and BLEU against a reference (sacrebleu), score files, and a user's callable.

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
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from ..errors import UsageError
from .segments import check_aligned, read_lines

METRICS = ("chrf", "bleu", "given")


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


def corpus_scores(hypotheses: Sequence[str], references: Sequence[str], tgt_lang: str | None = None) -> dict:
    """Corpus BLEU and chrF (sacrebleu, 0-100) with their signatures. BLEU's tokenizer follows ``tgt_lang`` as
    sacrebleu chooses it (``zh`` for Chinese, ``13a`` otherwise).

    Equals ``sacrebleu.corpus_bleu(hypotheses, [references]).score`` and ``corpus_chrf`` for English targets.
    """
    from sacrebleu.metrics import BLEU, CHRF

    check_aligned([("hypotheses", hypotheses), ("references", references)])
    try:
        bleu = BLEU(trg_lang=tgt_lang or "")
    except Exception as err:  # e.g. ja needs mecab
        raise UsageError(f"sacrebleu cannot score BLEU for target language {tgt_lang!r}: {err}") from err
    chrf = CHRF()
    hyps, refs = list(hypotheses), [list(references)]
    b, c = bleu.corpus_score(hyps, refs), chrf.corpus_score(hyps, refs)
    return {"bleu": b.score, "chrf": c.score, "bleu_detail": str(b), "bleu_signature": str(bleu.get_signature()),
            "chrf_signature": str(chrf.get_signature())}


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
    ids = list(ids) if ids is not None else list(range(1, len(candidates) + 1))
    flat = [(i, j) for i, cands in enumerate(candidates) for j in range(len(cands))]
    scores: list[list[float]] = [[0.0] * len(c) for c in candidates]
    for start in range(0, len(flat), batch_size):
        chunk = flat[start: start + batch_size]
        first = f"prompt {ids[chunk[0][0]]} candidate {chunk[0][1] + 1}"
        args = ([sources[i] for i, _ in chunk], [candidates[i][j] for i, j in chunk],
                None if references is None else [references[i] for i, _ in chunk])
        try:
            out = list(fn(*args))
        except Exception as err:  # the user's code: report where, keep the cause chained
            raise UsageError(f"The {name} raised {type(err).__name__}: {err} (on a batch of {len(chunk)} candidates "
                             f"starting at {first}). Nothing was written.") from err
        if len(out) != len(chunk):
            raise UsageError(f"The {name} returned {len(out)} scores for a batch of {len(chunk)} candidates (starting "
                             f"at {first}); it must return one float per candidate. Nothing was written.")
        for (i, j), raw in zip(chunk, out):
            try:
                value = float(raw)
            except (TypeError, ValueError):
                value = math.nan
            if not math.isfinite(value):
                raise UsageError(f"The {name} gave {raw!r} for prompt {ids[i]} candidate {j + 1} "
                                 f"({candidates[i][j][:60]!r}); scores must be finite numbers. Nothing was written.")
            scores[i][j] = value
    return scores

"""chrF and BLEU of translations against references (sacrebleu): per sentence, to score candidates, and per
corpus, to evaluate. Scores from files and a user's scorer are :mod:`cpo.pairs.scorers`.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..errors import UsageError
from ..extras import require
from ..files import check_aligned

METRICS = ("chrf", "bleu", "given")


def _sacrebleu_metrics():
    """sacrebleu's ``BLEU`` and ``CHRF`` classes (the ``mt`` extra)."""
    metrics = require("sacrebleu.metrics", "mt", "Scoring with chrF or BLEU")
    return metrics.BLEU, metrics.CHRF


def sentence_scores(hypotheses: Sequence[str], references: Sequence[str], metric: str,
                    tgt_lang: str | None = None) -> list[float]:
    """Sentence-level chrF (``chrf``) or BLEU (``bleu``, with effective n-gram order) of each hypothesis against its
    reference, on sacrebleu's 0-100 scale. BLEU's tokenizer follows ``tgt_lang`` (e.g. ``zh``) as in sacrebleu.

    Equals ``sacrebleu.sentence_chrf(h, [r]).score`` for chrF.
    """
    BLEU, CHRF = _sacrebleu_metrics()
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
    BLEU, CHRF = _sacrebleu_metrics()
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



"""Translation with a causal LM: the ALMA prompt or a chat template, batched, one line per hypothesis.

Prompts are tokenized as the trainer tokenizes training prompts (:func:`cpo.mt.prompts.prompt_ids`) and decoded by
:func:`cpo.generation.generate_texts`, greedy by default; the ALMA prompt's answer ends at the first newline.
:func:`translation_candidates` samples several translations per source for preference pairs, with the greedy one
(optionally) first: the very hypothesis :func:`translate` gives.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..generation import Decoding, generate_texts, sample_candidates
from .prompts import prompt_ids


def clean_hypothesis(text: str, stop_at_newline: bool) -> str:
    """The translation in a generated continuation: up to the first newline (ALMA template), stripped.

    >>> clean_hypothesis(" The goods cost less.\\nGerman: ...", stop_at_newline=True)
    'The goods cost less.'
    """
    if stop_at_newline:
        text = text.split("\n", 1)[0]
    return text.strip()


def _stops(template: str) -> tuple[str, ...]:
    return ("\n",) if template == "alma" else ()


def translate(model, tokenizer, sources: Sequence[str], *, src_lang: str, tgt_lang: str, template: str = "alma",
              batch_size: int = 16, max_new_tokens: int = 256, num_beams: int = 1, progress: bool = True,
              shots: Sequence[tuple[str, str]] = ()) -> list[str]:
    """Translate each source sentence; returns the cleaned hypotheses (one line each). ``shots``: worked
    ``(source, translation)`` examples before each ALMA prompt (few-shot, :func:`cpo.mt.prompts.few_shot_prefix`)."""
    ids = prompt_ids(sources, src_lang, tgt_lang, template, tokenizer, shots)
    texts = generate_texts(model, tokenizer, ids, Decoding(max_new_tokens=max_new_tokens, num_beams=num_beams),
                           batch_size=batch_size, stop_strings=_stops(template), progress=progress,
                           desc="Translating")
    return [clean_hypothesis(t[0], bool(_stops(template))) for t in texts]


def translation_candidates(model, tokenizer, sources: Sequence[str], decoding: Decoding, *, src_lang: str,
                           tgt_lang: str, template: str = "alma", include_greedy: bool = False, batch_size: int = 16,
                           progress: bool = True) -> list[list[str]]:
    """Sampled translations of each source, cleaned as :func:`translate` cleans them; with ``include_greedy`` the
    greedy one first, which is :func:`translate`'s hypothesis. Duplicates are kept (one list entry per sample
    index; :func:`cpo.generation.unique_candidates` drops them)."""
    ids = prompt_ids(sources, src_lang, tgt_lang, template, tokenizer)
    answers = sample_candidates(model, tokenizer, ids, decoding, include_greedy=include_greedy,
                                batch_size=batch_size, stop_strings=_stops(template), progress=progress)
    return [[clean_hypothesis(t, bool(_stops(template))) for t in texts] for texts in answers]

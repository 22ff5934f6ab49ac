"""The round-trip judge: a reference-free score of a translation, for ``cpo prefs --scorer``.

Each candidate (a translation into the target language) is translated back into the source language with a causal
LM (the ALMA prompt, greedy, :func:`cpo.mt.translate.translate`), and scored by the sentence chrF of that
back-translation against the source sentence (0-100, higher is better). It needs no reference: it stands where the
CPO paper's quality models (KIWI-XXL, XCOMET) stand, with the model's own errors in both directions.

Two ways in:

- :func:`roundtrip_scorer` builds the callable from a back-translating function (:func:`model_back_translator` for a
  loaded model, or any function: a test's stub);
- :func:`score` is the callable for the command line, ``cpo prefs --scorer cpo.mt.roundtrip:score``: it loads the
  model named by ``CPO_ROUNDTRIP_MODEL`` once per process, for the pair in ``CPO_ROUNDTRIP_PAIR`` (default
  ``de-en``).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Sequence

from .prompts import alma_instruction
from .scores import sentence_scores
from .translate import translate

ENV_MODEL = "CPO_ROUNDTRIP_MODEL"
ENV_PAIR = "CPO_ROUNDTRIP_PAIR"
DEFAULT_PAIR = "de-en"

BackTranslate = Callable[[list[str]], Sequence[str]]


def roundtrip_scores(sources: Sequence[str], candidates: Sequence[str], back_translate: BackTranslate) -> list[float]:
    """Sentence chrF of ``back_translate(candidates)[k]`` against ``sources[k]``, one float per candidate.

    Equals ``[sacrebleu.sentence_chrf(b, [s]).score for b, s in zip(back_translate(candidates), sources)]``.

    Raises:
        ValueError: a source that is not a sentence (a list of messages, or a whole ALMA prompt: give the candidates
            file a ``source`` field), or a back-translator that returns another number of texts.
    """
    for source in sources:
        if not isinstance(source, str) or source.startswith("Translate this from "):
            shown = source if isinstance(source, str) else type(source).__name__
            raise ValueError(f"The round-trip judge compares with the source sentence, and got {str(shown)[:60]!r}. "
                             "Give each candidates row a 'source' field (cpo generate writes it for translations).")
    back = list(back_translate(list(candidates)))
    if len(back) != len(candidates):
        raise ValueError(f"The back-translator returned {len(back)} texts for {len(candidates)} candidates.")
    return sentence_scores(back, list(sources), "chrf")


def roundtrip_scorer(back_translate: BackTranslate) -> Callable:
    """A scorer of the ``cpo prefs --scorer`` protocol (:mod:`cpo.pairs.scorers`):
    ``score(sources, candidates, references) -> list[float]``, references ignored (reference-free)."""

    def score(sources: list, candidates: list[str], references: list | None = None) -> list[float]:
        return roundtrip_scores(sources, candidates, back_translate)

    return score


def model_back_translator(model, tokenizer, *, src_lang: str = "de", tgt_lang: str = "en", batch_size: int = 16,
                          max_new_tokens: int = 256, shots: Sequence[tuple[str, str]] = ()) -> BackTranslate:
    """Translate ``tgt_lang`` texts back into ``src_lang`` with ``model``: the ALMA prompt
    (``Translate this from English to German:``), greedy, up to the first newline (:func:`cpo.mt.translate.translate`);
    ``shots`` are worked ``(tgt_lang text, src_lang text)`` examples before each prompt (few-shot).
    """
    alma_instruction(tgt_lang, src_lang)  # an unknown language code fails here, before any generation

    def back_translate(texts: list[str]) -> list[str]:
        return translate(model, tokenizer, texts, src_lang=tgt_lang, tgt_lang=src_lang, batch_size=batch_size,
                         max_new_tokens=max_new_tokens, progress=False, shots=shots)

    return back_translate


def parse_pair(pair: str) -> tuple[str, str]:
    """``"de-en"`` -> ``("de", "en")``: the source and target languages of the candidates."""
    src, sep, tgt = pair.partition("-")
    if not sep or not src or not tgt:
        raise ValueError(f"{ENV_PAIR}={pair!r} is not SRC-TGT (e.g. de-en: German sources, English candidates).")
    return src, tgt


@functools.lru_cache(maxsize=2)
def _env_scorer(model_path: str, pair: str) -> Callable:
    """The scorer of a model on disk, loaded once per ``(path, pair)`` (a ``.gguf`` file or a model folder)."""
    import torch

    from ..loading import load_model, load_tokenizer

    src_lang, tgt_lang = parse_pair(pair)
    model, tokenizer = load_model(model_path), load_tokenizer(model_path)
    if model_path.endswith(".gguf"):
        from ..gguf import align_special_tokens

        align_special_tokens(model, tokenizer)  # generate() stops where the tokenizer says an answer ends
    if torch.cuda.is_available():
        model = model.to("cuda")
    return roundtrip_scorer(model_back_translator(model, tokenizer, src_lang=src_lang, tgt_lang=tgt_lang))


def score(sources: list, candidates: list[str], references: list | None = None) -> list[float]:
    """``cpo prefs --scorer cpo.mt.roundtrip:score``: the round-trip judge with the model at ``$CPO_ROUNDTRIP_MODEL``
    (a model folder or a ``.gguf`` file), loaded at the first call; ``$CPO_ROUNDTRIP_PAIR`` is the candidates'
    direction (default ``de-en``: German sources, English candidates, back-translated into German).

    Raises:
        RuntimeError: ``CPO_ROUNDTRIP_MODEL`` is not set (the message says how to set it).
    """
    model_path = os.environ.get(ENV_MODEL, "").strip()
    if not model_path:
        raise RuntimeError(f"The round-trip judge needs a model to translate back with: set {ENV_MODEL} to a model "
                           f"folder or a .gguf file, e.g. {ENV_MODEL}=path/to/model cpo prefs --scorer "
                           "cpo.mt.roundtrip:score ...")
    return _env_scorer(model_path, os.environ.get(ENV_PAIR, DEFAULT_PAIR))(sources, candidates, references)

"""Held-out measurements of the demo: exact match by greedy generation, and preference accuracy.

- **Exact match**: the model answers each prompt (chat template, generation prompt) by greedy decoding until EOS;
  the answer counts when :func:`normalise` of it equals :func:`normalise` of ``num2words``' answer.
- **Preference accuracy**: the fraction of held-out pairs where the model's summed log-prob of the correct answer
  beats that of the near miss: CPO's reward (arXiv 2401.08417, Eq. 3, ``beta * log pi(y|x)``), as ``CPOTrainer``
  computes it for ``rewards/accuracies``.
"""

from __future__ import annotations

import re

from ..generation import Decoding, generate_texts
from ..rows import render_prompt
from ..tokenization import encode_prompts
from .task import Pair


def normalise(text: str) -> str:
    """Lower case, whitespace collapsed, surrounding spaces and final full stops removed.

    >>> normalise("  Three hundred  and forty-seven.\\n")
    'three hundred and forty-seven'
    """
    return re.sub(r"\s+", " ", text).strip().lower().rstrip(".").strip()


def generate_answers(model, tokenizer, prompts: list[str], max_new_tokens: int, batch_size: int = 50,
                     progress: bool = False, desc: str = "answers") -> list[str]:
    """Greedy answers to user messages: each rendered by the chat template with the assistant's generation prompt
    (the prompt the trainer trains on), decoded by :func:`cpo.generation.generate_texts` until the end of turn.

    Returns:
        The decoded answers, special tokens removed.
    """
    texts = [render_prompt([{"role": "user", "content": p}], tokenizer) for p in prompts]
    ids = encode_prompts(tokenizer, texts, templated=True)
    answers = generate_texts(model, tokenizer, ids, Decoding(max_new_tokens=max_new_tokens), batch_size=batch_size,
                             progress=progress, desc=desc)
    return [a[0] for a in answers]


def answer_budget(tokenizer, pairs: list[Pair], slack: int = 4) -> int:
    """Enough new tokens for the longest correct answer plus ``slack`` (EOS, a stray full stop, a wrong longer one)."""
    return max(len(tokenizer(p.chosen, add_special_tokens=False)["input_ids"]) for p in pairs) + slack


def exact_match(model, tokenizer, pairs: list[Pair], batch_size: int = 50, progress: bool = False,
                desc: str = "exact match") -> tuple[float, list[str]]:
    """Fraction of ``pairs`` whose greedy answer equals the correct one after :func:`normalise`; and the answers.

    Each number is asked once, even when it has several pairs.
    """
    items = list({p.number: p for p in pairs}.values())
    answers = generate_answers(model, tokenizer, [p.prompt for p in items], answer_budget(tokenizer, items),
                               batch_size, progress, desc)
    hits = sum(normalise(a) == normalise(p.chosen) for a, p in zip(answers, items))
    return hits / len(items), answers


def preference_accuracy(trainer, metric_key_prefix: str = "heldout") -> float:
    """``rewards/accuracies`` of ``trainer.evaluate()`` on the eval dataset the trainer was built with.

    For loss types that sum log-probs (``sigmoid``, ``hinge``, ``sft``) this is the fraction of pairs where
    ``log pi(chosen|x) > log pi(rejected|x)``.
    """
    if trainer.args.loss_type in ("ipo", "simpo"):
        raise ValueError(f"loss_type={trainer.args.loss_type!r} averages log-probs; measure with 'sigmoid' or 'sft'.")
    metrics = trainer.evaluate(metric_key_prefix=metric_key_prefix)
    return float(metrics[f"{metric_key_prefix}_rewards/accuracies"])

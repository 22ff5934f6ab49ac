"""Held-out measurements of the demo: exact match and chrF by greedy generation, and preference accuracy.

- **Exact match**: the model answers each prompt (chat template, generation prompt) by greedy decoding until EOS;
  the answer counts when :func:`~cpo.demo.task.normalise` of it equals that of ``num2words``' answer.
- **chrF**: the graded score, sentence chrF of each (normalised) answer against the right one, averaged.
- **Preference accuracy**: the fraction of held-out pairs where the model's summed log-prob of the correct answer
  beats that of the near miss: CPO's reward (arXiv 2401.08417, Eq. 3, ``beta * log pi(y|x)``), as ``CPOTrainer``
  computes it for ``rewards/accuracies``.
"""

from __future__ import annotations

from ..generation import Decoding, generate_texts
from ..losses import uses_average_logps
from ..mt.scores import sentence_scores
from ..rows import render_prompt
from ..tokenization import encode_prompts
from .task import Pair, normalise, number_words


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


def answer_budget(tokenizer, answers: list[str], slack: int = 4) -> int:
    """Enough new tokens for the longest of the correct ``answers`` plus ``slack`` (EOS, a stray full stop, a wrong
    longer one)."""
    return max(len(tokenizer(a, add_special_tokens=False)["input_ids"]) for a in answers) + slack


def exact_match(model, tokenizer, pairs: list[Pair], batch_size: int = 50, progress: bool = False,
                desc: str = "exact match") -> tuple[float, list[str]]:
    """Fraction of ``pairs`` whose greedy answer equals the correct one after :func:`normalise`; and the answers.

    Each number is asked once, even when it has several pairs.
    """
    items = list({p.number: p for p in pairs}.values())
    budget = answer_budget(tokenizer, [p.chosen for p in items])
    answers = generate_answers(model, tokenizer, [p.prompt for p in items], budget, batch_size, progress, desc)
    hits = sum(normalise(a) == normalise(p.chosen) for a, p in zip(answers, items))
    return hits / len(items), answers


def chrf_score(answers: list[str], numbers: list[int], lang: str) -> float:
    """The graded score: mean sentence chrF (0-100) of each normalised answer against the right one."""
    truths = [number_words(n, lang) for n in numbers]
    scores = sentence_scores([normalise(a) for a in answers], truths, "chrf")
    return sum(scores) / len(scores)


def preference_accuracy(trainer, metric_key_prefix: str = "heldout") -> float:
    """``rewards/accuracies`` of ``trainer.evaluate()`` on the eval dataset the trainer was built with.

    For loss types that sum log-probs (``sigmoid``, ``hinge``, ``sft``) this is the fraction of pairs where
    ``log pi(chosen|x) > log pi(rejected|x)``.
    """
    if uses_average_logps(trainer.args.loss_type):
        raise ValueError(f"loss_type={trainer.args.loss_type!r} averages log-probs; measure with 'sigmoid' or 'sft'.")
    metrics = trainer.evaluate(metric_key_prefix=metric_key_prefix)
    return float(metrics[f"{metric_key_prefix}_rewards/accuracies"])

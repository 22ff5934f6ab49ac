"""Batched generation with a causal LM: greedy, beam search or sampling, for every caller in cpo.

One loop (:func:`generate_texts`) serves translation (``cpo eval``), candidates for preference pairs
(:func:`generate_candidates`, ``cpo generate``), the demo's exact match and ``generate_during_eval``. It takes prompt
ids made by :func:`cpo.tokenization.encode_prompts`, the rule training uses, so a model is prompted at test time with
exactly the ids it was trained on. Prompts are sorted by length so that a batch wastes little on padding, padded on
the left, and decoded until EOS, the chat template's end of turn, or a stop string.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .rows import chat_end_of_turn

logger = logging.getLogger("cpo")


@dataclass(frozen=True)
class Decoding:
    """How to decode: greedy (the default), beam search (``num_beams > 1``) or sampling (``do_sample``).

    ``num_samples`` sequences are returned per prompt (sampling only). ``top_k=0`` and ``top_p=1.0`` turn those
    filters off, whatever the model's ``generation_config`` says; ``seed`` makes sampling repeatable for the same
    prompts, batch size and machine.
    """

    max_new_tokens: int = 256
    do_sample: bool = False
    num_samples: int = 1
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    num_beams: int = 1
    seed: int = 0

    def __post_init__(self):
        if self.num_samples > 1 and not self.do_sample:
            raise ValueError(f"num_samples={self.num_samples} needs do_sample=True (greedy decoding gives one answer).")
        if self.do_sample and self.num_beams > 1:
            raise ValueError("Sampling with num_beams > 1 is not supported; use one of them.")
        for name in ("max_new_tokens", "num_samples", "num_beams"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}.")
        if self.do_sample and not 0 < self.temperature < math.inf:
            raise ValueError(f"temperature must be a finite number > 0 for sampling, got {self.temperature}.")
        if not 0 < self.top_p <= 1 or self.top_k < 0:
            raise ValueError(f"top_p must be in (0, 1] and top_k >= 0 (0: off), got {self.top_p} and {self.top_k}.")


GREEDY = Decoding()


def stop_token_ids(model, tokenizer) -> list[int]:
    """Ids that end an answer: the tokenizer's EOS, the model's ``generation_config`` EOS ids, and the chat
    template's end-of-turn token (``<|im_end|>``, ``<|eot_id|>``) when the tokenizer has a template."""
    ids = {tokenizer.eos_token_id} - {None}
    gen_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids |= set(gen_eos) if isinstance(gen_eos, (list, tuple)) else ({gen_eos} - {None})
    end_of_turn = chat_end_of_turn(tokenizer)
    if end_of_turn is not None:
        ids.add(tokenizer.convert_tokens_to_ids(end_of_turn))
    return sorted(ids)


def _sampling_kwargs(decoding: Decoding) -> dict:
    if not decoding.do_sample:
        return {"do_sample": False, "num_beams": decoding.num_beams}
    return {"do_sample": True, "num_return_sequences": decoding.num_samples, "temperature": decoding.temperature,
            "top_p": decoding.top_p, "top_k": decoding.top_k}


def generate_texts(model, tokenizer, prompt_ids: Sequence[list[int]], decoding: Decoding = GREEDY, *,
                   batch_size: int = 16, stop_strings: Sequence[str] = (), progress: bool = True,
                   desc: str = "Generating") -> list[list[str]]:
    """Decode ``decoding.num_samples`` continuations of each prompt, in batches of similar length, left-padded.

    Args:
        prompt_ids: token ids per prompt (:func:`cpo.tokenization.encode_prompts`).
        batch_size: sequences decoded at once (prompts x samples).
        stop_strings: text that also ends an answer (e.g. ``"\\n"`` for the ALMA prompt); it stays in the text.

    Returns:
        For each prompt, in the order of ``prompt_ids``, its decoded new texts (special tokens removed). The model's
        training mode and the global torch RNG are left as they were.
    """
    import torch
    from tqdm.auto import tqdm

    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    device = next(model.parameters()).device
    order = sorted(range(len(prompt_ids)), key=lambda i: -len(prompt_ids[i]))  # similar lengths share a batch
    per_batch = max(1, batch_size // decoding.num_samples)
    batches = [order[i: i + per_batch] for i in range(0, len(order), per_batch)]
    extra = {"stop_strings": list(stop_strings), "tokenizer": tokenizer} if stop_strings else {}
    stops = stop_token_ids(model, tokenizer)  # renders the chat template once, not once a batch
    out: list[list[str]] = [[] for _ in prompt_ids]
    was_training = model.training
    model.eval()
    bar = tqdm(total=len(prompt_ids), desc=desc, unit="prompt", disable=not progress, dynamic_ncols=True)
    try:
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), torch.inference_mode():
            for number, batch in enumerate(batches):
                torch.manual_seed(decoding.seed + number)
                width = max(len(prompt_ids[i]) for i in batch)
                ids = torch.tensor([[pad] * (width - len(prompt_ids[i])) + list(prompt_ids[i]) for i in batch],
                                   device=device)
                mask = torch.tensor([[0] * (width - len(prompt_ids[i])) + [1] * len(prompt_ids[i]) for i in batch],
                                    device=device)
                gen = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=decoding.max_new_tokens,
                                     pad_token_id=pad, eos_token_id=stops,
                                     **_sampling_kwargs(decoding), **extra)
                texts = tokenizer.batch_decode(gen[:, width:], skip_special_tokens=True)  # (B * N, new) -> text
                per_prompt = len(texts) // len(batch)  # a prompt's N samples are adjacent
                for k, text in enumerate(texts):
                    out[batch[k // per_prompt]].append(text)
                bar.update(len(batch))
    finally:
        bar.close()
        model.train(was_training)
    return out


def sample_candidates(model, tokenizer, prompt_ids: Sequence[list[int]], decoding: Decoding, *,
                      include_greedy: bool = False, batch_size: int = 16, stop_strings: Sequence[str] = (),
                      progress: bool = True) -> list[list[str]]:
    """The raw answers of each prompt: its greedy answer first when ``include_greedy``, then
    ``decoding.num_samples`` samples (``decoding.do_sample`` must be set)."""
    if not decoding.do_sample:
        raise ValueError("Candidates are sampled: give a Decoding with do_sample=True.")
    sampled = generate_texts(model, tokenizer, prompt_ids, decoding, batch_size=batch_size,
                             stop_strings=stop_strings, progress=progress, desc="Sampling")
    if not include_greedy:
        return sampled
    greedy = generate_texts(model, tokenizer, prompt_ids, Decoding(max_new_tokens=decoding.max_new_tokens),
                            batch_size=batch_size, stop_strings=stop_strings, progress=progress, desc="Greedy")
    return [g + s for g, s in zip(greedy, sampled)]


def unique_candidates(answers: Sequence[Sequence[str]], clean=str.strip) -> tuple[list[list[str]], int]:
    """Each prompt's answers turned into candidates by ``clean``, duplicates dropped (two answers are the same when
    they are equal once stripped; the first is kept). Returns ``(candidates, duplicates dropped)``."""
    out, dropped = [], 0
    for texts in answers:
        seen, kept = set(), []
        for text in map(clean, texts):
            key = text.strip()
            if key in seen:
                dropped += 1
            else:
                seen.add(key)
                kept.append(text)
        out.append(kept)
    return out, dropped


def generate_candidates(model, tokenizer, prompts: Sequence, decoding: Decoding, *, include_greedy: bool = False,
                        batch_size: int = 16, progress: bool = True, tools: Sequence | None = None,
                        template_kwargs: Sequence | None = None) -> tuple[list[list[str]], int]:
    """Candidate answers of each prompt for preference pairs (what ``cpo generate`` does with a prompt dataset).

    Args:
        prompts: strings, or conversations (lists of ``{"role", "content"}``), tokenized as the trainer tokenizes
            the prompt of a row (:func:`cpo.tokenization.encode_prompt_values`).
        decoding: a sampling :class:`Decoding` (``do_sample=True``, ``num_samples``, temperature, ...).
        include_greedy: add the greedy answer, first.
        tools, template_kwargs: per-prompt ``tools`` and ``chat_template_kwargs`` of conversations (or None).

    Returns:
        ``(candidates, duplicates)``: per prompt, its distinct answers (a string prompt's as generated, so that the
        prompt and the answer concatenate to what the model wrote; a conversation's stripped), and how many
        duplicates were dropped.
    """
    from .tokenization import encode_prompt_values

    ids = encode_prompt_values(tokenizer, list(prompts), tools, template_kwargs)
    answers = sample_candidates(model, tokenizer, ids, decoding, include_greedy=include_greedy,
                                batch_size=batch_size, progress=progress)
    kept, dropped = [], 0
    for prompt, texts in zip(prompts, answers):
        (one,), n = unique_candidates([texts], clean=(lambda t: t) if isinstance(prompt, str) else str.strip)
        kept.append(one)
        dropped += n
    return kept, dropped


def log_eval_generations(model, tokenizer, rows, *, step: int, out_dir, report_to, max_new_tokens: int,
                         write: bool) -> list[dict]:
    """``generate_during_eval``: greedy completions of a few evaluation prompts, appended to
    ``out_dir/eval_generations.jsonl`` (and logged as a table to W&B or Comet when they are in ``report_to``).

    Args:
        rows: tokenized evaluation rows (``prompt_input_ids``, ``chosen_input_ids``).
        write: whether this process writes (the main one).

    Returns:
        The records ``{"step", "prompt", "completion", "chosen"}``.
    """
    prompts = [r["prompt_input_ids"] for r in rows]
    texts = generate_texts(model, tokenizer, prompts, Decoding(max_new_tokens=max_new_tokens),
                           batch_size=len(prompts), progress=False)
    records = [
        {"step": step, "prompt": tokenizer.decode(r["prompt_input_ids"], skip_special_tokens=False),
         "completion": text[0], "chosen": tokenizer.decode(r["chosen_input_ids"], skip_special_tokens=True)}
        for r, text in zip(rows, texts)
    ]
    if not write:
        return records
    from .files import atomic_write

    path = Path(out_dir) / "eval_generations.jsonl"
    before = path.read_text(encoding="utf-8") if path.is_file() else ""  # this run's earlier evaluations
    with atomic_write(path) as f:
        f.write(before)
        f.writelines(json.dumps(rec, ensure_ascii=False) + "\n" for rec in records)
    table = [[rec["prompt"], rec["completion"]] for rec in records]
    if "wandb" in report_to:
        import wandb

        if wandb.run is not None:
            wandb.log({"game_log": wandb.Table(columns=["Prompt", "Policy"], data=table)})
    if "comet_ml" in report_to:
        import comet_ml

        experiment = comet_ml.get_running_experiment()
        if experiment is not None:
            experiment.log_table("game_log.csv", tabular_data=table, headers=["Prompt", "Policy"])
    logger.info(f"generate_during_eval: {len(records)} completions at step {step} appended to {path}")
    return records

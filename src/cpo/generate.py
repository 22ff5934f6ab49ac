"""Batched translation with a causal LM: prompts (ALMA template or chat template), left padding, greedy by default.

Prompts are tokenized as :mod:`cpo.tokenization` tokenizes training prompts, so the model sees at test time exactly
what it was trained on: plain text gets the tokenizer's BOS (when it has one), chat-templated text gets nothing added.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from .errors import UsageError
from .mt import alma_prompt

logger = logging.getLogger("cpo")

TEMPLATES = ("alma", "chat")


def build_prompts(sources: Sequence[str], src_lang: str, tgt_lang: str, template: str, tokenizer) -> list[str]:
    """The prompt text of each source sentence.

    ``alma``: ``"Translate this from German to English:\\nGerman: <src>\\nEnglish:"``. ``chat``: the same text as
    a user turn, rendered by the tokenizer's chat template with the assistant's generation prompt.
    """
    if template == "alma":
        return [alma_prompt(s, src_lang, tgt_lang) for s in sources]
    if template != "chat":
        raise UsageError(f"Unknown template {template!r}; use one of {', '.join(TEMPLATES)}.")
    if getattr(tokenizer, "chat_template", None) is None:
        raise UsageError("--template chat needs a tokenizer with a chat template, and this one has none. Use "
                         "--template alma, or save a chat template with the tokenizer.")
    return [
        tokenizer.apply_chat_template([{"role": "user", "content": alma_prompt(s, src_lang, tgt_lang)}],
                                      tokenize=False, add_generation_prompt=True)
        for s in sources
    ]


def encode_prompts(tokenizer, prompts: Sequence[str], add_bos: bool) -> list[list[int]]:
    """Token ids of each prompt, without special tokens except a leading BOS when ``add_bos`` and the tokenizer
    has one (and the text does not already start with it)."""
    ids = tokenizer(list(prompts), add_special_tokens=False)["input_ids"]
    bos = tokenizer.bos_token_id
    if add_bos and bos is not None:
        ids = [x if x[:1] == [bos] else [bos, *x] for x in ids]
    return ids


def clean_hypothesis(text: str, stop_at_newline: bool) -> str:
    """The translation in a generated continuation: up to the first newline (ALMA template), stripped.

    >>> clean_hypothesis(" The goods cost less.\\nGerman: ...", stop_at_newline=True)
    'The goods cost less.'
    """
    if stop_at_newline:
        text = text.split("\n", 1)[0]
    return text.strip()


def _eos_ids(model, tokenizer) -> list[int]:
    ids = {tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set()
    gen_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids |= set(gen_eos) if isinstance(gen_eos, (list, tuple)) else ({gen_eos} if gen_eos is not None else set())
    return sorted(ids)


def generate_texts(model, tokenizer, prompt_ids: Sequence[list[int]], *, batch_size: int = 16,
                   max_new_tokens: int = 256, num_beams: int = 1, stop_at_newline: bool = False,
                   progress: bool = True) -> list[str]:
    """Decode a continuation of each prompt, in batches of similar length, left-padded; greedy when
    ``num_beams == 1``. Generation stops at EOS, or at a newline when ``stop_at_newline``.

    Args:
        prompt_ids: token ids per prompt (see :func:`encode_prompts`).

    Returns:
        The decoded new text of each prompt (special tokens removed), in the order of ``prompt_ids``.
    """
    import torch
    from tqdm.auto import tqdm

    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    device = next(model.parameters()).device
    order = sorted(range(len(prompt_ids)), key=lambda i: -len(prompt_ids[i]))  # similar lengths share a batch
    out: list[str] = [""] * len(prompt_ids)
    extra = {"stop_strings": ["\n"], "tokenizer": tokenizer} if stop_at_newline else {}
    model.eval()
    batches = [order[i: i + batch_size] for i in range(0, len(order), batch_size)]
    for batch in tqdm(batches, desc="Translating", unit="batch", disable=not progress):
        width = max(len(prompt_ids[i]) for i in batch)
        ids = torch.tensor([[pad] * (width - len(prompt_ids[i])) + prompt_ids[i] for i in batch], device=device)
        mask = torch.tensor([[0] * (width - len(prompt_ids[i])) + [1] * len(prompt_ids[i]) for i in batch],
                            device=device)
        with torch.inference_mode():
            gen = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=max_new_tokens, do_sample=False,
                                 num_beams=num_beams, pad_token_id=pad, eos_token_id=_eos_ids(model, tokenizer),
                                 **extra)
        texts = tokenizer.batch_decode(gen[:, width:], skip_special_tokens=True)  # (B, new) tokens -> text
        for i, text in zip(batch, texts):
            out[i] = text
    return out


def translate(model, tokenizer, sources: Sequence[str], *, src_lang: str, tgt_lang: str, template: str = "alma",
              batch_size: int = 16, max_new_tokens: int = 256, num_beams: int = 1, progress: bool = True
              ) -> list[str]:
    """Translate each source sentence; returns the cleaned hypotheses (one line each)."""
    prompts = build_prompts(sources, src_lang, tgt_lang, template, tokenizer)
    ids = encode_prompts(tokenizer, prompts, add_bos=template == "alma")
    stop = template == "alma"
    texts = generate_texts(model, tokenizer, ids, batch_size=batch_size, max_new_tokens=max_new_tokens,
                           num_beams=num_beams, stop_at_newline=stop, progress=progress)
    return [clean_hypothesis(t, stop) for t in texts]


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
    import json
    from pathlib import Path

    prompts = [r["prompt_input_ids"] for r in rows]
    texts = generate_texts(model, tokenizer, prompts, batch_size=len(prompts), max_new_tokens=max_new_tokens,
                           progress=False)
    records = [
        {"step": step, "prompt": tokenizer.decode(r["prompt_input_ids"], skip_special_tokens=False),
         "completion": text, "chosen": tokenizer.decode(r["chosen_input_ids"], skip_special_tokens=True)}
        for r, text in zip(rows, texts)
    ]
    if not write:
        return records
    path = Path(out_dir) / "eval_generations.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as f:
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

"""Tokenize preference rows in batches: each prompt once, completions apart, special tokens and truncation.

A tokenized row holds ``prompt_input_ids`` and the *completion-only* ``chosen_input_ids`` / ``rejected_input_ids``;
a sequence is ``prompt + completion``. An explicit prompt is tokenized once, on its own, and each completion on its
own: chosen and rejected get the very same prompt tokens (which prefix sharing needs), the ones the model sees at
generation time. An implicit prompt is the longest common *token* prefix of the two full texts, so a word that the
character-level prefix cuts in two stays whole in the completions.

With ``tokenize_jointly`` (TRL's rule, for matching a TRL run), ``prompt + answer`` is tokenized as one string, so a
token may merge across the boundary ("offer." + "I am" -> ``.I``): the pair's prompt is then the common part of the
two joint tokenizations, and a side whose prompt part is longer starts its completion with that extra token as
unscored context (``chosen_unscored`` / ``rejected_unscored``: how many leading completion tokens are not scored).

Special tokens:
- plain text: BOS is prepended to the prompt when the tokenizer has one and the prompt does not already start with it;
  EOS is appended to each completion unless it already ends with it. An empty prompt with no BOS starts with EOS, so
  the first completion token is still scored.
- chat-templated text: the template is authoritative. Nothing is added: no BOS the template does not write, and no
  EOS after a template that already ends the turn (TRL appends one after ``<|im_end|>\\n``).
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path

from .rows import (
    DatasetFormat,
    RowError,
    check_template_kwargs,
    common_prefix_length,
    detect_format,
    render_chat,
    render_prompt,
    validate_prompt,
    validate_row,
)

logger = logging.getLogger("cpo")

ID_COLUMNS = ("prompt_input_ids", "chosen_input_ids", "rejected_input_ids", "row_index")
STATUS_COLUMNS = ("skip_reason", "prompt_truncated", "completion_truncated")
# Tokens of a completion when nothing else bounds it: encoder-decoder labels, generate_during_eval answers (as TRL).
DEFAULT_COMPLETION_LENGTH = 128
# The code that turns rows into ids: part of the cache fingerprint, so an edited tokenizer path never reuses stale ids
# (datasets hashes a map function by itself, not the helpers it calls).
_CODE_HASH = hashlib.sha256(
    b"".join(Path(__file__).with_name(n).read_bytes() for n in ("tokenization.py", "rows.py"))
).hexdigest()[:16]


@dataclass(frozen=True)
class TokenizeSpec:
    """What :func:`tokenize_batch` needs from the config (see :class:`cpo.CPOConfig` for each field and its
    default; here ``None`` means no limit)."""

    max_length: int | None = None
    max_completion_length: int | None = None
    prompt_overflow: str = "keep_end"
    invalid_rows: str = "raise"
    is_encoder_decoder: bool = False
    tokenize_jointly: bool = False

    @classmethod
    def from_config(cls, args, is_encoder_decoder: bool = False) -> TokenizeSpec:
        """The spec of a :class:`cpo.CPOConfig`."""
        return cls(args.max_length, args.max_completion_length, args.prompt_overflow, args.invalid_rows,
                   is_encoder_decoder, args.tokenize_jointly)


def truncate_row(
    prompt: list[int], chosen: list[int], rejected: list[int], spec: TokenizeSpec, bos_id: int | None
) -> tuple[list[int], list[int], list[int], bool, bool, str]:
    """Fit ``prompt + completion`` into ``spec.max_length`` for both completions.

    Completions are cut at the end (first to ``max_completion_length``). A prompt that alone leaves no room for one
    completion token (``len(prompt) >= max_length``) keeps its end, BOS included, and leaves the completions
    ``min(longest completion, max_length // 2)`` tokens; or, with ``prompt_overflow="drop"``, the row is dropped.

    Returns:
        ``(prompt, chosen, rejected, prompt_truncated, completion_truncated, skip_reason)``.

    >>> truncate_row([1, 5, 6, 7], [8, 9], [8], TokenizeSpec(max_length=4), bos_id=1)
    ([1, 7], [8, 9], [8], True, False, '')
    """
    lengths = (len(chosen), len(rejected))
    if spec.max_completion_length is not None:
        chosen, rejected = chosen[: spec.max_completion_length], rejected[: spec.max_completion_length]
    prompt_cut = False
    if spec.max_length is not None:
        if len(prompt) >= spec.max_length:
            if spec.prompt_overflow == "drop":
                return prompt, chosen, rejected, False, False, "prompt_overflow"
            keep = spec.max_length - min(max(len(chosen), len(rejected)), spec.max_length // 2)
            has_bos = bos_id is not None and prompt[0] == bos_id and keep > 1
            prompt = [bos_id] + prompt[len(prompt) - keep + 1 :] if has_bos else prompt[len(prompt) - keep :]
            prompt_cut = True
        room = spec.max_length - len(prompt)
        chosen, rejected = chosen[:room], rejected[:room]
    return prompt, chosen, rejected, prompt_cut, (len(chosen), len(rejected)) != lengths, ""


def _texts(batch: dict[str, list], indices: list[int], fmt: DatasetFormat, tokenizer, spec: TokenizeSpec):
    """Validate and render every row; returns the kept rows' texts and a skip reason per row."""
    keys = list(batch.keys())
    texts, reasons = [], []
    for i, index in enumerate(indices):
        row = {k: batch[k][i] for k in keys}
        try:
            example = validate_row(row, index, fmt)
            if fmt.conversational:
                if getattr(tokenizer, "chat_template", None) is None:
                    raise RowError(index, "chosen", "is a conversation but the tokenizer has no chat template",
                                   "set tokenizer.chat_template, or give plain strings")
                rendered = _render(example, tokenizer, index)
                for field, text in zip(("chosen", "rejected"), rendered[1:]):
                    if not text:
                        raise RowError(index, field, "renders as no text: the chat template writes nothing for "
                                       "this answer", "use a template that renders assistant turns, or drop the row")
                texts.append(rendered)
            else:
                texts.append((example.prompt, example.chosen, example.rejected))
            reasons.append("")
        except RowError as err:
            if spec.invalid_rows == "raise":
                raise
            texts.append(None)
            reasons.append(f"invalid: {err}")
    return texts, reasons


def _render(example, tokenizer, index: int):
    """The chat template applied, with a template's own refusal (say, roles that do not alternate) as a RowError."""
    try:
        return render_chat(example, tokenizer)
    except Exception as err:  # jinja2.TemplateError, or a tokenizer's ValueError/TypeError about tools
        field = "tools" if example.tools and _renders(replace(example, tools=None), tokenizer) else "prompt"
        raise RowError(index, field, f"the tokenizer's chat template rejects this conversation "
                       f"({type(err).__name__}: {str(err)[:200]})",
                       "make the conversation follow the template's rules, or drop the row") from err


def _renders(example, tokenizer) -> bool:
    """Whether the template accepts this row: the tools are to blame when the row without them renders."""
    try:
        render_chat(example, tokenizer)
    except Exception:
        return False
    return True


def _encode(tokenizer, texts: list[str], **kwargs) -> list[list[int]]:
    return tokenizer(texts, **kwargs)["input_ids"] if texts else []


def tokenize_batch(
    batch: dict[str, list], indices: list[int], *, tokenizer, fmt: DatasetFormat, spec: TokenizeSpec
) -> dict[str, list]:
    """``datasets.map(batched=True, with_indices=True)`` function: rows in, token ids and status columns out."""
    texts, reasons = _texts(batch, indices, fmt, tokenizer, spec)
    kept = [t for t in texts if t is not None]
    if spec.is_encoder_decoder:
        limit = spec.max_completion_length or DEFAULT_COMPLETION_LENGTH
        prompts = _encode(tokenizer, [t[0] for t in kept], add_special_tokens=True)
        chosen = _encode(tokenizer, [t[1] for t in kept], add_special_tokens=True, truncation=True, max_length=limit)
        rejected = _encode(tokenizer, [t[2] for t in kept], add_special_tokens=True, truncation=True, max_length=limit)
    elif spec.tokenize_jointly:
        prompts, chosen, rejected, unscored = _split_joint(_joint(tokenizer, [t[0] for t in kept], [t[1] for t in kept]),
                                                           _joint(tokenizer, [t[0] for t in kept], [t[2] for t in kept]))
        if not fmt.conversational:
            prompts, chosen, rejected = _add_special_tokens(tokenizer, prompts, chosen, rejected)
    elif not fmt.conversational and not fmt.explicit_prompt:
        full_c = _encode(tokenizer, [t[0] + t[1] for t in kept], add_special_tokens=False)
        full_r = _encode(tokenizer, [t[0] + t[2] for t in kept], add_special_tokens=False)
        prompts, chosen, rejected = _split_common_prefix(full_c, full_r)
        prompts, chosen, rejected = _add_special_tokens(tokenizer, prompts, chosen, rejected)
    else:
        prompts = _encode(tokenizer, [t[0] for t in kept], add_special_tokens=False)
        chosen = _encode(tokenizer, [t[1] for t in kept], add_special_tokens=False)
        rejected = _encode(tokenizer, [t[2] for t in kept], add_special_tokens=False)
        if not fmt.conversational:
            prompts, chosen, rejected = _add_special_tokens(tokenizer, prompts, chosen, rejected)

    joint = spec.tokenize_jointly and not spec.is_encoder_decoder
    out = {name: [] for name in ID_COLUMNS + STATUS_COLUMNS}
    it = iter(zip(prompts, chosen, rejected, unscored if joint else [(0, 0)] * len(kept)))
    bos = None if spec.is_encoder_decoder else tokenizer.bos_token_id
    for index, reason in zip(indices, reasons):
        p, c, r, p_cut, c_cut, u = [], [], [], False, False, (0, 0)
        if not reason:
            p, c, r, u = next(it)
            p, c, r, p_cut, c_cut, reason = truncate_row(p, c, r, spec, bos)
            reason = reason or _unscored_reason(index, c, r, u, spec)
        for name, value in zip(ID_COLUMNS + STATUS_COLUMNS, (p, c, r, index, reason, p_cut, c_cut)):
            out[name].append(value)
        if joint:
            out.setdefault("chosen_unscored", []).append(u[0])
            out.setdefault("rejected_unscored", []).append(u[1])
    return out


def _unscored_reason(index: int, chosen: list[int], rejected: list[int], unscored: tuple[int, int],
                     spec: TokenizeSpec) -> str:
    """``""`` when both completions keep a scored token; else the skip reason, or (``invalid_rows="raise"``) a
    RowError. A side with no scored token would get log-prob 0.0, the highest reward there is."""
    for field, ids, skip in (("chosen", chosen, unscored[0]), ("rejected", rejected, unscored[1])):
        if len(ids) - skip <= 0:
            err = RowError(index, field, f"has no token left to score ({len(ids)} token(s), {skip} of them unscored "
                           "context, after truncation)", "raise max_length / max_completion_length, or drop the row")
            if spec.invalid_rows == "raise":
                raise err
            return f"invalid: {err}"
    return ""


def _split_common_prefix(full_c: list[list[int]], full_r: list[list[int]]):
    """Implicit prompts, split at the token level: the prompt is the longest common token prefix. A word cut by
    the character-level prefix ("to b|reak" / "to b|ecome") goes whole to the completions, as its canonical tokens."""
    prompts, chosen, rejected = [], [], []
    for c, r in zip(full_c, full_r):
        n = common_prefix_length(c, r)
        prompts.append(c[:n])
        chosen.append(c[n:])
        rejected.append(r[n:])
    return prompts, chosen, rejected


def _joint(tokenizer, prompts: list[str], answers: list[str]) -> list[tuple[list[int], list[int]]]:
    """TRL's token boundary (``tokenize_jointly``): ``prompt + answer`` tokenized as one string, the answer starting
    where the prompt's own tokens end, or one token earlier when the last prompt token merged across the boundary
    ("offer." + "I am" -> ``.I``). Returns each row's ``(prompt part, answer part)`` of the joint ids."""
    full = _encode(tokenizer, [p + a for p, a in zip(prompts, answers)], add_special_tokens=False)
    alone = _encode(tokenizer, prompts, add_special_tokens=False)
    out = []
    for ids, prompt in zip(full, alone):
        start = len(prompt) - int(ids[: len(prompt)] != prompt)
        out.append((ids[:start], ids[start:]))
    return out


def _split_joint(chosen_parts, rejected_parts):
    """One prompt per pair from two joint tokenizations: their common prefix. What a side's prompt part has beyond it
    (the token the other side merged away) leads that side's completion as context, attended to but not scored."""
    prompts, chosen, rejected, unscored = [], [], [], []
    for (pc, ac), (pr, ar) in zip(chosen_parts, rejected_parts):
        n = common_prefix_length(pc, pr)
        prompts.append(pc[:n])
        chosen.append(pc[n:] + ac)
        rejected.append(pr[n:] + ar)
        unscored.append((len(pc) - n, len(pr) - n))
    return prompts, chosen, rejected, unscored


def with_prompt_start(tokenizer, prompt_ids: list[int]) -> list[int]:
    """The start rule of a plain-text prompt: BOS first when the tokenizer has one (unless already there); without a
    BOS an empty prompt becomes ``[EOS]``, so the first completion token is still predicted from something.

    Training (:func:`tokenize_batch`) and generation (:func:`encode_prompts`) both use this rule, so a model is
    prompted at test time with exactly the ids it was trained on.
    """
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    start = bos if bos is not None else eos
    if prompt_ids[:1] == [start] or (bos is None and prompt_ids):
        return list(prompt_ids)
    return [start, *prompt_ids]


def encode_prompts(tokenizer, prompts: list[str], templated: bool) -> list[list[int]]:
    """Token ids of prompt texts exactly as :func:`tokenize_batch` makes them: no special tokens added to a
    chat-templated prompt (``templated``), :func:`with_prompt_start` applied to a plain one."""
    ids = _encode(tokenizer, list(prompts), add_special_tokens=False)
    return ids if templated else [with_prompt_start(tokenizer, p) for p in ids]


def encode_prompt_values(tokenizer, prompts: list, tools: list | None = None,
                         template_kwargs: list | None = None) -> list[list[int]]:
    """Token ids of dataset prompts (strings, or conversations rendered by the chat template with the assistant's
    generation prompt), exactly as :func:`tokenize_batch` tokenizes the prompt of a preference row with them.

    Args:
        prompts: one prompt per row (each checked by :func:`cpo.rows.validate_prompt`).
        tools, template_kwargs: per-row ``tools`` and ``chat_template_kwargs`` of conversations (or None).

    Raises:
        RowError: a malformed prompt, or a conversation with a tokenizer that has no chat template.
    """
    out: list[list[int] | None] = [None] * len(prompts)
    plain = [i for i, p in enumerate(prompts) if isinstance(validate_prompt(p, i), str)]
    for i, ids in zip(plain, encode_prompts(tokenizer, [prompts[i] for i in plain], templated=False)):
        out[i] = ids
    chats = [i for i in range(len(prompts)) if out[i] is None]
    if chats and getattr(tokenizer, "chat_template", None) is None:
        raise RowError(chats[0], "prompt", "is a conversation but the tokenizer has no chat template",
                       "set tokenizer.chat_template, or give plain strings")
    tools, template_kwargs = tools or [None] * len(prompts), template_kwargs or [None] * len(prompts)
    for i in chats:
        check_template_kwargs(template_kwargs[i], i)
    texts = [render_prompt(prompts[i], tokenizer, tools[i], template_kwargs[i]) for i in chats]
    for i, ids in zip(chats, encode_prompts(tokenizer, texts, templated=True)):
        out[i] = ids
    return out


def _add_special_tokens(tokenizer, prompts, chosen, rejected):
    eos = tokenizer.eos_token_id
    prompts = [with_prompt_start(tokenizer, p) for p in prompts]
    chosen = [c if c[-1:] == [eos] else c + [eos] for c in chosen]
    rejected = [r if r[-1:] == [eos] else r + [eos] for r in rejected]
    return prompts, chosen, rejected


def _first_row(dataset) -> dict:
    for row in dataset:
        return row
    raise ValueError("The dataset is empty: there is nothing to train or evaluate on.")


def prepare_dataset(dataset, tokenizer, spec: TokenizeSpec, num_proc: int | None = None, name: str = "train"):
    """Tokenize a ``Dataset`` or ``IterableDataset`` of preference rows; report and remove skipped rows.

    Returns the tokenized dataset with the :data:`ID_COLUMNS` only. Counts of truncated and skipped rows are logged
    (for an ``IterableDataset`` they are logged as the rows stream by, by :class:`StreamCounter`).
    """
    from datasets import IterableDataset

    first = _first_row(dataset)
    columns = list(dataset.column_names) if dataset.column_names is not None else list(first.keys())
    fmt = detect_format(columns, first)
    kwargs = {"tokenizer": tokenizer, "fmt": fmt, "spec": spec}
    if isinstance(dataset, IterableDataset):
        dataset = dataset.map(tokenize_batch, batched=True, with_indices=True, fn_kwargs=kwargs, remove_columns=columns)
        counter = StreamCounter(name)
        return dataset.filter(counter).remove_columns(list(STATUS_COLUMNS))
    from datasets.fingerprint import Hasher

    fingerprint = Hasher.hash((dataset._fingerprint, _CODE_HASH, Hasher.hash(tokenizer), fmt, spec))
    dataset = dataset.map(
        tokenize_batch, batched=True, with_indices=True, fn_kwargs=kwargs, remove_columns=columns,
        num_proc=num_proc, desc=f"Tokenizing {name} pairs", new_fingerprint=fingerprint,
    )
    reasons = dataset["skip_reason"]
    report_counts(name, len(reasons), Counter(r.split(":")[0] for r in reasons if r),
                  sum(dataset["prompt_truncated"]), sum(dataset["completion_truncated"]),
                  [r for r in reasons if r][:3])
    if any(reasons):
        dataset = dataset.filter(lambda r: not r, input_columns="skip_reason")
    if len(dataset) == 0:
        raise ValueError(f"No usable rows are left in the {name} dataset (all {len(reasons)} were skipped).")
    return dataset.remove_columns(list(STATUS_COLUMNS))


def report_counts(name, total, skipped: Counter, prompt_cut: int, completion_cut: int, examples: list[str]) -> None:
    """Log what tokenization did to the rows; nothing is dropped without a line saying so."""
    if prompt_cut:
        logger.warning(f"{name}: {prompt_cut} of {total} prompts alone filled max_length; kept their end.")
    if completion_cut:
        logger.info(f"{name}: {completion_cut} of {total} rows had a completion cut to fit max_length.")
    if skipped:
        detail = ", ".join(f"{n} {kind}" for kind, n in skipped.items())
        logger.warning(f"{name}: skipped {sum(skipped.values())} of {total} rows ({detail}). First: {examples}")


class StreamCounter:
    """Filter for streamed rows: keeps the good ones, counts and logs the skipped ones as they go by."""

    def __init__(self, name: str):
        self.name, self.counts = name, Counter()

    def __call__(self, row: dict) -> bool:
        self.counts["rows"] += 1
        self.counts["prompt_truncated"] += int(row["prompt_truncated"])
        if not row["skip_reason"]:
            return True
        kind = row["skip_reason"].split(":")[0]
        self.counts[f"skipped_{kind}"] += 1
        logger.warning(
            f"{self.name}: skipped streamed row {row['row_index']} ({self.counts[f'skipped_{kind}']} {kind} so far): "
            f"{row['skip_reason']}"
        )
        return False

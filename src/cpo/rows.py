"""Preference rows: the four formats, validation with errors that name the row, prompt extraction, chat templates.

The four TRL preference formats are accepted:

>>> detect_format(["prompt", "chosen", "rejected"], {"prompt": "2+2=", "chosen": "4", "rejected": "5"})
DatasetFormat(conversational=False, explicit_prompt=True)
>>> extract_prompt_text("The sky is blue.", "The sky is green.")
('The sky is', ' blue.', ' green.')

Every problem with a row raises :class:`RowError`, a ``ValueError`` that names the row, the field and the fix.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

ROLES = ("system", "user", "assistant", "tool", "developer")
# A string no chat template writes by itself: where it ends in a rendered turn, the turn's end marker begins.
_ANSWER_MARK = "@@cpo-answer@@"
PROMPT_END_ROLES = ("user", "tool", "assistant", "system")


class RowError(ValueError):
    """A malformed dataset row: ``Row <index>, field '<field>': <problem>. Fix: <fix>``."""

    def __init__(self, row: int, field: str, problem: str, fix: str):
        self.row, self.field, self.problem = row, field, problem
        super().__init__(f"Row {row}, field '{field}': {problem}. Fix: {fix}")


@dataclass(frozen=True)
class DatasetFormat:
    """Standard (strings) or conversational (lists of ``{"role", "content"}``); explicit or implicit prompt."""

    conversational: bool
    explicit_prompt: bool


@dataclass(frozen=True)
class Example:
    """One validated row: strings (standard) or message lists (conversational), prompt already separated."""

    prompt: Any
    chosen: Any
    rejected: Any
    tools: list | None = None
    template_kwargs: dict | None = None


def _is_messages(value: Any) -> bool:
    return isinstance(value, list) and len(value) > 0 and isinstance(value[0], dict) and "role" in value[0]


def detect_format(columns: list[str], first_row: dict[str, Any]) -> DatasetFormat:
    """Detect the dataset format from its columns and first row.

    Raises:
        ValueError: when ``chosen`` or ``rejected`` is missing, naming the columns found.
    """
    missing = [c for c in ("chosen", "rejected") if c not in columns]
    if missing:
        raise ValueError(
            f"The dataset has no {' or '.join(repr(c) for c in missing)} column (columns: {sorted(columns)}). "
            "A preference dataset needs 'chosen' and 'rejected', and optionally 'prompt'; rename your columns, "
            "e.g. dataset.rename_column('response_good', 'chosen')."
        )
    return DatasetFormat(conversational=_is_messages(first_row.get("chosen")), explicit_prompt="prompt" in columns)


def _check_unicode(row: int, field: str, text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as err:
        raise RowError(row, field, f"holds characters that are not valid Unicode text ({err.reason} at "
                       f"position {err.start})", "repair the text (it often comes from a broken \\ud800-style JSON escape)"
                       ) from None


def _check_text(row: int, field: str, value: Any, allow_empty: bool = False) -> str:
    if value is None:
        raise RowError(row, field, "is missing (None)", f"give every row a string '{field}', or drop the row")
    if not isinstance(value, str):
        raise RowError(
            row, field, f"expected a string (standard format), got {type(value).__name__}",
            "use strings for prompt, chosen and rejected in every row, or messages in every row",
        )
    if not allow_empty and not value.strip():
        raise RowError(row, field, "is empty", "drop the row or give a non-empty answer")
    _check_unicode(row, field, value)
    return value


def _check_messages(row: int, field: str, value: Any, completion: bool) -> list[dict[str, str]]:
    if value is None:
        raise RowError(row, field, "is missing (None)", f"give every row a list of messages as '{field}'")
    if not isinstance(value, list) or not value:
        kind = "an empty list" if isinstance(value, list) else type(value).__name__
        raise RowError(
            row, field, f"expected a non-empty list of {{'role', 'content'}} messages (conversational format), "
            f"got {kind}", "use messages in every row, or strings in every row",
        )
    for i, msg in enumerate(value):
        where = f"{field}[{i}]"
        if not isinstance(msg, dict) or "role" not in msg or "content" not in msg:
            raise RowError(row, where, f"is not a {{'role', 'content'}} message: {str(msg)[:80]!r}",
                           "give each message a 'role' and a 'content'")
        if msg["role"] not in ROLES:
            raise RowError(row, f"{where}.role", f"has unknown role {msg['role']!r}", f"use one of {ROLES}")
        if not isinstance(msg["content"], str):
            raise RowError(row, f"{where}.content", f"expected a string, got {type(msg['content']).__name__}",
                           "give text content")
        if completion and not msg["content"].strip():
            raise RowError(row, f"{where}.content", "is empty", "drop the row or give a non-empty answer")
        _check_unicode(row, f"{where}.content", msg["content"])
    return value


def common_prefix_length(*seqs: Sequence) -> int:
    """Length of the longest common prefix of sequences (strings, token lists, message lists).

    >>> common_prefix_length("to break", "to become", "to be")
    4
    """
    n = 0
    for items in zip(*seqs):
        if any(x != items[0] for x in items[1:]):
            break
        n += 1
    return n


def extract_prompt_text(chosen: str, rejected: str) -> tuple[str, str, str]:
    """Split an implicit prompt off two strings: their longest common prefix, minus a trailing space
    (which goes to the completions, as in TRL)."""
    n = common_prefix_length(chosen, rejected)
    if n > 0 and chosen[n - 1] == " ":
        n -= 1
    return chosen[:n], chosen[n:], rejected[n:]


def extract_prompt_messages(chosen: list, rejected: list) -> tuple[list, list, list]:
    """Split an implicit prompt off two conversations: their longest common prefix of messages."""
    n = common_prefix_length(chosen, rejected)
    return chosen[:n], chosen[n:], rejected[n:]


def _check_completion_roles(row: int, field: str, messages: list) -> None:
    for i, msg in enumerate(messages):
        if msg["role"] != "assistant":
            raise RowError(
                row, f"{field}[{i}]",
                f"is a {msg['role']!r} message after the point where chosen and rejected differ, so the prompt "
                "differs between chosen and rejected",
                "make both conversations share every message up to the final assistant answer",
            )


def validate_prompt(value: Any, index: int) -> str | list[dict[str, str]]:
    """Check a prompt on its own (a dataset of prompts, as ``cpo generate`` reads): a string (may be empty), or a
    conversation that ends where an answer can follow.

    Raises:
        RowError: naming the row index, the field ``prompt`` and the fix.
    """
    if isinstance(value, list):
        messages = _check_messages(index, "prompt", value, completion=False)
        if messages[-1]["role"] not in PROMPT_END_ROLES:
            raise RowError(index, "prompt", f"ends with role {messages[-1]['role']!r}", "end the prompt with a user turn")
        return messages
    return _check_text(index, "prompt", value, allow_empty=True)


def check_template_kwargs(kwargs: Any, index: int) -> None:
    """A row's ``chat_template_kwargs``: None or a dict that does not replace the template (it belongs to the model;
    a row that brings its own would be rendered by rules the data chose).

    Raises:
        RowError: naming the row.
    """
    if kwargs is None:
        return
    if not isinstance(kwargs, dict):
        raise RowError(index, "chat_template_kwargs", f"expected a dict, got {type(kwargs).__name__}", "use a dict")
    if "chat_template" in kwargs:
        raise RowError(index, "chat_template_kwargs", "carries a 'chat_template': the template belongs to the model, "
                       "not to a row", "drop the key, or set tokenizer.chat_template for the whole run")


def validate_row(row: dict[str, Any], index: int, fmt: DatasetFormat) -> Example:
    """Check one row against the dataset format and separate its prompt.

    Raises:
        RowError: naming the row index, the field and the fix.
    """
    tools, kwargs = row.get("tools"), row.get("chat_template_kwargs")
    if tools is not None and not isinstance(tools, list):
        raise RowError(index, "tools", f"expected a list of tool schemas, got {type(tools).__name__}", "use a list")
    check_template_kwargs(kwargs, index)
    if not fmt.conversational:
        chosen = _check_text(index, "chosen", row.get("chosen"))
        rejected = _check_text(index, "rejected", row.get("rejected"))
        if fmt.explicit_prompt:
            prompt = _check_text(index, "prompt", row.get("prompt"), allow_empty=True)
            return Example(prompt, chosen, rejected)
        prompt, chosen, rejected = extract_prompt_text(chosen, rejected)
        for field, text in (("chosen", chosen), ("rejected", rejected)):
            if not text.strip():
                raise RowError(index, field, "is empty once the prompt shared with the other answer is removed",
                               "make chosen and rejected differ in their answers, or drop the row")
        return Example(prompt, chosen, rejected)

    chosen = _check_messages(index, "chosen", row.get("chosen"), completion=not fmt.explicit_prompt)
    rejected = _check_messages(index, "rejected", row.get("rejected"), completion=not fmt.explicit_prompt)
    if fmt.explicit_prompt:
        prompt = _check_messages(index, "prompt", row.get("prompt"), completion=False)
        _check_messages(index, "chosen", chosen, completion=True)
        _check_messages(index, "rejected", rejected, completion=True)
    else:
        prompt, chosen, rejected = extract_prompt_messages(chosen, rejected)
        if not prompt:
            raise RowError(index, "chosen", "shares no leading message with 'rejected', so there is no prompt",
                           "start both conversations with the same user message, or give an explicit 'prompt'")
        for field, part in (("chosen", chosen), ("rejected", rejected)):
            if not part:
                raise RowError(index, field, "has no answer after the prompt shared with the other conversation",
                               "end each conversation with its own assistant answer, or drop the row")
    if prompt[-1]["role"] not in PROMPT_END_ROLES:
        raise RowError(index, "prompt", f"ends with role {prompt[-1]['role']!r}", "end the prompt with a user turn")
    _check_completion_roles(index, "chosen", chosen)
    _check_completion_roles(index, "rejected", rejected)
    return Example(prompt, chosen, rejected, tools or None, kwargs)


def render_chat(example: Example, tokenizer) -> tuple[str, str, str]:
    """Apply the tokenizer's chat template to a conversational example.

    The prompt is rendered with the generation prompt (or continuing a final assistant message); each completion is
    what ``template(prompt + completion)`` adds to it. Per-row ``tools`` and ``chat_template_kwargs`` are passed on.

    Returns:
        ``(prompt_text, chosen_text, rejected_text)``; completions end as the template ends a turn.
    """
    kwargs = dict(example.template_kwargs or {})
    if example.tools:
        kwargs["tools"] = example.tools
    prompt = render_prompt(example.prompt, tokenizer, example.tools, example.template_kwargs)
    full_c = tokenizer.apply_chat_template(example.prompt + example.chosen, tokenize=False, **kwargs)
    full_r = tokenizer.apply_chat_template(example.prompt + example.rejected, tokenize=False, **kwargs)
    prompt = prompt[: common_prefix_length(prompt, full_c, full_r)]
    return prompt, full_c[len(prompt):], full_r[len(prompt):]


def render_prompt(messages: list[dict], tokenizer, tools: list | None = None, template_kwargs: dict | None = None) -> str:
    """A conversation rendered by the chat template as the prompt of the next answer: with the assistant's
    generation prompt, or continuing a final assistant message. The prompt text :func:`render_chat` trains on."""
    kwargs = dict(template_kwargs or {})
    if tools:
        kwargs["tools"] = tools
    cont = messages[-1]["role"] == "assistant"
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=not cont,
                                         continue_final_message=cont, **kwargs)


def chat_end_of_turn(tokenizer) -> str | None:
    """The special token the chat template writes right after an assistant answer (``<|im_end|>`` for ChatML,
    ``<|eot_id|>`` for Llama 3), or ``None`` without a template or when the answer is not followed by one."""
    if not getattr(tokenizer, "chat_template", None):
        return None
    messages = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": _ANSWER_MARK}]
    try:
        text = tokenizer.apply_chat_template(messages, tokenize=False)
    except Exception:  # a template that needs tools or other kwargs: no end-of-turn token is known
        return None
    if _ANSWER_MARK not in text:
        return None
    after = text.rsplit(_ANSWER_MARK, 1)[1]
    specials = sorted({*tokenizer.all_special_tokens, *tokenizer.get_added_vocab()}, key=len, reverse=True)
    return next((tok for tok in specials if tok and after.startswith(tok)), None)

"""Hostile data, fuzzed with hypothesis: every row ends as a ValueError naming the row and the field, or as a
correctly tokenised row; never a crash inside the tokenizer or torch, never a NaN loss; skipped rows are counted."""

import copy
import logging
import math

import pytest
from datasets import Dataset
from helpers import tiny_qwen2, train_args
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from cpo import CPOTrainer
from cpo.rows import ROLES, RowError, detect_format
from cpo.tokenization import TokenizeSpec, tokenize_batch

SETTINGS = settings(max_examples=300, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

texts = st.one_of(
    st.text(max_size=60),  # any unicode, lone surrogates included
    st.sampled_from(["", " ", "\n\t ", "\x00", "\ufeff", "<|endoftext|>", "é" * 3, " Yes.", "\ud800"]),
)
roles = st.one_of(st.sampled_from(ROLES), st.sampled_from(["robot", "", "USER", 3, None]))
messages = st.lists(st.fixed_dictionaries({"role": roles, "content": st.one_of(texts, st.none(), st.integers())}),
                    max_size=3)
values = st.one_of(texts, st.none(), st.integers(), st.floats(), messages, st.just({"text": "x"}))


@st.composite
def rows(draw):
    keys = draw(st.sets(st.sampled_from(["prompt", "chosen", "rejected"]), min_size=1))
    return {k: draw(values) for k in keys}


def outcome(row, tokenizer, index=7, max_length=64):
    """Run one row through format detection and tokenization; return the tokenized row or the error."""
    try:
        fmt = detect_format(list(row), row)
        batch = {k: [v] for k, v in row.items()}
        return tokenize_batch(batch, [index], tokenizer=tokenizer, fmt=fmt, spec=TokenizeSpec(max_length=max_length))
    except ValueError as err:
        return err


def check(row, tokenizer, max_length=64):
    result = outcome(row, tokenizer, max_length=max_length)
    if isinstance(result, RowError):
        assert result.row == 7 and result.field and f"Row 7, field '{result.field}'" in str(result)
        assert result.field.split("[")[0].split(".")[0] in row or result.field in ("tools", "chat_template_kwargs")
        return
    if isinstance(result, ValueError):  # a dataset-level problem: a required column is missing
        assert "column" in str(result) and ("'chosen'" in str(result) or "'rejected'" in str(result))
        return
    vocab = len(tokenizer)
    p, c, r = result["prompt_input_ids"][0], result["chosen_input_ids"][0], result["rejected_input_ids"][0]
    assert p and c and r and result["skip_reason"] == [""]
    assert all(0 <= t < vocab for t in p + c + r)
    assert len(p) + len(c) <= max_length and len(p) + len(r) <= max_length


@SETTINGS
@given(rows())
@example({"prompt": "Q", "chosen": "a" * 1_000_000, "rejected": " b"})  # a megabyte-long completion
@example({"prompt": " " * 1_000_000, "chosen": " a", "rejected": " b"})
@example({"prompt": "Q", "chosen": "\ud800", "rejected": " b"})
def test_standard_rows_fail_cleanly_or_tokenize(tok, row):
    check(row, tok)


@SETTINGS
@given(st.fixed_dictionaries({"chosen": messages, "rejected": messages}, optional={"prompt": messages}))
@example({"prompt": [{"role": "user", "content": "Hi"}], "chosen": [{"role": "assistant", "content": "Yo"}],
          "rejected": [{"role": "assistant", "content": " "}]})
@example({"chosen": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "A"}],
          "rejected": [{"role": "user", "content": "Ho"}, {"role": "assistant", "content": "B"}]})
def test_conversational_rows_fail_cleanly_or_tokenize(qwen2_tokenizer, row):
    check(row, qwen2_tokenizer)


def test_skipped_rows_are_counted_and_the_loss_stays_finite(tmp_path, tok, caplog):
    """A dataset mixing good rows with hostile ones trains with invalid_rows='skip': the bad ones are counted
    in the log, the good ones all arrive, and the losses are finite."""
    good = [{"prompt": f"Question {i}?", "chosen": f" Answer {i}.", "rejected": f" Wrong {i}."} for i in range(6)]
    # (Arrow cannot even store a lone surrogate or a column of mixed types: those fail at load time, before us.)
    bad = [{"prompt": "Q", "chosen": "", "rejected": " b"}, {"prompt": "Q", "chosen": None, "rejected": " b"},
           {"prompt": None, "chosen": " a", "rejected": " b"}, {"prompt": "Q", "chosen": " a", "rejected": "\t"}]
    data = Dataset.from_list([{"prompt": r["prompt"], "chosen": r["chosen"], "rejected": r["rejected"]}
                              for r in good[:3] + bad + good[3:]])
    args = train_args(tmp_path, invalid_rows="skip", max_length=32, per_device_train_batch_size=3, max_steps=2)
    with caplog.at_level(logging.WARNING, logger="cpo"):
        trainer = CPOTrainer(model=tiny_qwen2(len(tok)), args=args, processing_class=copy.deepcopy(tok),
                             train_dataset=data)
    assert "skipped 4 of 10 rows (4 invalid)" in caplog.text
    assert sorted(trainer.train_dataset["row_index"]) == [0, 1, 2, 7, 8, 9]
    trainer.train()
    assert all(math.isfinite(h["loss"]) for h in trainer.state.log_history if "loss" in h)


@pytest.mark.parametrize("template", ["{{ raise_exception('roles must alternate') }}", "{% for m in messages %}"])
def test_a_template_that_rejects_a_conversation_is_a_row_error(qwen2_tokenizer, template):
    tokenizer = copy.deepcopy(qwen2_tokenizer)
    tokenizer.chat_template = template
    row = {"prompt": [{"role": "user", "content": "Hi"}], "chosen": [{"role": "assistant", "content": "A"}],
           "rejected": [{"role": "assistant", "content": "B"}]}
    result = outcome(row, tokenizer)
    assert isinstance(result, RowError) and "chat template rejects" in str(result)


# ------------------------------------------------------------------------------------- at scale (slow suite)

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "\ufeff", "\x00", "é", "日本語", "🙂", "\u200b"]


def random_text(rng, valid: bool) -> str | None:
    """Valid: at least one letter or digit among random unicode (no lone surrogates: Arrow cannot store them), long
    ones included. Invalid: empty, blank, or missing."""
    if not valid:
        return rng.choice(["", " ", "\n\t  ", None])
    n = rng.choice([1, 3, 12, 80, 600])
    chars = [chr(rng.choice([rng.randrange(32, 127), rng.randrange(0xA0, 0xD7FF), rng.randrange(0xE000, 0x10FFFF)]))
             for _ in range(n)]
    chars = [c if not 0xD800 <= ord(c) <= 0xDFFF else "x" for c in chars]
    return rng.choice(SPECIALS) + "".join(chars) + rng.choice("aZ7") + rng.choice(["", " ", "\n"])


def standard_row(rng, bad_field: str | None) -> dict:
    row = {f: random_text(rng, f != bad_field) for f in ("prompt", "chosen", "rejected")}
    if bad_field == "prompt":
        row["prompt"] = None  # an empty prompt is allowed; a missing one is not
    return row


def conversational_row(rng, bad: str | None) -> dict:
    def msg(role, valid=True):
        return {"role": role, "content": random_text(rng, valid) or ""}

    row = {"prompt": [msg("system"), msg("user")], "chosen": [msg("assistant")], "rejected": [msg("assistant")]}
    if bad == "empty_answer":
        row["chosen"] = [msg("assistant", valid=False)]
    elif bad == "role":
        row["rejected"] = [{"role": rng.choice(["robot", "USER", ""]), "content": "text"}]
    elif bad == "answer_role":
        row["chosen"] = [msg("user")]
    return row


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["standard", "conversational"])
def test_ten_thousand_generated_rows_skip_exactly_the_invalid_ones(tmp_path, kind, tok, qwen2_tokenizer, caplog):
    """10,000 seeded rows, about a quarter made invalid by the generator (it knows which): with invalid_rows='skip'
    the skip count is exactly that, every valid row arrives, and a few training steps on them stay finite."""
    import random

    from cpo.tokenization import prepare_dataset

    rng = random.Random(f"fuzz-{kind}")
    faults = {"standard": ["prompt", "chosen", "rejected"], "conversational": ["empty_answer", "role", "answer_role"]}
    make = standard_row if kind == "standard" else conversational_row
    bad = [rng.choice(faults[kind]) if rng.random() < 0.25 else None for _ in range(10_000)]
    data = Dataset.from_list([make(rng, b) for b in bad])
    tokenizer = tok if kind == "standard" else qwen2_tokenizer
    with caplog.at_level(logging.WARNING, logger="cpo"):
        out = prepare_dataset(data, tokenizer, TokenizeSpec(max_length=64, invalid_rows="skip"))
    invalid = sum(b is not None for b in bad)
    assert 2000 < invalid < 3000
    assert f"skipped {invalid} of 10000 rows ({invalid} invalid)" in caplog.text
    assert sorted(out["row_index"]) == [i for i, b in enumerate(bad) if b is None]
    assert all(p and c and r and len(p) + max(len(c), len(r)) <= 64 for p, c, r in
               zip(out["prompt_input_ids"], out["chosen_input_ids"], out["rejected_input_ids"]))
    args = train_args(tmp_path, invalid_rows="skip", max_length=64, per_device_train_batch_size=8, max_steps=3)
    trainer = CPOTrainer(model=tiny_qwen2(len(tokenizer)), args=args, processing_class=copy.deepcopy(tokenizer),
                         train_dataset=data.select(range(400)))
    trainer.train()
    logs = [h for h in trainer.state.log_history if "loss" in h]
    assert len(logs) == 3 and all(math.isfinite(v) for h in logs for v in h.values())

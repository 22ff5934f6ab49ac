"""Tokenization: TRL's token ids where we agree, BOS/EOS rules, truncation, skipped-row accounting."""

import copy
import logging
import types
from types import SimpleNamespace

import pytest
from datasets import Dataset, IterableDataset
from helpers import MERGING, zen

from cpo.rows import DatasetFormat, RowError
from cpo.tokenization import TokenizeSpec, prepare_dataset, tokenize_batch, truncate_row

STD = DatasetFormat(conversational=False, explicit_prompt=True)
CONV = DatasetFormat(conversational=True, explicit_prompt=True)


def tokenize_rows(rows, tokenizer, fmt=STD, **spec):
    batch = {k: [r.get(k) for r in rows] for k in rows[0]}
    return tokenize_batch(batch, list(range(len(rows))), tokenizer=tokenizer, fmt=fmt, spec=TokenizeSpec(**spec))


def trl_tokenize(tokenizer, row, max_length=1024):
    from trl.experimental.cpo import CPOTrainer

    fake = SimpleNamespace(processing_class=tokenizer, is_encoder_decoder=False, max_length=max_length)
    fake.build_tokenized_answer = types.MethodType(CPOTrainer.build_tokenized_answer, fake)
    return CPOTrainer.tokenize_row(fake, row)


def test_standard_rows_get_trl_token_ids(tok):
    """On TRL's own test table TRL and we produce the same sequences: BOS + prompt + completion + EOS."""
    rows = list(zen("standard_preference", "train")) + list(zen("standard_preference", "test"))
    ours = tokenize_rows(rows, tok)
    for i, row in enumerate(rows):
        ref = trl_tokenize(tok, row)
        assert ours["prompt_input_ids"][i] + ours["chosen_input_ids"][i] == ref["chosen_input_ids"]
        assert ours["prompt_input_ids"][i] + ours["rejected_input_ids"][i] == ref["rejected_input_ids"]
        assert ours["prompt_input_ids"][i] == ref["prompt_input_ids"]


def test_plain_text_bos_and_eos_are_never_doubled(tok):
    eos = tok.eos_token_id  # GPT-2: BOS and EOS are both <|endoftext|>
    rows = [
        {"prompt": "Hi", "chosen": " there", "rejected": " you"},
        {"prompt": "<|endoftext|>Hi", "chosen": " there<|endoftext|>", "rejected": " you"},
    ]
    out = tokenize_rows(rows, tok)
    for i in range(2):
        assert out["prompt_input_ids"][i] == [eos, tok.convert_tokens_to_ids("Hi")]
        assert out["chosen_input_ids"][i][-1] == eos and out["chosen_input_ids"][i][-2] != eos
        assert out["rejected_input_ids"][i][-1] == eos and out["rejected_input_ids"][i][-2] != eos


def test_empty_prompt_without_bos_starts_with_eos(tok):
    tok = copy.deepcopy(tok)
    tok.bos_token = None
    out = tokenize_rows([{"prompt": "", "chosen": "Yes", "rejected": "No"}], tok)
    assert out["prompt_input_ids"][0] == [tok.eos_token_id]
    out = tokenize_rows([{"prompt": "Q", "chosen": "Yes", "rejected": "No"}], tok)
    assert out["prompt_input_ids"][0] == tok("Q")["input_ids"]  # no BOS to add


def test_chat_template_is_authoritative(qwen2_tokenizer):
    """No BOS the template does not write; no EOS after '<|im_end|>\\n' (TRL appends <|endoftext|> there)."""
    row = {"prompt": [{"role": "user", "content": "2+2?"}], "chosen": [{"role": "assistant", "content": "4"}],
           "rejected": [{"role": "assistant", "content": "5"}]}
    out = tokenize_rows([row], qwen2_tokenizer, fmt=CONV)
    text = qwen2_tokenizer.decode(out["prompt_input_ids"][0] + out["chosen_input_ids"][0])
    assert text == qwen2_tokenizer.apply_chat_template(row["prompt"] + row["chosen"], tokenize=False)
    assert text.startswith("<|im_start|>system") and text.endswith("4<|im_end|>\n")
    assert qwen2_tokenizer.bos_token_id not in out["prompt_input_ids"][0]
    assert out["chosen_input_ids"][0].count(qwen2_tokenizer.eos_token_id) == 0


def test_truncate_completion_only():
    assert truncate_row([1, 2], [3, 4, 5, 6], [7], TokenizeSpec(max_length=4), 1) == ([1, 2], [3, 4], [7], False, True, "")
    assert truncate_row([1, 2], [3, 4, 5], [7, 8, 9], TokenizeSpec(max_length=None, max_completion_length=2), 1) == (
        [1, 2], [3, 4], [7, 8], False, True, "")


def test_prompt_that_fills_max_length_keeps_its_end_and_bos():
    # prompt of 10 >= max_length 8; completions 3 and 6 long -> they get min(6, 8 // 2) = 4; prompt keeps 4: BOS + 3.
    prompt, chosen, rejected = [1] + list(range(10, 19)), [3, 4, 5], [6, 7, 8, 9, 10, 11]
    p, c, r, p_cut, c_cut, reason = truncate_row(prompt, chosen, rejected, TokenizeSpec(max_length=8), bos_id=1)
    assert p == [1, 16, 17, 18] and c == [3, 4, 5] and r == [6, 7, 8, 9] and p_cut and c_cut and reason == ""
    assert len(p) + len(r) == 8
    # without a BOS the last tokens are kept
    p, *_ = truncate_row(list(range(10, 20)), [3], [4], TokenizeSpec(max_length=4), bos_id=None)
    assert p == [17, 18, 19]
    # a prompt exactly at max_length still leaves completions non-empty
    p, c, r, *_ = truncate_row(list(range(8)), [3, 4], [5], TokenizeSpec(max_length=8), bos_id=None)
    assert len(p) == 6 and c == [3, 4] and r == [5]
    # or the row is dropped
    assert truncate_row(list(range(8)), [3], [4], TokenizeSpec(max_length=8, prompt_overflow="drop"), None)[-1] == (
        "prompt_overflow")


def test_prepare_dataset_reports_truncation_and_drops(tok, caplog):
    long_prompt = "word " * 40
    rows = [{"prompt": long_prompt, "chosen": " a", "rejected": " b"}, {"prompt": "Q", "chosen": " a", "rejected": " b"}]
    with caplog.at_level(logging.INFO, logger="cpo"):
        out = prepare_dataset(Dataset.from_list(rows), tok, TokenizeSpec(max_length=16))
    assert len(out) == 2 and "1 of 2 prompts alone filled max_length" in caplog.text
    assert all(len(p) + len(c) <= 16 for p, c in zip(out["prompt_input_ids"], out["chosen_input_ids"]))
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="cpo"):
        out = prepare_dataset(Dataset.from_list(rows), tok, TokenizeSpec(max_length=16, prompt_overflow="drop"))
    assert len(out) == 1 and out["row_index"] == [1] and "skipped 1 of 2 rows (1 prompt_overflow)" in caplog.text
    assert out.column_names == ["prompt_input_ids", "chosen_input_ids", "rejected_input_ids", "row_index"]


def test_invalid_rows_raise_by_default_and_are_counted_when_skipped(tok, caplog):
    rows = [{"prompt": "Q", "chosen": " a", "rejected": " b"}] * 3 + [{"prompt": "Q", "chosen": None, "rejected": " b"}]
    with pytest.raises(RowError, match="Row 3, field 'chosen': is missing"):
        prepare_dataset(Dataset.from_list(rows), tok, TokenizeSpec())
    with caplog.at_level(logging.WARNING, logger="cpo"):
        out = prepare_dataset(Dataset.from_list(rows), tok, TokenizeSpec(invalid_rows="skip"))
    assert out["row_index"] == [0, 1, 2]
    assert "skipped 1 of 4 rows (1 invalid)" in caplog.text and "Row 3, field 'chosen'" in caplog.text


def test_iterable_dataset_streams_and_counts_skips(tok, caplog):
    rows = [{"prompt": "Q", "chosen": " a", "rejected": " b"}, {"prompt": "Q", "chosen": "", "rejected": " b"},
            {"prompt": "R", "chosen": " c", "rejected": " d"}]
    stream = IterableDataset.from_generator(lambda: iter(rows))
    with caplog.at_level(logging.WARNING, logger="cpo"):
        out = list(prepare_dataset(stream, tok, TokenizeSpec(invalid_rows="skip")))
    assert [r["row_index"] for r in out] == [0, 2]
    assert "skipped streamed row 1 (1 invalid so far)" in caplog.text


def test_empty_dataset_is_an_error(tok):
    with pytest.raises(ValueError, match="The dataset is empty"):
        prepare_dataset(Dataset.from_dict({"prompt": [], "chosen": [], "rejected": []}), tok, TokenizeSpec())


def test_implicit_prompt_is_split_at_the_token_level_as_trl(qwen2_tokenizer):
    """'Special cases aren't special enough to b|reak' / 'to b|ecome': the character prefix cuts a word; its
    canonical tokens ('break', 'become') go whole to the completions, as in TRL."""
    from trl.data_utils import maybe_extract_prompt

    rows = list(zen("standard_implicit_prompt_preference", "train"))
    fmt = DatasetFormat(conversational=False, explicit_prompt=False)
    ours = tokenize_rows(rows, qwen2_tokenizer, fmt=fmt)
    for i, row in enumerate(rows):
        ref = trl_tokenize(qwen2_tokenizer, maybe_extract_prompt(row))
        assert ours["prompt_input_ids"][i] + ours["chosen_input_ids"][i] == ref["chosen_input_ids"]
        assert ours["prompt_input_ids"][i] + ours["rejected_input_ids"][i] == ref["rejected_input_ids"]
    assert qwen2_tokenizer.decode(ours["chosen_input_ids"][7]).startswith(" break the rules")
    assert qwen2_tokenizer.decode(ours["rejected_input_ids"][7]).startswith(" become")


def test_tokenize_jointly_gives_trls_ids_and_scored_tokens(qwen2_tokenizer):
    """With tokenize_jointly, every sequence and every scored token equals TRL's, on rows that merge across the
    prompt/answer boundary and rows that do not; without it, the merging rows differ (our default)."""
    from cpo.layouts import PreferenceCollator

    batch = {k: [r[k] for r in MERGING] for k in ("prompt", "chosen", "rejected")}
    fmt = DatasetFormat(conversational=False, explicit_prompt=True)
    joint = tokenize_batch(batch, list(range(4)), tokenizer=qwen2_tokenizer, fmt=fmt,
                           spec=TokenizeSpec(tokenize_jointly=True))
    apart = tokenize_batch(batch, list(range(4)), tokenizer=qwen2_tokenizer, fmt=fmt, spec=TokenizeSpec())
    merged = 0
    for i, row in enumerate(MERGING):
        ref = trl_tokenize(qwen2_tokenizer, row)
        c_ids, c_labels, r_ids, r_labels = (ref[k] for k in ("chosen_input_ids", "chosen_labels", "rejected_input_ids",
                                                              "rejected_labels"))
        feature = {k: v[i] for k, v in joint.items() if k not in ("skip_reason", "prompt_truncated",
                                                                  "completion_truncated")}
        p = feature["prompt_input_ids"]
        assert p + feature["chosen_input_ids"] == c_ids and p + feature["rejected_input_ids"] == r_ids
        for layout in ({}, {"packed": True, "shared_prompt": True}):
            b = PreferenceCollator(pad_token_id=0, **layout)([feature])
            scored = {s: b["target_ids"][b["target_seq"] == s].tolist() for s in (0, 1)}
            assert scored[0] == [t for t in c_labels if t != -100] and scored[1] == [t for t in r_labels if t != -100]
        same = apart["prompt_input_ids"][i] + apart["chosen_input_ids"][i] == c_ids
        merged += not same
    assert merged >= 2  # the first and third rows merge ".I" / ".Yes"-like tokens in Qwen2


@pytest.mark.parametrize("tools_to_blame", [True, False])
def test_a_template_refusal_names_tools_only_when_the_row_renders_without_them(qwen2_tokenizer, tools_to_blame):
    """The field is found by rendering the row again without its tools, not by reading the template's message
    (which here never says "tool")."""
    tok = copy.deepcopy(qwen2_tokenizer)
    refuse = "tools" if tools_to_blame else "messages[0]['content'] == 'Hi'"
    tok.chat_template = ("{% if " + refuse + " %}{{ raise_exception('unsupported') }}{% endif %}"
                         "{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}{% endfor %}")
    row = {"prompt": [{"role": "user", "content": "Hi"}], "chosen": [{"role": "assistant", "content": "Yes"}],
           "rejected": [{"role": "assistant", "content": "No"}],
           "tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}]}
    with pytest.raises(RowError, match="chat template rejects") as err:
        tokenize_rows([row], tok, fmt=CONV)
    assert err.value.field == ("tools" if tools_to_blame else "prompt")


def test_tokenize_jointly_never_leaves_a_side_without_a_scored_token(qwen2_tokenizer):
    """Issue 20, fault 1: in Qwen2 "Name a colour." + "Blue." merges into ".Blue", so the pair's prompt stops before
    "." and the rejected side (" Red.") starts with "." as unscored context. With max_completion_length=1 that is
    all it keeps: 0 scored tokens, log-prob 0.0, the best reward there is. The row is refused, naming it, or
    skipped and counted."""
    row = MERGING[1]
    batch = {k: [row[k]] for k in ("prompt", "chosen", "rejected")}
    spec = TokenizeSpec(tokenize_jointly=True, max_completion_length=1)
    full = tokenize_batch(batch, [5], tokenizer=qwen2_tokenizer, fmt=STD, spec=TokenizeSpec(tokenize_jointly=True))
    assert full["rejected_unscored"][0] == 1  # the case: the other side's merged-away "." leads the rejected side
    with pytest.raises(RowError, match="no token left to score") as err:
        tokenize_batch(batch, [5], tokenizer=qwen2_tokenizer, fmt=STD, spec=spec)
    assert err.value.row == 5 and err.value.field == "rejected"
    skipped = tokenize_batch(batch, [5], tokenizer=qwen2_tokenizer, fmt=STD,
                             spec=TokenizeSpec(tokenize_jointly=True, max_completion_length=1, invalid_rows="skip"))
    assert skipped["skip_reason"][0].startswith("invalid: Row 5, field 'rejected'")


def test_every_kept_row_scores_at_least_one_token_per_side(qwen2_tokenizer):
    """Whatever the limits, a row that is kept has a scored token on both sides (all four merging rows, joint and
    apart, every completion limit)."""
    batch = {k: [r[k] for r in MERGING] for k in ("prompt", "chosen", "rejected")}
    for joint in (True, False):
        for limit in (1, 2, 3, None):
            spec = TokenizeSpec(tokenize_jointly=joint, max_completion_length=limit, invalid_rows="skip")
            out = tokenize_batch(batch, list(range(4)), tokenizer=qwen2_tokenizer, fmt=STD, spec=spec)
            for i in range(4):
                if out["skip_reason"][i]:
                    continue
                for side in ("chosen", "rejected"):
                    skip = out[f"{side}_unscored"][i] if joint else 0
                    assert len(out[f"{side}_input_ids"][i]) - skip >= 1


def test_a_template_that_renders_no_answer_is_refused_at_tokenization(qwen2_tokenizer):
    """Issue 20, fault 8: a chat template that writes nothing for assistant turns is caught here, naming the row,
    not mid-training with a misleading message."""
    tok = copy.deepcopy(qwen2_tokenizer)
    tok.chat_template = ("{% for m in messages %}{% if m['role'] != 'assistant' %}<{{ m['role'] }}>{{ m['content'] }}"
                         "{% endif %}{% endfor %}")
    row = {"prompt": [{"role": "user", "content": "Hi"}], "chosen": [{"role": "assistant", "content": "Yes"}],
           "rejected": [{"role": "assistant", "content": "No"}]}
    with pytest.raises(RowError, match="renders as no text") as err:
        tokenize_rows([row], tok, fmt=CONV)
    assert err.value.row == 0 and err.value.field == "chosen"


def test_a_row_may_not_bring_its_own_chat_template(qwen2_tokenizer):
    """Issue 20, fault 9: a per-row chat_template in chat_template_kwargs is refused, naming the row, in training
    rows and in the prompts of `cpo generate`; other kwargs still pass."""
    from cpo.tokenization import encode_prompt_values

    evil = {"chat_template": "{{ 'pwned' }}"}
    row = {"prompt": [{"role": "user", "content": "Hi"}], "chosen": [{"role": "assistant", "content": "Yes"}],
           "rejected": [{"role": "assistant", "content": "No"}], "chat_template_kwargs": evil}
    with pytest.raises(RowError, match="belongs to the model") as err:
        tokenize_rows([row], qwen2_tokenizer, fmt=CONV)
    assert err.value.row == 0 and err.value.field == "chat_template_kwargs"
    with pytest.raises(RowError, match="belongs to the model") as err:
        encode_prompt_values(qwen2_tokenizer, ["plain", row["prompt"]], template_kwargs=[None, evil])
    assert err.value.row == 1
    ok = tokenize_rows([{**row, "chat_template_kwargs": {"enable_thinking": False}}], qwen2_tokenizer, fmt=CONV)
    assert ok["chosen_input_ids"][0]

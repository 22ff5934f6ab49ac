"""Row functions: format detection, prompt extraction, validation errors, chat templates (TRL as reference)."""

import pytest
from helpers import zen

from cpo.rows import (
    DatasetFormat,
    RowError,
    detect_format,
    extract_prompt_messages,
    extract_prompt_text,
    render_chat,
    validate_row,
)

FORMATS = {
    "standard_preference": DatasetFormat(conversational=False, explicit_prompt=True),
    "standard_implicit_prompt_preference": DatasetFormat(conversational=False, explicit_prompt=False),
    "conversational_preference": DatasetFormat(conversational=True, explicit_prompt=True),
    "conversational_implicit_prompt_preference": DatasetFormat(conversational=True, explicit_prompt=False),
}


@pytest.mark.parametrize("name", list(FORMATS))
def test_detect_format_of_trl_tables(name):
    ds = zen(name)
    assert detect_format(ds.column_names, ds[0]) == FORMATS[name]


def test_missing_column_is_named():
    with pytest.raises(ValueError, match=r"no 'rejected' column \(columns: \['chosen', 'prompt'\]\)"):
        detect_format(["prompt", "chosen"], {"prompt": "a", "chosen": "b"})


@pytest.mark.parametrize("name", ["standard_implicit_prompt_preference", "conversational_implicit_prompt_preference"])
def test_implicit_prompt_extraction_equals_trl(name):
    from trl.data_utils import extract_prompt

    for row in zen(name):
        expected = extract_prompt(row)
        if isinstance(row["chosen"], str):
            got = extract_prompt_text(row["chosen"], row["rejected"])
        else:
            got = extract_prompt_messages(row["chosen"], row["rejected"])
        assert got == (expected["prompt"], expected["chosen"], expected["rejected"])


def test_extract_prompt_text_examples():
    assert extract_prompt_text("The sky is blue.", "The sky is green.") == ("The sky is", " blue.", " green.")
    assert extract_prompt_text("Yes", "No") == ("", "Yes", "No")
    assert extract_prompt_text("abc", "abd") == ("ab", "c", "d")


STD = DatasetFormat(conversational=False, explicit_prompt=True)
STD_IMPLICIT = DatasetFormat(conversational=False, explicit_prompt=False)
CONV = DatasetFormat(conversational=True, explicit_prompt=True)
CONV_IMPLICIT = DatasetFormat(conversational=True, explicit_prompt=False)
U = {"role": "user", "content": "Hi?"}
A = {"role": "assistant", "content": "Hello."}
B = {"role": "assistant", "content": "Go away."}


@pytest.mark.parametrize(
    "fmt,row,field,problem",
    [
        (STD, {"prompt": "p", "chosen": None, "rejected": "r"}, "chosen", "is missing"),
        (STD, {"prompt": "p", "chosen": 3, "rejected": "r"}, "chosen", "expected a string"),
        (STD, {"prompt": "p", "chosen": "c", "rejected": "  "}, "rejected", "is empty"),
        (STD, {"prompt": ["p"], "chosen": "c", "rejected": "r"}, "prompt", "expected a string"),
        (STD, {"prompt": "p", "chosen": [A], "rejected": "r"}, "chosen", "expected a string"),
        (STD_IMPLICIT, {"chosen": "Same answer", "rejected": "Same answer"}, "chosen", "is empty once the prompt"),
        (CONV, {"prompt": [U], "chosen": "Hello.", "rejected": [B]}, "chosen", "expected a non-empty list"),
        (CONV, {"prompt": [U], "chosen": [], "rejected": [B]}, "chosen", "got an empty list"),
        (CONV, {"prompt": [U], "chosen": [{"role": "robot", "content": "x"}], "rejected": [B]}, "chosen[0].role",
         "unknown role 'robot'"),
        (CONV, {"prompt": [U], "chosen": [{"role": "assistant"}], "rejected": [B]}, "chosen[0]", "is not a"),
        (CONV, {"prompt": [U], "chosen": [{"role": "assistant", "content": 5}], "rejected": [B]},
         "chosen[0].content", "expected a string"),
        (CONV, {"prompt": [U], "chosen": [{"role": "assistant", "content": ""}], "rejected": [B]},
         "chosen[0].content", "is empty"),
        (CONV_IMPLICIT, {"chosen": [U, A], "rejected": [{"role": "user", "content": "Other?"}, B]}, "chosen",
         "shares no leading message"),
        (CONV_IMPLICIT, {"chosen": [U, A, U, A], "rejected": [U, B, U, B]}, "chosen[1]", "prompt differs"),
        (CONV_IMPLICIT, {"chosen": [U, A], "rejected": [U, A]}, "chosen", "no answer after the prompt"),
        (CONV, {"prompt": [U], "chosen": [A], "rejected": [B], "tools": "calc"}, "tools", "expected a list"),
        (CONV, {"prompt": [U], "chosen": [A], "rejected": [B], "chat_template_kwargs": [1]}, "chat_template_kwargs",
         "expected a dict"),
    ],
)
def test_row_errors_name_row_field_and_fix(fmt, row, field, problem):
    with pytest.raises(RowError) as err:
        validate_row(row, 41, fmt)
    assert err.value.row == 41 and err.value.field == field
    message = str(err.value)
    assert message.startswith(f"Row 41, field '{field}': ") and problem in message and "Fix: " in message
    assert isinstance(err.value, ValueError)


def test_valid_rows_pass_through():
    ex = validate_row({"chosen": [U, A], "rejected": [U, B], "chat_template_kwargs": {"x": 1}}, 0, CONV_IMPLICIT)
    assert (ex.prompt, ex.chosen, ex.rejected, ex.template_kwargs) == ([U], [A], [B], {"x": 1})
    ex = validate_row({"prompt": "", "chosen": "a", "rejected": "b"}, 0, STD)
    assert (ex.prompt, ex.chosen, ex.rejected) == ("", "a", "b")


@pytest.mark.parametrize("name", ["conversational_preference", "conversational_implicit_prompt_preference"])
def test_render_chat_equals_trl(name, qwen2_tokenizer):
    from trl.data_utils import maybe_apply_chat_template, maybe_extract_prompt

    fmt = FORMATS[name]
    for i, row in enumerate(zen(name)):
        expected = maybe_apply_chat_template(maybe_extract_prompt(row), qwen2_tokenizer)
        got = render_chat(validate_row(row, i, fmt), qwen2_tokenizer)
        assert got == (expected["prompt"], expected["chosen"], expected["rejected"])
        assert got[1].endswith("<|im_end|>\n")


def test_render_chat_passes_row_kwargs_and_tools(qwen2_tokenizer):
    import copy

    tok = copy.deepcopy(qwen2_tokenizer)
    tok.chat_template = (
        "{% if tools %}[tools:{{ tools | length }}]{% endif %}{% for m in messages %}<{{ m.role }}|{{ style }}>"
        "{{ m.content }}</s>{% endfor %}{% if add_generation_prompt %}<assistant|{{ style }}>{% endif %}"
    )
    row = {"prompt": [U], "chosen": [A], "rejected": [B], "chat_template_kwargs": {"style": "terse"},
           "tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}]}
    prompt, chosen, rejected = render_chat(validate_row(row, 0, CONV), tok)
    assert prompt == "[tools:1]<user|terse>Hi?</s><assistant|terse>"
    assert (chosen, rejected) == ("Hello.</s>", "Go away.</s>")

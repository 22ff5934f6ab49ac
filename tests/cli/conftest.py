"""Fixtures of the `cpo` command's tests: a tiny saved model and a small preference file."""

import json

import pytest
from helpers import preference_rows, save_tiny_model


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, gpt2_tokenizer):
    return save_tiny_model(tmp_path_factory.mktemp("tiny") / "model", gpt2_tokenizer)


@pytest.fixture
def pairs(tmp_path):
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in preference_rows(12)), encoding="utf-8")
    return path

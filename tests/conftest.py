"""Shared fixtures: real tokenizers from ../shared/data (see helpers.py for tiny models and data)."""

from __future__ import annotations

import copy
import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from helpers import shared  # noqa: E402

torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture(scope="session")
def gpt2_tokenizer():
    from transformers import GPT2TokenizerFast

    d = shared("tokenizers", "gpt2")
    return GPT2TokenizerFast(str(d / "vocab.json"), str(d / "merges.txt"))


@pytest.fixture(scope="session")
def qwen2_tokenizer(request):
    """The real Qwen2 tokenizer (TRL quick start's), read from its GGUF once and cached as a plain tokenizer."""
    from transformers import AutoTokenizer

    cache = Path(request.config.cache.mkdir("qwen2-tokenizer"))
    if not (cache / "tokenizer_config.json").exists():
        src = shared("tokenizers", "qwen2")
        AutoTokenizer.from_pretrained(str(src), gguf_file="ggml-vocab-qwen2.gguf").save_pretrained(cache)
    return AutoTokenizer.from_pretrained(cache)


@pytest.fixture
def tok(gpt2_tokenizer):
    return copy.deepcopy(gpt2_tokenizer)



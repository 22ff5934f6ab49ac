"""Test helpers: paths to ../shared/data, tiny models built from configs, short training runs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("CPO_SHARED_DATA", ROOT.parent / "shared" / "data"))


def shared(*parts: str) -> Path:
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared data not found: {path} (set CPO_SHARED_DATA)")
    return path


def zen(name: str, split: str = "train"):
    """A trl-zen table (19 rows) as a Dataset; ``split='train'``/``'test'`` as TRL's 17/2 split."""
    from datasets import load_dataset

    ds = load_dataset("json", data_files=str(shared("chat-preference", "trl-zen", f"{name}.jsonl")), split="train")
    parts = ds.train_test_split(test_size=0.1, shuffle=False)
    return parts[split]


TINY = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
            max_position_embeddings=1024)


def tiny_model(arch: str, vocab_size: int, seed: int = 0, **overrides):
    """A 2-layer, hidden-64 decoder of ``arch`` ("qwen2" or "llama") with seeded random weights."""
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    config_cls, model_cls = {"qwen2": (Qwen2Config, Qwen2ForCausalLM), "llama": (LlamaConfig, LlamaForCausalLM)}[arch]
    torch.manual_seed(seed)
    return model_cls(config_cls(**{**TINY, "vocab_size": vocab_size, **overrides}))


def tiny_qwen2(vocab_size: int, seed: int = 0, **overrides):
    return tiny_model("qwen2", vocab_size, seed, **overrides)


def tiny_llama(vocab_size: int, seed: int = 0, **overrides):
    return tiny_model("llama", vocab_size, seed, **overrides)


def train_args(tmp_path, **overrides):
    """Fast fp32 CPU settings for 3-step runs that log every step."""
    from cpo import CPOConfig

    kwargs = dict(
        output_dir=str(tmp_path), per_device_train_batch_size=4, max_steps=3, logging_steps=1,
        learning_rate=1e-3, report_to="none", save_strategy="no", seed=0, disable_tqdm=True,
    )
    kwargs.update(overrides)
    return CPOConfig(**kwargs)


def train_logs(trainer) -> list[dict]:
    trainer.train()
    return [h for h in trainer.state.log_history if "loss" in h]

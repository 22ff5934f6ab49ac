"""Shared benchmark pieces: the machine, a word-level tokenizer of any size, models from config, memory readings.

Every benchmark prints one JSON line per measurement and compares configurations side by side in one run.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
# Real data: the slices in tests/assets by default (a fresh clone has them); --data_dir ../shared/data for the full
# WMT'22 test set and HH-RLHF split the README's numbers were measured on.
ASSETS = ROOT / "tests" / "assets"


def machine() -> dict:
    """What the numbers were measured on."""
    import torch

    cpu = platform.processor() or "cpu"
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    info = {"cpu": cpu, "cores": os.cpu_count(), "torch": torch.__version__, "threads": torch.get_num_threads()}
    try:
        info["ram_gib"] = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError):
        pass
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    return info


def emit(record: dict) -> None:
    print(json.dumps(record), flush=True)


def word_tokenizer(vocab_size: int):
    """A word-level tokenizer with ``vocab_size`` ids: ``"w17 w3"`` -> ``[17, 3]``, so lengths are exact."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {f"w{i}": i for i in range(vocab_size)}
    vocab.update({"<s>": 0, "</s>": 1, "<pad>": 2})
    vocab = {k: v for k, v in vocab.items() if k not in ("w0", "w1", "w2")}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<pad>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>")


def words(gen, n: int, vocab_size: int) -> str:
    import torch

    return " ".join(f"w{i}" for i in torch.randint(3, vocab_size, (n,), generator=gen).tolist())


def qwen2_model(vocab_size: int, hidden: int = 512, layers: int = 4, seed: int = 0, **overrides):
    """A Qwen2 of the given size (8 heads, 2 KV heads, MLP 4x, tied embeddings as Qwen2-0.5B; ``overrides`` are
    other ``Qwen2Config`` fields)."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(seed)
    config = Qwen2Config(**{**dict(vocab_size=vocab_size, hidden_size=hidden, intermediate_size=4 * hidden,
                                   num_hidden_layers=layers, num_attention_heads=8, num_key_value_heads=2,
                                   max_position_embeddings=4096, tie_word_embeddings=True), **overrides})
    return Qwen2ForCausalLM(config)


# our defaults, and the defaults with each way of checkpointing (the memory and scaling benchmarks' path names)
DEFAULT_PATHS = {
    "ours-default": {},
    **{f"ours-default-{policy}-gc": {"gradient_checkpointing_policy": policy} for policy in ("selective", "mlp", "full")},
    "ours-default-no-gc": {"gradient_checkpointing": False},
}


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def reset_peak_rss() -> bool:
    """Reset the kernel's high-water mark of resident memory (Linux >= 4.0); False where not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def trim_heap() -> bool:
    """Collect garbage and hand the C heap's free memory back to the system (glibc's ``malloc_trim``), so that memory
    a loader freed but the heap kept is not counted in a later peak; False where there is no glibc."""
    import ctypes
    import gc

    gc.collect()
    try:
        return bool(ctypes.CDLL("libc.so.6").malloc_trim(0))
    except (OSError, AttributeError):
        return False


def peak_rss_bytes() -> int:
    try:
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def limit_memory(gib: float) -> None:
    """Cap this process's address space, so an out-of-memory configuration fails as an error instead of the whole machine."""
    limit = int(gib * 2**30)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


class Timer:
    def __enter__(self):
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.start


def step_clock(sync=None):
    """A ``TrainerCallback`` whose ``times`` are the seconds of each optimiser step (``sync``, e.g.
    ``torch.cuda.synchronize``, is called at both ends, so queued device work is counted in its step)."""
    from transformers import TrainerCallback

    sync = sync or (lambda: None)

    class StepClock(TrainerCallback):
        def __init__(self):
            self.times = []

        def on_step_begin(self, *args, **kwargs):
            sync()
            self.start = time.perf_counter()

        def on_step_end(self, *args, **kwargs):
            sync()
            self.times.append(time.perf_counter() - self.start)

    return StepClock()


def run_worker(args: list[str], timeout: float) -> dict:
    """Run ``python <this script> --worker ...`` in a fresh process; its last JSON line is the result."""
    import subprocess

    cmd = [sys.executable, sys.argv[0], "--worker", *args]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"status": f"timeout after {timeout:.0f} s"}
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    if out.returncode != 0 or not lines:
        tail = (out.stderr or out.stdout).strip().splitlines()[-3:]
        return {"status": f"failed (exit {out.returncode})", "error": " | ".join(tail)[-400:]}
    return json.loads(lines[-1])


def bpe_tokenizer(data_dir: Path, vocab_size: int = 32000):
    """A byte-level BPE tokenizer of at most ``vocab_size`` ids trained on the WMT'22 texts and HH-RLHF dialogues of
    ``data_dir`` (a model of V = 32000 needs ids below 32000, and no real 32k tokenizer ships with the data; a small
    corpus gives fewer ids). Cached in benchmarks/.cache per data folder."""
    import gzip
    import hashlib

    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    key = hashlib.sha256(str(Path(data_dir).resolve()).encode()).hexdigest()[:8]
    cache = ROOT / "benchmarks" / ".cache" / f"bpe{vocab_size}-{key}.json"
    if not cache.exists():
        def corpus():
            for path in sorted((Path(data_dir) / "wmt22").rglob("test.*")):
                yield from path.read_text(encoding="utf-8").splitlines()
            with gzip.open(hh_rlhf_file(data_dir), "rt") as f:
                for line in f:
                    row = json.loads(line)
                    yield row["chosen"]
                    yield row["rejected"]

        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<s>", "</s>", "<pad>"],
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
        tok.train_from_iterator(corpus(), trainer)
        cache.parent.mkdir(parents=True, exist_ok=True)
        tok.save(str(cache))
    return PreTrainedTokenizerFast(tokenizer_file=str(cache), bos_token="<s>", eos_token="</s>", pad_token="<pad>")


def hh_rlhf_file(data_dir: Path) -> Path:
    """The HH-RLHF harmless-base test rows of ``data_dir`` (the full split in ../shared/data, 64 rows in tests/assets)."""
    return Path(data_dir) / "chat-preference" / "hh-rlhf" / "harmless-base" / "test.jsonl.gz"

"""Training throughput, side by side in one run: TRL 1.16 vs ours with every speed-up off, each alone, all on.

Same model (Qwen2 from config: hidden 512, 8 layers, V 32000, tied embeddings), same pairs in the same order, same
pairs per optimiser step (8), default settings otherwise (gradient checkpointing on, fp32). Two data sets with real
lengths, from ``--data_dir`` (default: the slices in tests/assets, repeated as needed; the README's numbers were
measured with ``--data_dir ../shared/data``, the full sets):

- ``mt``: ALMA prompts built from WMT'22 de-en sources; chosen = the human reference, rejected = GPT-4's output;
- ``chat``: Anthropic HH-RLHF harmless-base test dialogues (implicit prompt), those that fit in max_length.

The tokenizer is a byte-level BPE of at most 32000 ids trained on the same folder's texts (``common.bpe_tokenizer``).

Tokens are counted as a user would: prompt, chosen and rejected tokens of each pair (the prompt once), not padded
positions. Each path runs in a fresh process: one warm-up step, then --steps timed steps.
"""

from __future__ import annotations

import argparse
import gzip
import json
from pathlib import Path

from common import ASSETS, bpe_tokenizer, emit, hh_rlhf_file, machine, qwen2_model, run_worker

PATHS = {
    "trl": None,
    "ours, all off": dict(chunked_logits=False, padding_free=False, prefix_sharing=False),
    "ours, chunked logits": dict(chunked_logits=True, padding_free=False, prefix_sharing=False),
    "ours, padding-free": dict(chunked_logits=False, padding_free=True, prefix_sharing=False),
    "ours, prefix sharing": dict(chunked_logits=False, padding_free=False, prefix_sharing=True),
    "ours, all on": dict(chunked_logits=True, padding_free=True, prefix_sharing=True),
}
MAX_LENGTH = 1024


def repeat(rows: list[dict], n: int) -> list[dict]:
    """The first ``n`` rows, the list repeated as often as needed (the in-repo slices are short)."""
    if not rows:
        raise ValueError("No usable rows in the data folder.")
    return (rows * (n // len(rows) + 1))[:n]


def mt_rows(data_dir: Path, n: int) -> list[dict]:
    base = data_dir / "wmt22"
    src = (base / "wmt-testset" / "deen" / "test.de-en.de").read_text(encoding="utf-8").splitlines()
    ref = (base / "wmt-testset" / "deen" / "test.de-en.en").read_text(encoding="utf-8").splitlines()
    gpt4 = (base / "GPT-4-1106-preview" / "deen" / "test.de-en.en").read_text(encoding="utf-8").splitlines()
    return repeat([{"prompt": f"Translate this from German to English:\nGerman: {s}\nEnglish:", "chosen": f" {r}",
                    "rejected": f" {g}"} for s, r, g in zip(src, ref, gpt4) if r.strip() and g.strip() and r != g], n)


def chat_rows(data_dir: Path, n: int, tokenizer) -> list[dict]:
    rows = []
    with gzip.open(hh_rlhf_file(data_dir), "rt", encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            longest = max(len(tokenizer(row[k])["input_ids"]) for k in ("chosen", "rejected"))
            if row["chosen"] != row["rejected"] and longest + 2 <= MAX_LENGTH:
                rows.append({"chosen": row["chosen"], "rejected": row["rejected"]})
            if len(rows) == n:
                break
    return repeat(rows, n)


def data_tokens(trainer_dataset) -> list[int]:
    """prompt + chosen + rejected tokens of each tokenized pair (our tokenization; special tokens included)."""
    return [len(p) + len(c) + len(r) for p, c, r in zip(trainer_dataset["prompt_input_ids"],
                                                        trainer_dataset["chosen_input_ids"],
                                                        trainer_dataset["rejected_input_ids"])]


def worker(args) -> None:
    import time

    import torch
    from datasets import Dataset
    from transformers import TrainerCallback

    torch.manual_seed(0)
    data_dir, n = Path(args.data_dir), args.pairs * (args.steps + 1)
    tok = bpe_tokenizer(data_dir, 32000)
    rows = mt_rows(data_dir, n) if args.data == "mt" else chat_rows(data_dir, n, tok)
    common = dict(output_dir=f"/tmp/cpo-throughput-{args.data}", per_device_train_batch_size=args.pairs,
                  max_steps=args.steps + 1, logging_steps=1, learning_rate=1e-6, report_to="none", save_strategy="no",
                  disable_tqdm=True, bf16=False, max_length=MAX_LENGTH, seed=0)
    flags = PATHS[args.path]
    if flags is None:
        from trl.experimental.cpo import CPOConfig, CPOTrainer
        config = CPOConfig(**common)
    else:
        from cpo import CPOConfig, CPOTrainer
        config = CPOConfig(**common, **flags)

    class Steps(TrainerCallback):
        def __init__(self):
            self.times, self.rows = [], []

        def on_step_begin(self, *a, **k):
            self.start = time.perf_counter()

        def on_step_end(self, *a, **k):
            self.times.append(time.perf_counter() - self.start)

    steps = Steps()
    trainer = CPOTrainer(model=qwen2_model(32000, layers=8), args=config, processing_class=tok,
                         train_dataset=Dataset.from_list(rows), callbacks=[steps])
    trainer.train()
    timed = steps.times[1:]  # the first step warms up allocators and caches
    # the same pairs reach every path: count their tokens with our tokenization of the same rows
    from cpo.tokenization import TokenizeSpec, prepare_dataset

    tokens = sum(data_tokens(prepare_dataset(Dataset.from_list(rows), tok, TokenizeSpec(max_length=MAX_LENGTH))))
    tokens_per_pair = tokens / len(rows)
    seconds = sum(timed) / len(timed)
    emit({"status": "ok", "seconds_per_step": round(seconds, 3), "pairs_per_s": round(args.pairs / seconds, 3),
          "tokens_per_s": round(args.pairs * tokens_per_pair / seconds, 1), "tokens_per_pair": round(tokens_per_pair, 1),
          "first_loss": round(next(h["loss"] for h in trainer.state.log_history if "loss" in h), 4)})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--path", default="ours, all on", choices=list(PATHS))
    parser.add_argument("--data", default="mt", choices=["mt", "chat"])
    parser.add_argument("--datasets", nargs="+", default=["mt", "chat"], choices=["mt", "chat"])
    parser.add_argument("--paths", nargs="+", default=list(PATHS), choices=list(PATHS))
    parser.add_argument("--pairs", type=int, default=8, help="pairs per optimiser step")
    parser.add_argument("--steps", type=int, default=5, help="timed steps after one warm-up step")
    parser.add_argument("--timeout", type=float, default=3600.0)
    parser.add_argument("--data_dir", default=str(ASSETS),
                        help="folder with wmt22/ and chat-preference/hh-rlhf/ (default: tests/assets; the README's "
                        "numbers: ../shared/data)")
    args = parser.parse_args()
    if args.worker:
        return worker(args)
    emit({"benchmark": "throughput", "machine": machine(), "pairs_per_step": args.pairs, "timed_steps": args.steps,
          "model": "Qwen2 hidden 512, 8 layers, V 32000", "data_dir": args.data_dir})
    for data in args.datasets:
        base = None
        for path in args.paths:
            result = run_worker(["--path", path, "--data", data, "--pairs", str(args.pairs), "--steps",
                                 str(args.steps), "--data_dir", args.data_dir], args.timeout)
            if path == "trl" and result.get("status") == "ok":
                base = result["pairs_per_s"]
            if base and result.get("status") == "ok":
                result["speedup_vs_trl"] = round(result["pairs_per_s"] / base, 2)
            emit({"data": data, "path": path, **result})


if __name__ == "__main__":
    main()

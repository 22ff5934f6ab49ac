"""Training throughput, side by side in one run: TRL 1.16 vs ours with every speed-up off, each alone, all on.

Same model (Qwen2 from config: hidden 512, 8 layers, V 32000, tied embeddings), same pairs in the same order, same
pairs per optimiser step (8), default settings otherwise (gradient checkpointing on, fp32). Our rows: every
speed-up off (full checkpointing, transformers' own), each speed-up alone, the defaults, and the defaults with each
other way of checkpointing (``gradient_checkpointing_policy``, transformers' ``every_n_layers``, none). Two data
sets with real lengths, from ``--data_dir`` (default: the slices in tests/assets, repeated as needed; the README's numbers were
measured with ``--data_dir ../shared/data``, the full sets):

- ``mt``: ALMA prompts built from WMT'22 de-en sources; chosen = the human reference, rejected = GPT-4's output;
- ``chat``: Anthropic HH-RLHF harmless-base test dialogues (implicit prompt), those that fit in max_length.

The tokenizer is a byte-level BPE of at most 32000 ids trained on the same folder's texts (``common.bpe_tokenizer``).

Tokens are counted as a user would: prompt, chosen and rejected tokens of each pair (the prompt once), not padded
positions. Each path runs in a fresh process: one warm-up step, then --steps timed steps.

Distance to the machine's limit (``flops.py``): the run first measures the fp32 GEMM peak (a 4096^3 ``torch.mm``,
same threads); each path then reports the FLOP/s it *executes* (FlopCounterMode over the timed steps' batches:
recompute, padding and full logits included) and the *useful* FLOP/s, ``6 N U + 6 H V C`` (``N`` non-embedding
parameters, ``U`` unique tokens with the prompt once, ``H x V`` the LM head, ``C`` completion tokens), each also as a
fraction of the peak. ``--profile`` prints the top operators of one profiled forward + backward (``torch.profiler``)
and the seconds of its phases (forward + backward; clipping and the optimiser) beside the trainer's measured step
for the same batch (``step_s``), the rest of which is the trainer's own work.
"""

from __future__ import annotations

import argparse
import gzip
import json
from pathlib import Path

from common import ASSETS, bpe_tokenizer, emit, hh_rlhf_file, machine, qwen2_model, run_worker, step_clock
from flops import executed_flops, gemm_peak_flops, useful_flops, watched_step

OFF = dict(chunked_logits=False, padding_free=False, prefix_sharing=False, gradient_checkpointing_policy="full")
PATHS = {
    "trl": None,
    "ours, all off": OFF,
    "ours, chunked logits": {**OFF, "chunked_logits": True},
    "ours, padding-free": {**OFF, "padding_free": True},
    "ours, prefix sharing": {**OFF, "prefix_sharing": True},
    "ours, selective checkpointing": {**OFF, "gradient_checkpointing_policy": "selective"},
    "ours, defaults": {},  # all of the above on; what a user who changes nothing gets
    **{f"ours, defaults, {policy} checkpointing": dict(gradient_checkpointing_policy=policy)
       for policy in ("selective", "mlp", "full")},
    "ours, defaults, full checkpointing of every 2nd layer": dict(gradient_checkpointing_policy="full",
                                                                   gradient_checkpointing_kwargs={"every_n_layers": 2}),
    "ours, defaults, no checkpointing": dict(gradient_checkpointing=False),
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


class Recorder:
    """Wraps a data collator: keeps each batch it builds, with the unique and completion tokens of its pairs."""

    def __init__(self, collate):
        self.collate, self.batches = collate, []

    def __getattr__(self, name):  # the trainer reads the layout's flags off its collator
        return getattr(self.__dict__["collate"], name)

    def __call__(self, features):
        batch = self.collate(features)
        unique = completion = 0
        for f in features:
            if "chosen_labels" in f:  # TRL: prompt + answer ids, the prompt's labels at -100
                answers = sum(t != -100 for t in f["chosen_labels"]) + sum(t != -100 for t in f["rejected_labels"])
                unique += len(f["prompt_input_ids"]) + answers
            else:
                answers = len(f["chosen_input_ids"]) + len(f["rejected_input_ids"])
                unique += len(f["prompt_input_ids"]) + answers
            completion += answers
        self.batches.append((dict(batch), unique, completion))
        return batch


def profile_step(trainer, batch) -> list[dict]:
    """The operators of one forward + backward that take the most time (self CPU time)."""
    from torch.profiler import ProfilerActivity, profile

    prof = watched_step(trainer, batch, profile(activities=[ProfilerActivity.CPU]))
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events)
    return [{"op": e.key, "self_s": round(e.self_cpu_time_total / 1e6, 3), "share": round(e.self_cpu_time_total / total, 3),
             "calls": e.count} for e in events[:12]]


def phase_seconds(trainer, batch, repeats: int = 3) -> dict:
    """Where a step's time goes, after training: one forward + backward of ``batch``, then gradient clipping, the
    optimiser step and zeroing the gradients, as the trainer runs them (each the fastest of ``repeats``)."""
    import time

    import torch

    model, inputs = trainer.model, trainer._prepare_inputs(batch)
    model.train()
    passes, updates = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        trainer.compute_loss(model, inputs).backward()
        middle = time.perf_counter()
        torch.nn.utils.clip_grad_norm_(model.parameters(), trainer.args.max_grad_norm)
        trainer.optimizer.step()
        model.zero_grad(set_to_none=True)
        passes.append(middle - start)
        updates.append(time.perf_counter() - middle)
    return {"forward_backward_s": round(min(passes), 3), "clip_and_optimizer_s": round(min(updates), 3)}


def worker(args) -> None:
    import torch
    from datasets import Dataset

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
    steps = step_clock()
    trainer = CPOTrainer(model=qwen2_model(32000, layers=8), args=config, processing_class=tok,
                         train_dataset=Dataset.from_list(rows), callbacks=[steps])
    recorder = trainer.data_collator = Recorder(trainer.data_collator)
    trainer.train()
    timed = steps.times[1:]  # the first step warms up allocators and caches
    batches = recorder.batches[1 : len(steps.times)]  # one batch per step (no gradient accumulation)
    executed = sum(executed_flops(trainer, batch) for batch, _, _ in batches) / len(batches)
    useful = sum(useful_flops(trainer.model, u, c) for _, u, c in batches) / len(batches)
    # the same pairs reach every path: count their tokens with our tokenization of the same rows
    from cpo.tokenization import TokenizeSpec, prepare_dataset

    tokens = sum(data_tokens(prepare_dataset(Dataset.from_list(rows), tok, TokenizeSpec(max_length=MAX_LENGTH))))
    tokens_per_pair = tokens / len(rows)
    seconds = sum(timed) / len(timed)
    emit({"status": "ok", "seconds_per_step": round(seconds, 3), "pairs_per_s": round(args.pairs / seconds, 3),
          "tokens_per_s": round(args.pairs * tokens_per_pair / seconds, 1), "tokens_per_pair": round(tokens_per_pair, 1),
          "first_loss": round(next(h["loss"] for h in trainer.state.log_history if "loss" in h), 4),
          "executed_gflop_per_s": round(executed / seconds / 1e9, 2), "useful_gflop_per_s": round(useful / seconds / 1e9, 2),
          "executed_over_useful": round(executed / useful, 3),
          **({"profile": profile_step(trainer, batches[0][0]),
              "phases": {"step_s": round(timed[0], 3), **phase_seconds(trainer, batches[0][0])}}
             if args.profile else {})})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--path", default="ours, defaults", choices=list(PATHS))
    parser.add_argument("--data", default="mt", choices=["mt", "chat"])
    parser.add_argument("--datasets", nargs="+", default=["mt", "chat"], choices=["mt", "chat"])
    parser.add_argument("--paths", nargs="+", default=list(PATHS), choices=list(PATHS))
    parser.add_argument("--pairs", type=int, default=8, help="pairs per optimiser step")
    parser.add_argument("--steps", type=int, default=5, help="timed steps after one warm-up step")
    parser.add_argument("--timeout", type=float, default=3600.0)
    parser.add_argument("--profile", action="store_true", help="profile one step of each path (torch.profiler) and time its phases")
    parser.add_argument("--data_dir", default=str(ASSETS),
                        help="folder with wmt22/ and chat-preference/hh-rlhf/ (default: tests/assets; the README's "
                        "numbers: ../shared/data)")
    args = parser.parse_args()
    if args.worker:
        return worker(args)
    peak = gemm_peak_flops()
    emit({"benchmark": "throughput", "machine": machine(), "pairs_per_step": args.pairs, "timed_steps": args.steps,
          "model": "Qwen2 hidden 512, 8 layers, V 32000", "data_dir": args.data_dir,
          "fp32_gemm_peak_gflop_per_s": round(peak / 1e9, 1)})
    for data in args.datasets:
        base = None
        for path in args.paths:
            result = run_worker(["--path", path, "--data", data, "--pairs", str(args.pairs), "--steps",
                                 str(args.steps), "--data_dir", args.data_dir, *(["--profile"] if args.profile else [])],
                                args.timeout)
            for kind in ("executed", "useful"):
                if f"{kind}_gflop_per_s" in result:
                    result[f"{kind}_fraction_of_peak"] = round(result[f"{kind}_gflop_per_s"] * 1e9 / peak, 3)
            if path == "trl" and result.get("status") == "ok":
                base = result["pairs_per_s"]
            if base and result.get("status") == "ok":
                result["speedup_vs_trl"] = round(result["pairs_per_s"] / base, 2)
            emit({"data": data, "path": path, **result})


if __name__ == "__main__":
    main()

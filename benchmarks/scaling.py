"""How cost grows with sequence length and vocabulary: peak memory and seconds per optimiser step against T, for
TRL 1.16, ours naive and ours default, side by side in one run, one fresh process per point, 20 GiB cap each.

Setup: Qwen2 from config (hidden 512, 4 layers, 8 heads, 2 KV heads, tied embeddings), 2 pairs per step, AdamW,
fp32, each path's default gradient checkpointing (on). Every sequence is T tokens as TRL lays it out: a prompt of
T/2 and answers of T/2 each (word-level tokenizer, so lengths are exact). Paths:

- ``trl``: ``trl.experimental.cpo.CPOTrainer``;
- ``ours-naive``: ``cpo.CPOTrainer`` with every speed-up off (padded layout, full logits, full checkpointing);
- ``ours-default``: ``cpo.CPOTrainer`` with its defaults (chunked log-probs, packing, prefix sharing, path
  attention, selective checkpointing);
- ``ours-default-<policy>-gc``: the same with ``gradient_checkpointing_policy=<policy>`` (``selective``, ``mlp``,
  ``full``: whole layers recomputed);
- ``ours-default-no-gc``: the same with ``gradient_checkpointing=False``.

Each point: peak RSS of the process (``VmHWM``), the seconds of the second of two steps, or "OOM" at the cap. Once a
path runs out of memory at some T, its longer T are not run (recorded as such). ``--plot FILE`` draws peak memory
and step time against T on log-log axes, one line per path and vocabulary, from the run's JSON lines, and prints
each path's longest T within the cap and the fitted slope of log(memory) against log(T) from 2k to 16k.
Usage: ``python benchmarks/scaling.py [--T 512 1024 ...] [--vocab 32000 151936] > out.jsonl``;
``python benchmarks/scaling.py --plot docs/scaling.png < out.jsonl``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys

from common import DEFAULT_PATHS, emit, limit_memory, machine, peak_rss_bytes, qwen2_model, run_worker, word_tokenizer

PATHS = ["trl", "ours-naive", *DEFAULT_PATHS]
T_VALUES = [512, 1024, 2048, 4096, 8192, 16384]
GIB = 2**30


def rows(vocab: int, pairs: int, seq: int, seed: int = 0) -> list[dict]:
    import torch
    from common import words

    gen = torch.Generator().manual_seed(seed)
    half = seq // 2 - 1  # plus BOS on the prompt and EOS on each answer: every sequence is exactly `seq` tokens
    return [{"prompt": words(gen, half, vocab), "chosen": " " + words(gen, half, vocab),
             "rejected": " " + words(gen, half, vocab)} for _ in range(pairs)]


def worker(args) -> None:
    import time

    from datasets import Dataset
    from transformers import TrainerCallback

    limit_memory(args.limit_gib)
    tok = word_tokenizer(args.vocab)
    common = dict(output_dir=f"/tmp/cpo-scaling-{args.path}", per_device_train_batch_size=args.pairs, max_steps=2,
                  logging_steps=1, learning_rate=1e-5, report_to="none", save_strategy="no", disable_tqdm=True,
                  bf16=False, max_length=args.T, seed=0)
    if args.path == "trl":
        from trl.experimental.cpo import CPOConfig, CPOTrainer

        config = CPOConfig(**common)
    else:
        from cpo import CPOConfig, CPOTrainer

        flags = {"ours-naive": dict(chunked_logits=False, padding_free=False, prefix_sharing=False,
                                    gradient_checkpointing_policy="full"), **DEFAULT_PATHS}[args.path]
        config = CPOConfig(**common, **flags)

    class StepTimes(TrainerCallback):
        def __init__(self):
            self.times = []

        def on_step_begin(self, *a, **k):
            self.start = time.perf_counter()

        def on_step_end(self, *a, **k):
            self.times.append(time.perf_counter() - self.start)

    timer = StepTimes()
    model = qwen2_model(args.vocab)
    model.config.max_position_embeddings = max(args.T * 2, 4096)
    try:
        trainer = CPOTrainer(model=model, args=config, processing_class=tok,
                             train_dataset=Dataset.from_list(rows(args.vocab, args.pairs, args.T)), callbacks=[timer])
        trainer.train()
    except (MemoryError, RuntimeError) as err:
        if not isinstance(err, MemoryError) and "memory" not in str(err).lower():
            raise
        emit({"status": "OOM", "peak_gib": round(peak_rss_bytes() / GIB, 2)})
        return
    emit({"status": "ok", "peak_gib": round(peak_rss_bytes() / GIB, 3), "seconds_per_step": round(timer.times[-1], 2),
          "tokens_per_step": args.pairs * 3 * args.T // 2,
          "first_loss": round(next(h["loss"] for h in trainer.state.log_history if "loss" in h), 4)})


def summarise(records: list[dict], limit_gib: float) -> list[dict]:
    """Longest T within the cap per (path, vocab), and the slope of log(peak memory) against log(T) over 2k-16k."""
    out = []
    for vocab in sorted({r["vocab"] for r in records}):
        for path in PATHS:
            points = sorted((r["T"], r) for r in records if r["vocab"] == vocab and r["path"] == path)
            if not points:
                continue
            ok = [(t, r) for t, r in points if r.get("status") == "ok"]
            row = {"summary": "scaling", "vocab": vocab, "path": path, "limit_gib": limit_gib,
                   "longest_T": max((t for t, _ in ok), default=None),
                   "first_OOM_T": min((t for t, r in points if r.get("status") == "OOM"), default=None)}
            fit = [(math.log(t), math.log(r["peak_gib"])) for t, r in ok if 2048 <= t <= 16384]
            if len(fit) >= 2:
                mx, my = sum(x for x, _ in fit) / len(fit), sum(y for _, y in fit) / len(fit)
                row["memory_slope_2k_16k"] = round(sum((x - mx) * (y - my) for x, y in fit)
                                                   / sum((x - mx) ** 2 for x, _ in fit), 3)
                row["slope_points"] = [t for t, r in ok if 2048 <= t <= 16384]
            times = [(t, r["seconds_per_step"] / r["tokens_per_step"] * 1000) for t, r in ok]
            row["ms_per_token"] = {str(t): round(ms, 3) for t, ms in times}
            out.append(row)
    return out


def plot(records: list[dict], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    styles = {"trl": "o-", "ours-naive": "s--", "ours-default": "^-", "ours-default-selective-gc": ">-.",
              "ours-default-mlp-gc": "d-.", "ours-default-full-gc": "<-.", "ours-default-no-gc": "v:"}
    for vocab, colour in zip(sorted({r["vocab"] for r in records}), ("tab:blue", "tab:orange")):
        for name in PATHS:
            ok = sorted((r["T"], r) for r in records if r["vocab"] == vocab and r["path"] == name
                        and r.get("status") == "ok")
            if not ok:
                continue
            label = f"{name}, V={vocab}"
            axes[0].plot([t for t, _ in ok], [r["peak_gib"] for _, r in ok], styles[name], color=colour, label=label)
            axes[1].plot([t for t, _ in ok], [r["seconds_per_step"] for _, r in ok], styles[name], color=colour,
                         label=label)
    for ax, ylabel in zip(axes, ("peak RSS (GiB)", "seconds per optimiser step")):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("T (tokens per sequence; prompt T/2, answers T/2; 2 pairs)")
        ax.set_ylabel(ylabel)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].axhline(20, color="grey", lw=0.8)
    axes[0].legend(fontsize=7)
    fig.suptitle("Qwen2 hidden 512, 4 layers, fp32, 2 CPU threads; 20 GiB cap per process")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--path", choices=PATHS)
    parser.add_argument("--paths", nargs="+", default=PATHS, choices=PATHS)
    parser.add_argument("--T", type=int, nargs="+", default=T_VALUES)
    parser.add_argument("--vocab", type=int, nargs="+", default=[32000, 151936])
    parser.add_argument("--pairs", type=int, default=2)
    parser.add_argument("--limit_gib", type=float, default=20.0)
    parser.add_argument("--timeout", type=float, default=3600.0)
    parser.add_argument("--plot", metavar="FILE", help="read the JSON lines of a run from stdin and draw them")
    args = parser.parse_args()
    if args.worker:
        args.T, args.vocab = args.T[0], args.vocab[0]
        return worker(args)
    if args.plot:
        records = [json.loads(line) for line in sys.stdin if line.startswith("{")]
        points = [r for r in records if "path" in r and "T" in r]
        plot(points, args.plot)
        for row in summarise(points, args.limit_gib):
            emit(row)
        return
    emit({"benchmark": "scaling", "machine": machine(), "pairs": args.pairs, "hidden": 512, "layers": 4,
          "limit_gib": args.limit_gib})
    for vocab in args.vocab:
        for path in args.paths:
            out_of_memory_at = None
            for t in args.T:
                if out_of_memory_at:
                    result = {"status": "OOM", "note": f"not run: out of memory at T={out_of_memory_at}"}
                else:
                    result = run_worker(["--path", path, "--T", str(t), "--vocab", str(vocab), "--pairs",
                                         str(args.pairs), "--limit_gib", str(args.limit_gib)], args.timeout)
                    if result.get("status") == "OOM":
                        out_of_memory_at = t
                emit({"vocab": vocab, "path": path, "T": t, **result})


if __name__ == "__main__":
    main()

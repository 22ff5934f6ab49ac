"""One command for a GPU: ``python benchmarks/gpu.py``. TRL 1.16 beside cpo and Liger, one training step each.

On a CUDA device, with a Qwen2-0.5B-sized model built from its config (hidden 896, 24 layers, 14 heads on 2 KV
heads, MLP 4864, V = 151936, tied embeddings; random weights, nothing downloaded), bf16 mixed precision (fp32
weights), gradient checkpointing on (the default of both trainers), 4 pairs a step, T in {1024, 4096}:

- a whole training step (forward, backward, AdamW): seconds, tokens/s and pairs/s over --steps steps after --warmup,
  and the peak CUDA memory of the run (``torch.cuda.max_memory_allocated`` after a reset: weights, gradients and
  optimiser states included) for TRL's CPOTrainer, cpo with its defaults, cpo with each speed-up off in turn
  (selective checkpointing off: ``gradient_checkpointing_policy="full"``) and all off, and Liger's ``LigerFusedLinearCPOLoss`` on the model's last hidden states (padded layout, as TRL's; the
  row says "not installed" where ``liger_kernel`` does not import);
- for each trainer, one more forward + backward watched operator by operator (``tests/helpers.OpRecorder``): which
  sdpa kernels ran (FlashAttention, memory-efficient, cuDNN; none listed: the math path) and how many tensors of
  shape ``(..., L, L)`` existed, ``L`` the length of the batch's rows;
- first, the tests marked ``cuda`` (``pytest -m cuda``).

Data: synthetic, word ids of a word-level tokenizer (one word, one token) shaped like translation pairs
(:func:`mt_like_rows`); every step sees the same pairs. Tokens are counted as a user would: prompt, chosen and
rejected tokens of each pair, the prompt once. "path attention off" is no config switch (path attention comes with
packing or prefix sharing on an sdpa model): that row makes the trainer's switch a no-op, so packed and shared rows
take sdpa with the dense ``(R, 1, L, L)`` mask, the fallback the trainer takes for a model that fails path attention.

Prints one Markdown table and writes one JSON line per measurement to benchmarks/results/gpu-<device>.jsonl,
rewritten atomically after each. Without CUDA it says so in one line and exits 0. ``--device cpu --tiny`` runs the
same code on the CPU with a tiny model (what tests/test_gpu_benchmark.py checks).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import gc
import re
import subprocess
import sys
import time
import traceback

from common import (
    ROOT,
    machine,
    peak_rss_bytes,
    qwen2_model,
    reset_peak_rss,
    rss_bytes,
    step_clock,
    word_tokenizer,
    words,
)
from flops import watched_step
from throughput import Recorder, data_tokens

sys.path.insert(0, str(ROOT / "tests"))
from helpers import OpRecorder  # noqa: E402

SETTINGS = {  # Qwen2Config fields beyond qwen2_model's; T: the sequence lengths measured
    "qwen2-0.5b": dict(vocab=151936, hidden=896, layers=24, T=[1024, 4096], config=dict(
        num_attention_heads=14, num_key_value_heads=2, intermediate_size=4864, max_position_embeddings=32768)),
    "tiny": dict(vocab=512, hidden=64, layers=2, T=[160], config=dict(
        num_attention_heads=4, num_key_value_heads=2, intermediate_size=128, max_position_embeddings=1024)),
}
TRL, LIGER = "TRL 1.16", "Liger fused CPO loss"
CPO_PATHS = {  # cpo's CPOConfig flags, and whether path attention may run
    "cpo, defaults": ({}, True),
    "cpo, chunked head off": (dict(chunked_logits=False), True),
    "cpo, packing off": (dict(padding_free=False), True),
    "cpo, prefix sharing off": (dict(prefix_sharing=False), True),
    "cpo, path attention off": ({}, False),
    "cpo, full checkpointing": (dict(gradient_checkpointing_policy="full"), True),
    "cpo, all off": (dict(chunked_logits=False, padding_free=False, prefix_sharing=False,
                          gradient_checkpointing_policy="full"), False),
}
PATHS = [TRL, *CPO_PATHS, LIGER]
GIB = 2**30


def mt_like_rows(vocab: int, pairs: int, seq: int, seed: int = 0) -> list[dict]:
    """Synthetic pairs shaped like translation rows: the chosen answer 40-48% of ``seq`` tokens, the rejected one
    within 15% of its length, the prompt (a source sentence in the ALMA template: about as long as its translation,
    plus the template) the rest, so the longer sequence of each pair is ``seq`` tokens with BOS and EOS."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    rows = []
    for _ in range(pairs):
        u, v = torch.rand(2, generator=gen).tolist()
        chosen = int(seq * (0.40 + 0.08 * u))
        rejected = int(chosen * (0.85 + 0.30 * v))
        prompt = seq - max(chosen, rejected)
        rows.append({"prompt": words(gen, prompt - 1, vocab), "chosen": " " + words(gen, chosen - 1, vocab),
                     "rejected": " " + words(gen, rejected - 1, vocab)})
    return rows


class Device:
    """Where the measurements run: synchronisation and peak memory of CUDA (allocated tensors) or the CPU (the
    process's resident memory)."""

    def __init__(self, kind: str):
        import torch

        self.kind, self.torch = kind, torch
        self.name = torch.cuda.get_device_name() if kind == "cuda" else "cpu"
        self.memory = "torch.cuda.max_memory_allocated" if kind == "cuda" else "peak RSS of the process"

    def sync(self) -> None:
        if self.kind == "cuda":
            self.torch.cuda.synchronize()

    def reset(self) -> None:
        gc.collect()
        if self.kind == "cuda":
            self.torch.cuda.empty_cache()
            self.torch.cuda.reset_peak_memory_stats()
        else:
            reset_peak_rss()

    def allocated_gib(self) -> float:
        """What is held now (CUDA tensors, or the process's resident memory): left over from earlier rows if not ~0."""
        now = self.torch.cuda.memory_allocated() if self.kind == "cuda" else rss_bytes()
        return round(now / GIB, 3)

    def peak_gib(self) -> float:
        peak = self.torch.cuda.max_memory_allocated() if self.kind == "cuda" else peak_rss_bytes()
        return round(peak / GIB, 3)


@contextlib.contextmanager
def path_attention_off():
    """Within the block, the trainer's switch to path attention does nothing: the model keeps sdpa."""
    import cpo.routes
    from cpo.loading import attention_implementation

    switch = cpo.routes.use_path_attention
    cpo.routes.use_path_attention = attention_implementation
    try:
        yield
    finally:
        cpo.routes.use_path_attention = switch


def inspect_step(trainer, batch) -> dict:
    """The sdpa kernels and ``(..., L, L)`` tensors of one more forward + backward of ``batch``."""
    if "input_ids" in batch:  # cpo: (R, L) rows of any layout
        rows, length = batch["input_ids"].shape
    else:  # TRL: chosen and rejected rows, padded to the longer of the two when concatenated
        rows = 2 * batch["chosen_input_ids"].shape[0]
        length = max(batch["chosen_input_ids"].shape[1], batch["rejected_input_ids"].shape[1])
    rec = watched_step(trainer, batch, OpRecorder(length))
    return {"rows": rows, "row_length": length, "sdpa_kernels": dict(rec.kernels), "square_tensors": rec.squares,
            "largest_tensor_elements": rec.numel}


def measure_trainer(path: str, base, rows: list[dict], tok, args, seq: int, dev: Device) -> dict:
    from datasets import Dataset

    if path == TRL:
        from trl.experimental.cpo import CPOConfig, CPOTrainer
        flags, paths_on = {}, True
    else:
        from cpo import CPOConfig, CPOTrainer
        flags, paths_on = CPO_PATHS[path]
    config = CPOConfig(output_dir="/tmp/cpo-gpu-benchmark", per_device_train_batch_size=args.pairs,
                       max_steps=args.warmup + args.steps, logging_steps=1, learning_rate=1e-6, report_to="none",
                       save_strategy="no", disable_tqdm=True, bf16=args.dtype == "bf16", max_length=seq, seed=0,
                       use_cpu=dev.kind == "cpu", **flags)
    clock = step_clock(dev.sync)
    with contextlib.nullcontext() if paths_on else path_attention_off():
        trainer = CPOTrainer(model=copy.deepcopy(base), args=config, processing_class=copy.deepcopy(tok),
                             train_dataset=Dataset.from_list(rows), callbacks=[clock])
    recorder = trainer.data_collator = Recorder(trainer.data_collator)
    dev.reset()
    trainer.train()
    first = next(h for h in trainer.state.log_history if "loss" in h)
    result = {"peak_gib": dev.peak_gib(), "step_seconds": clock.times[args.warmup:], "first_loss": first["loss"],
              "first_chosen_logps": first["logps/chosen"]}
    return {**result, **inspect_step(trainer, recorder.batches[-1][0])}


def measure_liger(base, feats: list[dict], tok, args, dev: Device) -> dict:
    """Liger's fused linear CPO loss on the last hidden states of cpo's padded layout (chosen rows, then rejected,
    as Liger takes them), in a plain loop: forward, backward, AdamW."""
    try:
        from liger_kernel.chunked_loss import LigerFusedLinearCPOLoss
    except ModuleNotFoundError as err:
        return {"status": "not installed" if (err.name or "").startswith("liger_kernel") else f"import failed: {err}"}
    except ImportError as err:
        return {"status": f"import failed: {err}"}
    import torch

    from cpo.layouts import PreferenceCollator

    batch = {k: v.to(dev.kind) for k, v in PreferenceCollator(tok.pad_token_id)(feats).items()}
    labels = torch.full_like(batch["input_ids"], -100)
    labels.view(-1)[batch["target_positions"]] = batch["target_ids"]  # position p's label: the token p predicts
    model = copy.deepcopy(base).to(dev.kind)
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-6)
    loss_fn = LigerFusedLinearCPOLoss(beta=0.1, alpha=1.0)
    dev.reset()
    times, losses = [], []
    for _ in range(args.warmup + args.steps):
        dev.sync()
        start = time.perf_counter()
        with torch.autocast(dev.kind, torch.bfloat16, enabled=args.dtype == "bf16"):
            hidden = model.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                                 use_cache=False).last_hidden_state
            out = loss_fn(model.lm_head.weight, hidden, labels)
        loss = out[0] if isinstance(out, tuple) else out
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
        dev.sync()
        times.append(time.perf_counter() - start)
    return {"peak_gib": dev.peak_gib(), "step_seconds": times[args.warmup:], "first_loss": losses[0]}


def measure(path: str, base, rows, feats, tokens: int, tok, args, seq: int, dev: Device) -> dict:
    """One row of the table; a failure (out of memory included) is the row's status, and the run goes on."""
    import torch

    start, held = time.perf_counter(), dev.allocated_gib()
    try:
        result = (measure_liger(base, feats, tok, args, dev) if path == LIGER
                  else measure_trainer(path, base, rows, tok, args, seq, dev))
    except (torch.cuda.OutOfMemoryError, MemoryError):
        result = {"status": "out of memory"}
    except Exception as err:  # one path's failure is its row, not the end of the run
        result = {"status": f"failed: {type(err).__name__}: {err}"[:300], "error": traceback.format_exc()[-2000:]}
    dev.reset()
    if "step_seconds" in result:
        seconds = sum(result["step_seconds"]) / len(result["step_seconds"])
        result = {"status": "ok", **result, "seconds_per_step": round(seconds, 4), "tokens_per_step": tokens,
                  "tokens_per_s": round(tokens / seconds, 1), "pairs_per_s": round(args.pairs / seconds, 3)}
    return {"T": seq, "path": path, **result, "held_before_gib": held, "wall_s": round(time.perf_counter() - start, 1)}


def run_cuda_tests(timeout: float) -> dict:
    """``pytest -m cuda`` over tests/: its closing line, and the failures' output when it fails."""
    cmd = [sys.executable, "-m", "pytest", "-q", "-m", "cuda", "-p", "no:cacheprovider", "tests"]
    try:
        out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"tests": "pytest -m cuda", "status": f"timeout after {timeout:.0f} s"}
    lines = [line for line in out.stdout.splitlines() if line.strip()]
    result = {"tests": "pytest -m cuda", "exit": out.returncode, "summary": lines[-1].strip("= ") if lines else ""}
    if out.returncode != 0:
        result["output_tail"] = (out.stdout + out.stderr)[-4000:]
    return result


def cell(value, unit: str = "") -> str:
    return "-" if value is None else f"{value}{unit}"


def table(records: list[dict], dev: Device) -> str:
    """The measurements as one Markdown table."""
    lines = [f"| T | path | peak memory ({dev.memory}) | tokens/s | pairs/s | s/step | loss, step 1 | sdpa kernels "
             "(forward calls) | (L, L) tensors |", "|---:|---|---:|---:|---:|---:|---:|---|---|"]
    for r in records:
        if "path" not in r:
            continue
        if r["status"] != "ok":
            lines.append(f"| {r['T']} | {r['path']} | {r['status']} | - | - | - | - | - | - |")
            continue
        kernels = r.get("sdpa_kernels")
        kernels = "-" if kernels is None else ", ".join(f"{k} x{n}" for k, n in kernels.items()) or "none (math)"
        squares = r.get("square_tensors")
        length = r.get("row_length")
        squares = "-" if squares is None else f"yes: {squares} of (..., {length}, {length})" if squares else "no"
        lines.append(f"| {r['T']} | {r['path']} | {r['peak_gib']:.2f} GiB | {r['tokens_per_s']:.0f} | "
                     f"{r['pairs_per_s']:.2f} | {r['seconds_per_step']:.3f} | {r['first_loss']:.4f} | {kernels} | "
                     f"{squares} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--tiny", action="store_true", help="a 2-layer, hidden-64 Qwen2, V = 512, T = 160")
    parser.add_argument("--T", type=int, nargs="+", help="sequence lengths (default: the setting's)")
    parser.add_argument("--paths", nargs="+", default=PATHS, choices=PATHS)
    parser.add_argument("--pairs", type=int, default=4, help="pairs per step")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--steps", type=int, default=3, help="timed steps after the warm-up")
    parser.add_argument("--dtype", choices=["bf16", "fp32"], help="default: bf16 on CUDA, fp32 on the CPU")
    parser.add_argument("--skip_tests", action="store_true", help="do not run pytest -m cuda")
    parser.add_argument("--tests_timeout", type=float, default=300.0)
    parser.add_argument("--out", help="JSON Lines file (default: benchmarks/results/gpu-<device>[-tiny].jsonl)")
    args = parser.parse_args(argv)
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        print("No CUDA device (torch.cuda.is_available() is False): nothing measured. benchmarks/gpu.py is for a GPU "
              "machine; --device cpu --tiny runs its code path here.")
        return 0
    from datasets import Dataset

    from cpo.files import write_jsonl
    from cpo.tokenization import TokenizeSpec, prepare_dataset

    dev, setting = Device(args.device), "tiny" if args.tiny else "qwen2-0.5b"
    spec, args.dtype = SETTINGS[setting], args.dtype or ("bf16" if args.device == "cuda" else "fp32")
    slug = re.sub(r"[^a-z0-9]+", "-", dev.name.lower()).strip("-") + ("-tiny" if args.tiny else "")
    out = args.out or ROOT / "benchmarks" / "results" / f"gpu-{slug}.jsonl"
    records = [{"benchmark": "gpu", "machine": machine(), "device": dev.name, "setting": setting,
                "model": {k: spec[k] for k in ("vocab", "hidden", "layers")} | spec["config"], "pairs": args.pairs,
                "dtype": args.dtype, "warmup": args.warmup, "steps": args.steps, "memory": dev.memory,
                "data": "synthetic word ids shaped like translation pairs (mt_like_rows)"}]
    if args.device == "cuda" and not args.skip_tests:
        records.append(run_cuda_tests(args.tests_timeout))
        write_jsonl(out, records)
        print(f"pytest -m cuda: {records[-1].get('summary') or records[-1].get('status')}", file=sys.stderr)
    tok = word_tokenizer(spec["vocab"])
    base = qwen2_model(spec["vocab"], spec["hidden"], spec["layers"], **spec["config"])
    for seq in args.T or spec["T"]:
        rows = mt_like_rows(spec["vocab"], args.pairs, seq)
        tokenized = prepare_dataset(Dataset.from_list(rows), tok, TokenizeSpec(max_length=seq))
        tokens = sum(data_tokens(tokenized))
        for path in args.paths:
            with contextlib.redirect_stdout(sys.stderr):  # the trainers' log lines; stdout is for the table
                records.append(measure(path, base, rows, list(tokenized), tokens, tok, args, seq, dev))
            write_jsonl(out, records)
            print(f"T={seq} {path}: {records[-1]['status']} ({records[-1]['wall_s']} s)", file=sys.stderr)
    tests = next((r for r in records if "tests" in r), None)
    print(f"{setting}, {args.dtype}, {args.pairs} pairs a step, {dev.name}; {out}")
    print(table(records, dev))
    print(f"pytest -m cuda: {tests.get('summary') or tests.get('status')}" if tests else "pytest -m cuda: not run")
    return 0


if __name__ == "__main__":
    sys.exit(main())

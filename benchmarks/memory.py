"""Peak memory and time of one optimiser step: ours chunked vs ours naive vs TRL 1.16, side by side.

Each measurement runs in a fresh process (peak RSS is per process), capped at --limit_gib of address space so that an
out-of-memory path fails as an error instead of taking the machine down. Two measurements per path:

- ``loss``: the loss path alone, from final hidden states (2B, T, H) and the LM head to loss.backward();
- ``step``: a whole training step (forward, backward, AdamW) through the trainer, the second of two steps timed.

Model: Qwen2 from config, hidden 512, 4 layers, tied embeddings; 8 pairs per batch; every sequence is T tokens
(prompt T/2, completion T/2). ``ours-chunked`` and ``ours-naive`` use the padded layout and full checkpointing here
(as TRL) so only the log-prob path differs; ``ours-default`` is every default (packing, prefix sharing, selective
checkpointing too); ``ours-default-<policy>-gc`` the same with ``gradient_checkpointing_policy=<policy>``
(``selective``, ``mlp``, ``full``), ``ours-default-no-gc`` without checkpointing.
Usage: ``python benchmarks/memory.py [--vocab 32000 151936]``.

``--model gemma3-270m``: the whole step of Gemma 3 270M (the translation demo's model, V = 262144, tied embeddings,
loaded from its GGUF as float32, every parameter trainable), TRL 1.16 against ours with every default, on one batch of
real translation pairs (:func:`mt_rows`) at both trainers' default ``max_length``, which truncates none of them. Needs
the demo's model packages (``cpo.demo.gemma``).
"""

from __future__ import annotations

import argparse

from common import (
    DEFAULT_PATHS,
    Timer,
    emit,
    limit_memory,
    machine,
    peak_rss_bytes,
    qwen2_model,
    reset_peak_rss,
    rss_bytes,
    run_worker,
    step_clock,
    trim_heap,
)

PATHS = ["ours-chunked", "ours-naive", "trl", *DEFAULT_PATHS]
GEMMA_PATHS = ["trl", "ours-default"]
GEMMA_MAX_LENGTH = 1024  # TRL's and our default
GIB = 2**30


def rows(tokenizer_vocab: int, pairs: int, seq: int, seed: int = 0):
    import torch
    from common import words

    gen = torch.Generator().manual_seed(seed)
    half = seq // 2 - 1  # plus BOS on the prompt and EOS on each completion: every sequence is exactly `seq`
    return [{"prompt": words(gen, half, tokenizer_vocab), "chosen": " " + words(gen, half, tokenizer_vocab),
             "rejected": " " + words(gen, half, tokenizer_vocab)} for _ in range(pairs)]


def mt_rows(pairs: int) -> list[dict]:
    """``pairs`` translation pairs from the first WMT'21 de-en dev sentences: pair i is sentence i's ALMA prompt, its
    reference as chosen and sentence i+1's reference as rejected."""
    from cpo.demo.mt_data import load_slice
    from cpo.mt.prompts import alma_prompt

    dev = load_slice("dev")[: pairs + 1]
    return [{"prompt": alma_prompt(s.de, "de", "en"), "chosen": " " + s.en, "rejected": " " + nxt.en}
            for s, nxt in zip(dev, dev[1:])]


def sequence_lengths(tokenizer, rows_: list[dict]) -> list[int]:
    """Tokens of each of the 2 x pairs sequences, chosen ones first, as both trainers lay them out: BOS (where the
    tokenizer has one), ``prompt + answer`` tokenized as one string, EOS."""
    bos = int(tokenizer.bos_token_id is not None)
    return [bos + len(tokenizer(row["prompt"] + row[side], add_special_tokens=False)["input_ids"]) + 1
            for side in ("chosen", "rejected") for row in rows_]


def gemma_setup(pairs: int):
    """Gemma 3 270M as ``cpo demo --task mt`` loads it, its tokenizer, and :func:`mt_rows`."""
    from cpo.demo.gemma import gemma_gguf_path
    from cpo.gguf import align_special_tokens, load_gguf_model, load_gguf_tokenizer

    path = gemma_gguf_path()
    model, tokenizer = load_gguf_model(path), load_gguf_tokenizer(path)
    align_special_tokens(model, tokenizer)
    return model, tokenizer, mt_rows(pairs)


def loss_path(path: str, hidden, weight, prompt: int, pairs: int):
    """Loss from hidden states (2B, T, H) and the head weight (V, H), as each trainer computes it."""
    import torch

    from cpo.chunked import LMHead, chunked_token_logps
    from cpo.logprobs import sequence_logps, token_logps_from_logits
    from cpo.losses import cpo_objective

    rows_, seq, _ = hidden.shape
    targets = torch.randint(3, weight.shape[0], (rows_, seq), generator=torch.Generator().manual_seed(1))
    if path == "trl":
        from types import SimpleNamespace

        from trl.experimental.cpo import CPOTrainer

        labels = targets.clone()
        labels[:, :prompt] = -100
        logits = hidden @ weight.T  # (2B, T, V), as the model's head
        logps = CPOTrainer.get_batch_logps(logits, labels)
        nll = torch.nn.functional.cross_entropy(logits[:pairs, :-1].reshape(-1, logits.shape[-1]),
                                                labels[:pairs, 1:].reshape(-1))
        fake = SimpleNamespace(alpha=0.0, beta=0.1, loss_type="sigmoid", label_smoothing=0.0,
                               accelerator=SimpleNamespace(device=hidden.device))
        losses = CPOTrainer.cpo_loss(fake, logps[:pairs], logps[pairs:])[0]
        return losses.mean() + nll
    positions = torch.cat([r * seq + torch.arange(prompt - 1, seq - 1) for r in range(rows_)])
    target_ids = targets.reshape(-1)[positions + 1]
    target_seq = positions // seq
    if path == "ours-naive":
        logits = hidden @ weight.T
        token_logps, _ = token_logps_from_logits(logits.reshape(-1, logits.shape[-1])[positions], target_ids)
    else:
        flat = hidden.reshape(-1, hidden.shape[-1])[positions]
        token_logps, _ = chunked_token_logps(flat, LMHead(weight), target_ids)
    sums, counts = sequence_logps(token_logps, target_seq, rows_)
    return cpo_objective(sums, counts, num_pairs=pairs, num_chosen_tokens=float(counts[:pairs].sum())).loss


def worker_loss(args) -> dict:
    import torch

    hidden_size, pairs = 512, args.pairs
    gen = torch.Generator().manual_seed(0)
    weight = (torch.randn(args.vocab, hidden_size, generator=gen) * 0.02).requires_grad_(True)
    times = []
    for _ in range(2):
        hidden = torch.randn(2 * pairs, args.seq, hidden_size, generator=gen).requires_grad_(True)
        weight.grad = None
        reset_peak_rss()
        base = rss_bytes()
        with Timer() as t:
            loss_path(args.path, hidden, weight, args.seq // 2, pairs).backward()
        times.append(t.seconds)
        peak = peak_rss_bytes() - base
    return {"peak_gib": round(peak / GIB, 3), "seconds": round(times[-1], 3)}


def worker_step(args) -> dict:
    import copy

    import torch
    from common import word_tokenizer
    from datasets import Dataset

    extra = {}
    if args.model == "gemma3-270m":
        model, tok, data = gemma_setup(args.pairs)
        trim_heap()  # the GGUF loader's freed buffers, which glibc may keep (0 to 0.6 GiB from run to run)
        max_length = GEMMA_MAX_LENGTH
        lengths = sequence_lengths(tok, data)
        if max(lengths) > max_length:
            raise ValueError(f"a sequence of {max(lengths)} tokens would be cut at max_length={max_length}")
        extra = {"vocab": model.config.vocab_size, "trainable_params": sum(p.numel() for p in model.parameters()
                                                                           if p.requires_grad),
                 "tokens": sum(lengths), "longest": max(lengths), "max_length": max_length}
    else:
        model, tok, data = qwen2_model(args.vocab), word_tokenizer(args.vocab), rows(args.vocab, args.pairs, args.seq)
        max_length = args.seq
    common = dict(output_dir=f"/tmp/cpo-bench-{args.path}", per_device_train_batch_size=args.pairs, max_steps=2,
                  logging_steps=1, learning_rate=1e-5, report_to="none", save_strategy="no", disable_tqdm=True,
                  bf16=False, max_length=max_length)
    if args.path == "trl":
        from trl.experimental.cpo import CPOConfig, CPOTrainer
        config = CPOConfig(**common)
    else:
        from cpo import CPOConfig, CPOTrainer
        # ours-chunked and ours-naive check-point as TRL does (whole layers), so only the log-prob path differs
        flags = DEFAULT_PATHS.get(args.path) or dict(padding_free=False, prefix_sharing=False,
                                                     chunked_logits=args.path != "ours-naive",
                                                     gradient_checkpointing_policy="full")
        config = CPOConfig(**common, **flags)
    timer = step_clock()
    trainer = CPOTrainer(model=model, args=config, processing_class=copy.deepcopy(tok),
                         train_dataset=Dataset.from_list(data), callbacks=[timer])
    reset_peak_rss()
    base = rss_bytes()
    trainer.train()
    loss = next(h["loss"] for h in trainer.state.log_history if "loss" in h)
    return {**extra, "peak_gib": round(peak_rss_bytes() / GIB, 3),
            "peak_over_setup_gib": round((peak_rss_bytes() - base) / GIB, 3), "seconds": round(timer.times[-1], 2),
            "first_loss": round(float(loss), 4), "threads": torch.get_num_threads()}


def worker(args) -> None:
    limit_memory(args.limit_gib)
    try:
        result = worker_loss(args) if args.mode == "loss" else worker_step(args)
        result["status"] = "ok"
    except (MemoryError, RuntimeError) as err:
        if "memory" not in str(err).lower() and not isinstance(err, MemoryError):
            raise
        result = {"status": f"out of memory at the {args.limit_gib} GiB cap"}
    emit(result)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--mode", default="step", choices=["step", "loss"])
    parser.add_argument("--path", default="ours-chunked", choices=PATHS)
    parser.add_argument("--model", default="qwen2", choices=["qwen2", "gemma3-270m"],
                        help="qwen2: from config, at each --vocab and --seq; gemma3-270m: the whole step only, on "
                             "translation pairs, paths trl and ours-default unless --paths says")
    parser.add_argument("--vocab", type=int, nargs="+", default=[32000, 151936])
    parser.add_argument("--seq", type=int, nargs="+", default=[512, 1024])
    parser.add_argument("--pairs", type=int, default=8)
    parser.add_argument("--paths", nargs="+", default=None, choices=PATHS)
    parser.add_argument("--modes", nargs="+", default=["loss", "step"], choices=["loss", "step"])
    parser.add_argument("--limit_gib", type=float, default=20.0)
    parser.add_argument("--timeout", type=float, default=1800.0)
    args = parser.parse_args()
    if args.worker:
        args.vocab, args.seq = args.vocab[0], args.seq[0]
        return worker(args)
    if args.model == "gemma3-270m":
        return main_gemma(args)
    emit({"benchmark": "memory", "machine": machine(), "pairs": args.pairs, "hidden": 512, "layers": 4})
    for vocab in args.vocab:
        for seq in args.seq:
            for mode in args.modes:
                for path in args.paths or PATHS:
                    if mode == "loss" and path.startswith("ours-default"):
                        continue  # the loss path of ours-default is ours-chunked
                    result = run_worker(["--mode", mode, "--path", path, "--vocab", str(vocab), "--seq", str(seq),
                                         "--pairs", str(args.pairs), "--limit_gib", str(args.limit_gib)], args.timeout)
                    emit({"mode": mode, "path": path, "vocab": vocab, "seq": seq, **result})


def main_gemma(args) -> None:
    """The whole step of Gemma 3 270M per path, each in a fresh process."""
    emit({"benchmark": "memory", "model": args.model, "machine": machine(), "pairs": args.pairs,
          "rows": "mt_rows: WMT'21 de-en dev, ALMA prompt, next sentence's reference rejected"})
    for path in args.paths or GEMMA_PATHS:
        result = run_worker(["--model", args.model, "--path", path, "--pairs", str(args.pairs),
                             "--limit_gib", str(args.limit_gib)], args.timeout)
        emit({"mode": "step", "model": args.model, "path": path, "pairs": args.pairs, **result})


if __name__ == "__main__":
    main()

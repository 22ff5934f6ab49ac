"""FLOP accounting for the throughput benchmark: the machine's fp32 GEMM peak, the FLOPs a step executes, and the
FLOPs it needs.

- ``gemm_peak_flops``: a large ``torch.mm`` (``n x n`` by ``n x n``, fp32, the process's threads), best of several
  runs: ``2 n^3 / seconds``. What the matmul library reaches on this machine, the ceiling a training step can
  approach (attention and the LM head are matmuls too).
- ``executed_flops``: ``torch.utils.flop_counter.FlopCounterMode`` over one forward + backward of a collated batch,
  as the trainer runs it (gradient-checkpointing recompute, padding, full logits, chunk recompute included). The
  counter knows matmuls and the CUDA attention kernels; CPU's fused attention is added here: ``4 d`` FLOPs per
  ``(query, key)`` pair forward and ``10 d`` backward (its five matmuls), half the pairs (plus the diagonal) when
  ``is_causal``, all of them with a mask.
- ``useful_flops`` = ``6 * N * U + 6 * H * V * C``: ``N`` non-embedding parameters (the LM head excluded), ``U``
  unique tokens of the batch (prompt + chosen + rejected, the prompt counted once), ``H x V`` the LM head and ``C``
  the completion tokens it must score (forward 2, backward 4 FLOPs per weight per token). Attention's own FLOPs are
  left out, as in the usual ``6 N D`` count; the sequences measured here are short enough for that to be small.
"""

from __future__ import annotations

import time


def gemm_peak_flops(n: int = 4096, repeats: int = 5) -> float:
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best


def _register_cpu_attention() -> None:
    import torch
    from torch.utils.flop_counter import flop_registry, register_flop_formula

    aten = torch.ops.aten
    if aten._scaled_dot_product_flash_attention_for_cpu in flop_registry:
        return

    def pairs(q_len: int, k_len: int, causal: bool) -> int:
        return q_len * (q_len + 1) // 2 + (k_len - q_len) * q_len if causal else q_len * k_len

    @register_flop_formula(aten._scaled_dot_product_flash_attention_for_cpu)
    def _forward(query_shape, key_shape, value_shape, dropout_p=0.0, is_causal=False, *args, out_shape=None,
                 **kwargs):
        b, h, s_q, d = query_shape
        return 2 * b * h * pairs(s_q, key_shape[2], is_causal) * (d + value_shape[-1])

    @register_flop_formula(aten._scaled_dot_product_flash_attention_for_cpu_backward)
    def _backward(grad_shape, query_shape, key_shape, value_shape, out_shape_, lse_shape, dropout_p=0.0,
                  is_causal=False, *args, out_shape=None, **kwargs):
        b, h, s_q, d = query_shape
        return 2 * b * h * pairs(s_q, key_shape[2], is_causal) * (3 * d + 2 * value_shape[-1])


def watched_step(trainer, batch, watcher):
    """One forward + backward of ``batch`` (collated, as the trainer's data loader gives it) inside ``watcher``, a
    context manager that observes it (a FLOP counter, a profiler); the gradients are dropped. Returns ``watcher``."""
    model = trainer.model
    model.train()
    inputs = trainer._prepare_inputs(batch)
    with watcher:
        trainer.compute_loss(model, inputs).backward()
    model.zero_grad(set_to_none=True)
    return watcher


def executed_flops(trainer, batch) -> int:
    """FLOPs of one forward + backward of ``batch``."""
    from torch.utils.flop_counter import FlopCounterMode

    _register_cpu_attention()
    return watched_step(trainer, batch, FlopCounterMode(display=False)).get_total_flops()


def non_embedding_params(model) -> int:
    """Parameters outside the input embeddings and the LM head (tied or not)."""
    skip = {id(model.get_input_embeddings().weight), id(model.get_output_embeddings().weight)}
    return sum(p.numel() for p in model.parameters() if id(p) not in skip)


def useful_flops(model, unique_tokens: int, completion_tokens: int) -> int:
    head = model.get_output_embeddings().weight  # (V, H)
    return 6 * non_embedding_params(model) * unique_tokens + 6 * head.numel() * completion_tokens

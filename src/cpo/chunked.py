"""Token log-probs straight from hidden states and the LM head, never materialising the ``(N, V)`` logits.

Naive equivalent (see :func:`naive_token_logps`)::

    logits = head_logits(hidden, head)                       # (N, V), model dtype
    logps = log_softmax(logits.float())[n, target_ids[n]]   # (N,) fp32

The forward walks over chunks of ``chunk_size`` scored positions and keeps only the per-token log-prob and the
log-sum-exp (``2N`` floats). The backward recomputes each chunk's logits and turns them into the gradients of the
hidden states, weight and bias right away, so at most one chunk of logits (plus its softmax, in place) exists at a
time in either direction. Recomputing costs one extra ``(C, H) @ (H, V)`` matmul per chunk; the alternative of
computing gradients during the forward is not available here, because the loss is a non-linear function of whole
sequence sums that are only known after the last chunk. Where all ``N x V`` fp32 probabilities fit in
``keep_bytes`` (:data:`KEEP_BYTES`, 128 MiB: a batch of short answers, such as translation pairs at a 32k
vocabulary), the forward keeps them and the backward skips the recompute; long answers or a large vocabulary
recompute as above, so the memory bound holds.

Weight and bias gradients accumulate in fp32 whatever the model dtype.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .logprobs import token_logps_from_logits


@dataclass(frozen=True)
class LMHead:
    """What turns a hidden state into logits: ``softcap(logit_scale * (h @ weight.T + bias))``.

    ``weight`` is ``(V, H)``, ``bias`` ``(V,)`` or None. ``logit_scale`` covers Cohere's ``logit_scale`` and Granite's
    ``1 / logits_scaling``; ``softcap`` Gemma-2's ``cap * tanh(logits / cap)``. Scaling the model applies *before*
    the head (T5's ``d_model ** -0.5``) is already in the hidden states the trainer captures at the head's input.
    """

    weight: torch.Tensor
    bias: torch.Tensor | None = None
    logit_scale: float = 1.0
    softcap: float | None = None


def head_logits(hidden: torch.Tensor, head: LMHead) -> torch.Tensor:
    """``(N, H) -> (N, V)`` logits in the hidden dtype, exactly as the model's head computes them."""
    logits = torch.nn.functional.linear(hidden, head.weight.to(hidden.dtype), _cast(head.bias, hidden.dtype))
    if head.logit_scale != 1.0:
        logits = logits * head.logit_scale
    if head.softcap is not None:
        logits = torch.tanh(logits / head.softcap) * head.softcap
    return logits


def naive_token_logps(
    hidden: torch.Tensor, head: LMHead, target_ids: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Reference for :func:`chunked_token_logps`: materialises all ``(N, V)`` logits at once."""
    return token_logps_from_logits(head_logits(hidden, head), target_ids)


KEEP_BYTES = 128 * 2**20


def default_chunk_size(vocab_size: int, budget_bytes: int = 32 * 2**20, min_rows: int = 256) -> int:
    """Positions per chunk: enough for one fp32 chunk of logits to take about ``budget_bytes`` (32 MiB), and at
    least ``min_rows``, below which the ``(C, H) @ (H, V)`` matmul runs far from peak. Measured with
    ``benchmarks/chunked.py`` (4096 positions, hidden 512, 2-vCPU EPYC): at V=151936, 55 rows took 31.0 s for
    forward + backward, 256 rows 19.7 s (0.60 GiB), the naive reference 20.1 s (6.96 GiB)."""
    return max(min_rows, budget_bytes // (4 * vocab_size))


def chunked_token_logps(
    hidden: torch.Tensor, head: LMHead, target_ids: torch.Tensor, chunk_size: int | None = None,
    keep_bytes: int = KEEP_BYTES,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token log-probs of ``target_ids`` under ``head(hidden)``, chunked over positions.

    Args:
        hidden: ``(N, H)`` hidden states at the scored positions (model dtype).
        head: the LM head; its weight (and bias) receive gradients if they require them.
        target_ids: ``(N,)`` int64 next-token ids.
        chunk_size: positions per chunk; ``None`` picks :func:`default_chunk_size`.
        keep_bytes: the forward keeps the fp32 probabilities for the backward when all ``N x V`` of them take at
            most this many bytes (and the head has no soft-cap); otherwise the backward recomputes the logits.
            Nothing is kept where no gradient will be asked for (evaluation, ``torch.no_grad``).

    Returns:
        ``(token_logps, token_logit_means)``, both ``(N,)`` fp32; only the first is differentiable. Equal to
        :func:`naive_token_logps` up to float rounding.
    """
    if chunk_size is None:
        chunk_size = default_chunk_size(head.weight.shape[0])
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    grads = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (hidden, head.weight, head.bias))
    keep = grads and head.softcap is None and 4 * hidden.shape[0] * head.weight.shape[0] <= keep_bytes
    return _ChunkedLogps.apply(hidden, head.weight, head.bias, target_ids, head.logit_scale, head.softcap, chunk_size,
                               keep)


def _cast(t: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | None:
    return None if t is None else t.to(dtype)


def _chunk_logits(h, weight, bias, scale, softcap):
    """fp32 logits of one chunk, plus ``tanh(z / cap)`` when soft-capping (needed by the backward)."""
    z = torch.nn.functional.linear(h, weight, bias).float()
    if scale != 1.0:
        z.mul_(scale)
    if softcap is None:
        return z, None
    t = torch.tanh(z / softcap)
    return t * softcap, t


def _weight_grad(grad_y: torch.Tensor, grad_z: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """``(C, V), (C, V), (C, H) -> (V, H)`` fp32 product ``grad_z.T @ h`` without rounding it to a low precision:
    fp32 inputs on CPU, low-precision inputs with an fp32 output where the device supports it (CUDA)."""
    if h.is_cuda:
        try:
            return torch.mm(grad_z.T, h, out_dtype=torch.float32)
        except (RuntimeError, TypeError):
            pass
    return grad_y.T @ h.float()


class _ChunkedLogps(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden, weight, bias, target_ids, scale, softcap, chunk_size, keep):
        dtype = hidden.dtype
        with torch.autocast(hidden.device.type, enabled=False):
            w, b = weight.to(dtype), _cast(bias, dtype)
            n = hidden.shape[0]
            logps = hidden.new_empty(n, dtype=torch.float32)
            lse = hidden.new_empty(n, dtype=torch.float32)
            means = hidden.new_empty(n, dtype=torch.float32)
            probs = []
            for s in range(0, n, chunk_size):
                e = min(s + chunk_size, n)
                y, _ = _chunk_logits(hidden[s:e], w, b, scale, softcap)  # (C, V) fp32
                means[s:e] = y.mean(-1)
                target = y.gather(-1, target_ids[s:e, None]).squeeze(-1)
                peak = y.amax(-1)
                total = y.sub_(peak[:, None]).exp_().sum(-1)  # in place: y is exp(logits - peak) from here
                lse[s:e] = total.log().add_(peak)
                logps[s:e] = target - lse[s:e]
                if keep:
                    probs.append(y.div_(total[:, None]))
        ctx.save_for_backward(hidden, weight, bias, target_ids, lse, *probs)
        ctx.scale, ctx.softcap, ctx.chunk_size = scale, softcap, chunk_size
        ctx.mark_non_differentiable(means)
        return logps, means

    @staticmethod
    def backward(ctx, grad_logps, _grad_means):
        hidden, weight, bias, target_ids, lse, *probs = ctx.saved_tensors
        scale, softcap, chunk_size = ctx.scale, ctx.softcap, ctx.chunk_size
        need_h, need_w, need_b = ctx.needs_input_grad[:3]
        dtype = hidden.dtype
        grad_h = torch.zeros_like(hidden) if need_h else None
        grad_w = None  # the first chunk's product, then accumulated in place: no zero-filled (V, H) buffer
        grad_b = torch.zeros(bias.shape, dtype=torch.float32, device=bias.device) if need_b else None
        with torch.autocast(hidden.device.type, enabled=False):
            w, b = weight.to(dtype), _cast(bias, dtype)
            for i, s in enumerate(range(0, hidden.shape[0], chunk_size)):
                e = min(s + chunk_size, hidden.shape[0])
                h, g = hidden[s:e], grad_logps[s:e].float()
                # d logp / d y = onehot(target) - softmax(y): from the kept softmax (a new tensor, so a second
                # backward finds it intact), or in place of the recomputed logits
                if probs:
                    grad_y, t = probs[i] * -g[:, None], None
                else:
                    y, t = _chunk_logits(h, w, b, scale, softcap)
                    grad_y = y.sub_(lse[s:e, None]).exp_().mul_(-g[:, None])
                grad_y.scatter_add_(-1, target_ids[s:e, None], g[:, None])
                if softcap is not None:
                    grad_y.mul_(1.0 - t * t)
                if scale != 1.0:
                    grad_y.mul_(scale)
                grad_z = grad_y.to(dtype)
                if need_h:
                    torch.mm(grad_z, w, out=grad_h[s:e])
                if need_w and dtype == torch.float32:
                    if grad_w is None:
                        grad_w = torch.mm(grad_y.T, h)
                    else:
                        grad_w.addmm_(grad_y.T, h)  # in place: no (V, H) temporary per chunk
                elif need_w:
                    part = _weight_grad(grad_y, grad_z, h)
                    grad_w = part if grad_w is None else grad_w.add_(part)
                if need_b:
                    grad_b += grad_y.sum(0)
        if need_w and grad_w is None:  # no scored positions
            grad_w = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device)
        grad_w = None if grad_w is None else grad_w.to(weight.dtype)
        grad_b = None if grad_b is None else grad_b.to(bias.dtype)
        return grad_h, grad_w, grad_b, None, None, None, None, None

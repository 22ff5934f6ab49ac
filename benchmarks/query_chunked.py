"""Query-chunked attention in pure PyTorch, one of the alternatives ``attention.py`` measures (not the library's).

Each query run of ``cpo.path_attention.block_regions`` is cut into chunks of ``C`` queries; a chunk's keys are the
run's context intervals and its own keys up to the chunk's last query, so only the causal triangle of the last ``C`` keys
is masked. Scores live one chunk at a time (at most 64 MiB) and the backward recomputes them from the saved
log-sum-exp (FlashAttention's recipe), so memory is ``O(L)``. Exact (fp64 error 1e-15 against the dense mask) but,
on the CPU measured, 1.4-3.1x slower than sdpa's fused kernel with the dense mask (results/attention-cpu.jsonl):
unfused matmuls, softmax and masking over each chunk cost more than the skipped pairs save. The library runs causal paths instead
(``cpo.path_attention``).
"""

from __future__ import annotations

import torch

from cpo.path_attention import Region

SCORE_BUDGET = 2**24  # fp32 scores per chunk (64 MiB)


def _chunk_size(heads: int, keys: int) -> int:
    """Queries per chunk: as many as fit ``SCORE_BUDGET`` scores for ``keys`` keys, a multiple of 64 in [64, 1024]."""
    return max(64, min(1024, SCORE_BUDGET // max(heads * keys, 1) // 64 * 64))


def _chunks(regions: list[Region], heads: int):
    """``(row, qa, qb, spans)`` per chunk; ``spans`` are the merged key intervals, the last one ending at ``qb``."""
    for reg in regions:
        keys = sum(e - s for s, e in reg.context) + reg.end - reg.start
        size = _chunk_size(heads, keys)
        for qa in range(reg.start, reg.end, size):
            qb = min(qa + size, reg.end)
            spans = list(reg.context)
            if spans and spans[-1][1] == reg.start:
                spans[-1] = (spans[-1][0], qb)
            else:
                spans.append((reg.start, qb))
            yield reg.row, qa, qb, spans


def _acc(dtype: torch.dtype) -> torch.dtype:
    """Softmax and gradient accumulation dtype: fp32 for half precision, the input's own otherwise."""
    return torch.promote_types(dtype, torch.float32)


def _scores(q_chunk, k_row, spans, scale, n_new):
    """``(Hkv, G*C, K)`` scores (fp32 at least) of a chunk, the causal triangle of its last ``n_new`` keys at ``-inf``."""
    scores = torch.cat([q_chunk @ k_row[:, s:e].transpose(-1, -2) for s, e in spans], dim=-1).to(_acc(q_chunk.dtype)) * scale
    hkv, gc, _ = scores.shape
    tail = scores[..., -n_new:].view(hkv, gc // n_new, n_new, n_new)
    tail.masked_fill_(torch.ones(n_new, n_new, dtype=torch.bool, device=scores.device).triu_(1), float("-inf"))
    return scores


def _split(x: torch.Tensor, spans) -> list[torch.Tensor]:
    return list(x.split([e - s for s, e in spans], dim=-1))


class _BlockAttention(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, scale, regions):
        # q (B, H, L, D), k (B, Hkv, L, D), v (B, Hkv, L, Dv), contiguous
        b, h, length, _ = q.shape
        hkv = k.shape[1]
        g = h // hkv
        out = torch.zeros(b, h, length, v.shape[-1], dtype=q.dtype, device=q.device)
        lse = torch.zeros(b, h, length, dtype=_acc(q.dtype), device=q.device)
        for row, qa, qb, spans in _chunks(regions, h):
            n = qb - qa
            q_chunk = q[row].unflatten(0, (hkv, g))[:, :, qa:qb].reshape(hkv, g * n, -1)
            scores = _scores(q_chunk, k[row], spans, scale, n)
            chunk_lse = torch.logsumexp(scores, dim=-1, keepdim=True)
            probs = (scores - chunk_lse).exp_().to(v.dtype)
            chunk_out = sum(p @ v[row][:, s:e] for p, (s, e) in zip(_split(probs, spans), spans))
            out[row].unflatten(0, (hkv, g))[:, :, qa:qb] = chunk_out.view(hkv, g, n, -1)
            lse[row].unflatten(0, (hkv, g))[:, :, qa:qb] = chunk_lse.view(hkv, g, n)
        ctx.save_for_backward(q, k, v, out, lse)
        ctx.scale, ctx.regions = scale, regions
        return out

    @staticmethod
    def backward(ctx, grad_out):
        q, k, v, out, lse = ctx.saved_tensors
        scale = ctx.scale
        b, h, length, _ = q.shape
        hkv = k.shape[1]
        g = h // hkv
        grad_out = grad_out.contiguous()
        acc = _acc(q.dtype)
        delta = (grad_out.to(acc) * out.to(acc)).sum(-1)  # (B, H, L): rowsum(dO * O)
        dq = torch.zeros(q.shape, dtype=acc, device=q.device)
        dk = torch.zeros(k.shape, dtype=acc, device=q.device)
        dv = torch.zeros(v.shape, dtype=acc, device=q.device)
        for row, qa, qb, spans in _chunks(ctx.regions, h):
            n = qb - qa
            q_chunk = q[row].unflatten(0, (hkv, g))[:, :, qa:qb].reshape(hkv, g * n, -1)
            do_chunk = grad_out[row].unflatten(0, (hkv, g))[:, :, qa:qb].reshape(hkv, g * n, -1)
            scores = _scores(q_chunk, k[row], spans, scale, n)
            probs = (scores - lse[row].unflatten(0, (hkv, g))[:, :, qa:qb].reshape(hkv, g * n, 1)).exp_()
            dprobs = torch.cat([do_chunk @ v[row][:, s:e].transpose(-1, -2) for s, e in spans], dim=-1).to(acc)
            dscores = probs * (dprobs - delta[row].unflatten(0, (hkv, g))[:, :, qa:qb].reshape(hkv, g * n, 1))
            dscores = (dscores * scale).to(q.dtype)
            probs = probs.to(v.dtype)
            dq_chunk = 0
            for p, ds, (s, e) in zip(_split(probs, spans), _split(dscores, spans), spans):
                dv[row][:, s:e] += p.transpose(-1, -2) @ do_chunk
                dk[row][:, s:e] += ds.transpose(-1, -2) @ q_chunk
                dq_chunk = dq_chunk + ds @ k[row][:, s:e]
            dq[row].unflatten(0, (hkv, g))[:, :, qa:qb] = dq_chunk.view(hkv, g, n, -1)
        return dq.to(q.dtype), dk.to(k.dtype), dv.to(v.dtype), None, None


def query_chunked_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, regions: list[Region],
                    scale: float) -> torch.Tensor:
    """Masked attention over :class:`~cpo.path_attention.Region` runs, chunk by chunk .

    Args:
        query: ``(B, H, L, D)``; key: ``(B, Hkv, L, D)``; value: ``(B, Hkv, L, Dv)``, with ``H`` a multiple of ``Hkv``.
        regions: the runs of :func:`cpo.path_attention.block_regions` for these rows.
        scale: the factor on ``q k^T`` (usually ``D ** -0.5``).

    Returns:
        ``(B, H, L, Dv)``; zero at tokens of no region (padding).
    """
    if query.shape[1] % key.shape[1]:
        raise ValueError(f"{query.shape[1]} query heads are not a multiple of {key.shape[1]} key heads.")
    return _BlockAttention.apply(query.contiguous(), key.contiguous(), value.contiguous(), float(scale), regions)

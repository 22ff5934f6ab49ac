"""Attention for the packed and prefix-shared layouts as plain causal attention over paths: no ``(L, L)`` mask.

A dense block mask (:func:`cpo.layouts.block_mask`) costs ``L^2`` memory, and the fused kernels cannot skip what it
masks: on CPU, sdpa's flash kernel takes it but computes every ``(query, key)`` pair; on CUDA it falls back to the
memory-efficient kernel with a materialised bias. Every block of our layouts is causal attention over a *path*:

- a plain sequence is one path;
- a shared pair is two: ``prompt + chosen`` (every output kept) and ``prompt + rejected`` (the rejected outputs
  kept; the rejected tokens see the prompt and themselves, exactly as the mask says).

Each path goes to ``scaled_dot_product_attention(..., is_causal=True)``, which takes the fused kernel on CPU and
CUDA (FlashAttention) and skips the masked half. The only work beyond the mask's is the prompt's queries computed a
second time in the rejected path; the only copies are the rejected path's ``q, k, v``, ``O(L)``. Naive equivalent:
:func:`naive_block_attention`, ``softmax(q k^T * scale + mask) v`` with the dense mask.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .layouts import Region, block_mask


@dataclass(frozen=True)
class AttentionPath:
    """Tokens ``spans`` of row ``row``, attended causally in that order; the last ``keep`` outputs are kept (they
    are the tokens ``[spans[-1][1] - keep, spans[-1][1])``)."""

    row: int
    spans: tuple[tuple[int, int], ...]
    keep: int


def attention_paths(regions: list[Region]) -> list[AttentionPath]:
    """The causal paths that compute every region's queries (see the module docstring).

    A region is ``context + own``, seen causally; a context-free region followed by one whose context is exactly it
    (a prompt and its first branch) is computed in the same path, so the prompt is computed once there.
    """
    paths, i = [], 0
    while i < len(regions):
        reg = regions[i]
        nxt = regions[i + 1] if i + 1 < len(regions) else None
        if (not reg.context and nxt is not None and nxt.row == reg.row and nxt.start == reg.end
                and nxt.context == ((reg.start, reg.end),)):
            paths.append(AttentionPath(reg.row, ((reg.start, nxt.end),), nxt.end - reg.start))
            i += 2
            continue
        spans = list(reg.context)
        if spans and spans[-1][1] == reg.start:
            spans[-1] = (spans[-1][0], reg.end)
        else:
            spans.append((reg.start, reg.end))
        paths.append(AttentionPath(reg.row, tuple(spans), reg.end - reg.start))
        i += 1
    return paths


def _gather(x: torch.Tensor, row: int, spans) -> torch.Tensor:
    """``x[row, :, spans]`` as ``(1, H, n, D)``: a view for one span, a copy for several."""
    parts = [x[row : row + 1, :, s:e] for s, e in spans]
    return parts[0] if len(parts) == 1 else torch.cat(parts, dim=2)


def block_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, paths: list[AttentionPath],
                    scale: float, dropout: float = 0.0) -> torch.Tensor:
    """Attention over :class:`AttentionPath` s, one fused causal sdpa call each.

    Args:
        query: ``(B, H, L, D)``; key: ``(B, Hkv, L, D)``; value: ``(B, Hkv, L, Dv)``, ``H`` a multiple of ``Hkv``.
        paths: :func:`attention_paths` of :func:`cpo.layouts.block_regions` for these rows.
        scale: the factor on ``q k^T``.
        dropout: attention dropout probability (training only).

    Returns:
        ``(B, H, L, Dv)``, zero at tokens of no path (padding).
    """
    b, _, length, _ = query.shape
    gqa = query.shape[1] != key.shape[1]
    pieces: list[list[tuple[int, torch.Tensor]]] = [[] for _ in range(b)]
    for path in paths:
        out = F.scaled_dot_product_attention(
            _gather(query, path.row, path.spans), _gather(key, path.row, path.spans),
            _gather(value, path.row, path.spans), is_causal=True, scale=scale, dropout_p=dropout, enable_gqa=gqa,
        )
        pieces[path.row].append((path.spans[-1][1] - path.keep, out[:, :, -path.keep :]))
    rows = []
    for row_pieces in pieces:
        row_pieces.sort(key=lambda piece: piece[0])
        parts, at = [], 0
        for start, out in row_pieces:
            if start > at:
                parts.append(value.new_zeros(1, query.shape[1], start - at, value.shape[-1]))
            parts.append(out)
            at = start + out.shape[2]
        if at < length:
            parts.append(value.new_zeros(1, query.shape[1], length - at, value.shape[-1]))
        rows.append(torch.cat(parts, dim=2))
    return torch.cat(rows, dim=0)


def naive_block_attention(query, key, value, unit_ids, branch_ids, scale):
    """Reference for :func:`block_attention`: the dense ``(B, 1, L, L)`` mask of :func:`cpo.layouts.block_mask`."""
    g = query.shape[1] // key.shape[1]
    key, value = key.repeat_interleave(g, dim=1), value.repeat_interleave(g, dim=1)
    scores = (query @ key.transpose(-1, -2)).to(torch.promote_types(query.dtype, torch.float32)) * scale
    probs = scores.masked_fill(~block_mask(unit_ids, branch_ids), float("-inf")).softmax(-1).to(value.dtype)
    return (probs @ value).masked_fill((unit_ids < 0)[:, None, :, None], 0.0)

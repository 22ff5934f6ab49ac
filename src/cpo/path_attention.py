"""Path attention: the packed and prefix-shared layouts' attention as plain causal attention over *paths*, no
``(L, L)`` mask. Everything about it lives here: its regions and paths, the kernel and its naive reference, the
layout a batch hands the model, its registration with transformers and switching a model to it and back.

A dense block mask (:func:`cpo.layouts.block_mask`) costs ``L^2`` memory, and the fused kernels cannot skip what it
masks: on CPU, sdpa's flash kernel takes it but computes every ``(query, key)`` pair; on CUDA it falls back to the
memory-efficient kernel with a materialised bias. Every block of our layouts is causal attention over a *path*:

- a plain sequence is one path;
- a shared pair is two: ``prompt + chosen`` (every output kept) and ``prompt + rejected`` (the rejected outputs
  kept; the rejected tokens see the prompt and themselves, exactly as the mask says).

The paths go, right-padded into batches of similar length (:func:`path_plan`), to
``scaled_dot_product_attention(..., is_causal=True)``, which takes the fused kernel on CPU and CUDA (FlashAttention)
and skips the masked half. The only work beyond the mask's is the prompt's queries computed a second time in the
rejected path, and the padding of a batch (bounded by the plan); the only copies are the paths' ``q, k, v``, gathered
from the rows with one index each, ``O(L)``. Naive equivalent:
:func:`naive_block_attention`, ``softmax(q k^T * scale + mask) v`` with the dense mask.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .layouts import block_mask
from .loading import attention_implementation, text_config

PATH_ATTENTION = "cpo_paths_sdpa"


@dataclass(frozen=True)
class Region:
    """A run of query tokens of one row that share one block and branch: queries ``[start, end)`` of row ``row``
    see every key of ``context`` (``(start, end)`` key intervals before the run, merged) and the run's own keys up
    to themselves (causally). The attention of :func:`block_mask`, described in O(runs) instead of O(L^2)."""

    row: int
    start: int
    end: int
    context: tuple[tuple[int, int], ...]


def block_regions(unit_ids: torch.Tensor, branch_ids: torch.Tensor) -> list[Region]:
    """The attention of :func:`block_mask` as :class:`Region` runs (padding has none: it is seen by no query).

    A run's context is every earlier run of its block whose branch is shared (0) or its own, so its queries see
    exactly the keys :func:`block_mask` lets them see; a test expands the regions and compares.
    """
    regions = []
    for row, (units, branches) in enumerate(zip(unit_ids.tolist(), branch_ids.tolist())):
        runs = []  # (unit, branch, start, end)
        for i, (unit, branch) in enumerate(zip(units, branches)):
            if runs and runs[-1][0] == unit and runs[-1][1] == branch and runs[-1][3] == i:
                runs[-1][3] = i + 1
            elif unit >= 0:
                runs.append([unit, branch, i, i + 1])
        for k, (unit, branch, start, end) in enumerate(runs):
            context: list[tuple[int, int]] = []
            for u, b, s, e in runs[:k]:
                if u == unit and b in (0, branch):
                    if context and context[-1][1] == s:
                        context[-1] = (context[-1][0], e)
                    else:
                        context.append((s, e))
            regions.append(Region(row, start, end, tuple(context)))
    return regions


@dataclass(frozen=True)
class AttentionPath:
    """Tokens ``spans`` of row ``row``, attended causally in that order; the last ``keep`` outputs are kept (they
    are the tokens ``[spans[-1][1] - keep, spans[-1][1])``)."""

    row: int
    spans: tuple[tuple[int, int], ...]
    keep: int

    @property
    def length(self) -> int:
        return sum(end - start for start, end in self.spans)


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


@dataclass(frozen=True)
class PathGroup:
    """Paths run as one sdpa batch: ``count`` paths right-padded to ``width`` tokens; ``gather`` (``count * width``)
    holds each slot's token as an index into the flattened ``(B * L)`` tokens (``0`` for padding)."""

    gather: torch.Tensor
    count: int
    width: int


@dataclass(frozen=True)
class PathPlan:
    """How :func:`block_attention` runs a batch's paths: its :class:`PathGroup` s, and ``scatter`` (``B * L``), each
    token's kept output as an index into the groups' flattened outputs, concatenated and followed by one zero row
    (the output of padding, which no path keeps)."""

    groups: tuple[PathGroup, ...]
    scatter: torch.Tensor

    def to(self, device) -> PathPlan:
        groups = tuple(PathGroup(g.gather.to(device), g.count, g.width) for g in self.groups)
        return PathPlan(groups, self.scatter.to(device))


def path_plan(paths: list[AttentionPath], rows: int, length: int, slack: float = 1.5) -> PathPlan:
    """Group ``paths`` of ``rows`` rows of ``length`` tokens into sdpa batches (see :func:`block_attention`).

    Right padding is exact: a causal query never sees the keys after it, so a real query sees only its own path's
    tokens. Padding costs compute, so paths are taken longest first and a group closes when running it padded would
    cost more than ``slack`` times its paths' own causal work (``count * width^2`` against the sum of squared
    lengths); paths of similar length, a batch of MT pairs, run as one call.
    """
    chunks: list[list[AttentionPath]] = []
    squares = 0
    for path in sorted(paths, key=lambda p: -p.length):
        n = path.length
        if chunks:
            width = chunks[-1][0].length
            if (len(chunks[-1]) + 1) * width * width <= slack * (squares + n * n):
                chunks[-1].append(path)
                squares += n * n
                continue
        chunks.append([path])
        squares = n * n
    scatter = torch.full((rows * length,), -1, dtype=torch.long)
    groups, offset = [], 0
    for chunk in chunks:
        width = chunk[0].length
        gather = torch.zeros(len(chunk) * width, dtype=torch.long)
        for i, path in enumerate(chunk):
            tokens = torch.cat([torch.arange(s, e) for s, e in path.spans]) + path.row * length
            gather[i * width : i * width + len(tokens)] = tokens
            kept = slice(len(tokens) - path.keep, len(tokens))
            scatter[tokens[kept]] = torch.arange(kept.start, kept.stop) + offset + i * width
        groups.append(PathGroup(gather, len(chunk), width))
        offset += len(chunk) * width
    return PathPlan(tuple(groups), scatter.masked_fill_(scatter < 0, offset))


def block_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, plan: PathPlan,
                    scale: float, dropout: float = 0.0) -> torch.Tensor:
    """Attention over :class:`AttentionPath` s: one fused causal sdpa call per :class:`PathGroup`, its paths
    gathered from the rows (one ``index_select`` per tensor, whose backward is one ``index_add``) and the kept
    outputs scattered back with one more; a handful of operators a layer, whatever the number of paths.

    Args:
        query: ``(B, H, L, D)``; key: ``(B, Hkv, L, D)``; value: ``(B, Hkv, L, Dv)``, ``H`` a multiple of ``Hkv``.
        plan: :func:`path_plan` of :func:`attention_paths` of :func:`block_regions` for these rows.
        scale: the factor on ``q k^T``.
        dropout: attention dropout probability (training only).

    Returns:
        ``(B, H, L, Dv)``, zero at tokens of no path (padding).
    """
    b, heads, length, _ = query.shape
    gqa = heads != key.shape[1]
    tokens = [x.transpose(1, 2).reshape(b * length, x.shape[1], x.shape[3]) for x in (query, key, value)]
    outs = []
    for group in plan.groups:
        q, k, v = (x.index_select(0, group.gather).view(group.count, group.width, *x.shape[1:]).transpose(1, 2)
                   for x in tokens)
        out = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=scale, dropout_p=dropout, enable_gqa=gqa)
        outs.append(out.transpose(1, 2).reshape(group.count * group.width, heads, out.shape[-1]))
    outs.append(value.new_zeros(1, heads, value.shape[-1]))
    return torch.cat(outs).index_select(0, plan.scatter).view(b, length, heads, -1).transpose(1, 2)


def naive_block_attention(query, key, value, unit_ids, branch_ids, scale):
    """Reference for :func:`block_attention`: the dense ``(B, 1, L, L)`` mask of :func:`cpo.layouts.block_mask`."""
    g = query.shape[1] // key.shape[1]
    key, value = key.repeat_interleave(g, dim=1), value.repeat_interleave(g, dim=1)
    scores = (query @ key.transpose(-1, -2)).to(torch.promote_types(query.dtype, torch.float32)) * scale
    probs = scores.masked_fill(~block_mask(unit_ids, branch_ids), float("-inf")).softmax(-1).to(value.dtype)
    return (probs @ value).masked_fill((unit_ids < 0)[:, None, :, None], 0.0)


@dataclass
class PathLayout:
    """What :func:`path_attention_forward` needs of a packed or shared batch: the plan of its causal paths, and the ids a dense mask is
    built from where a layer needs one (a sliding window)."""

    plan: PathPlan
    unit_ids: torch.Tensor
    branch_ids: torch.Tensor
    position_ids: torch.Tensor

    def dense_mask(self, sliding_window: int | None) -> torch.Tensor:
        mask = block_mask(self.unit_ids, self.branch_ids)
        if sliding_window:  # as transformers' window over the padded layout: positions less than the window apart
            pos = self.position_ids
            mask = mask & ((pos[:, :, None] - pos[:, None, :]) < sliding_window)[:, None]
        return mask


def path_attention_inputs(batch: dict[str, torch.Tensor]) -> dict:
    """The attention arguments of ``model(...)`` for a packed or shared batch under :data:`PATH_ATTENTION`: its
    :class:`PathLayout`, and an empty 4D mask (transformers passes a 4D mask through untouched, so it builds no
    ``(L, L)`` mask)."""
    unit_ids, branch_ids = batch["unit_ids"], batch["branch_ids"]
    rows, length = unit_ids.shape
    paths = attention_paths(block_regions(unit_ids.cpu(), branch_ids.cpu()))
    plan = path_plan(paths, rows, length).to(unit_ids.device)
    return {"cpo_path_layout": PathLayout(plan, unit_ids, branch_ids, batch["position_ids"]),
            "attention_mask": torch.ones((unit_ids.shape[0], 1, 0, 0), dtype=torch.bool, device=unit_ids.device)}


def path_attention_forward(module, query, key, value, attention_mask, dropout=0.0, scaling=None, **kwargs):
    """transformers attention function of :data:`PATH_ATTENTION`: a batch with a ``cpo_path_layout`` runs
    :func:`block_attention` (fused causal sdpa over the paths, no ``(L, L)`` mask); a layer with a sliding
    window runs sdpa with the layout's dense mask; any other call is sdpa exactly as the model had it."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    layout: PathLayout | None = kwargs.pop("cpo_path_layout", None)
    if layout is not None:
        window = kwargs.get("sliding_window") or getattr(module, "sliding_window", None)
        if window or kwargs.get("softcap") is not None or kwargs.get("position_bias") is not None or kwargs.get("s_aux") is not None:
            attention_mask = layout.dense_mask(window)
        else:
            scale = scaling if scaling is not None else query.shape[-1] ** -0.5
            out = block_attention(query, key, value, layout.plan, scale, dropout if module.training else 0.0)
            return out.transpose(1, 2).contiguous(), None
    return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs)


def use_path_attention(model: nn.Module) -> str:
    """Switch an sdpa model to :data:`PATH_ATTENTION` (registered with transformers on first use) and return the
    attention implementation it now has. Calls without a cpo layout still run sdpa with the masks sdpa gets, and
    ``save_pretrained`` writes no attention implementation, so the model is unchanged outside cpo's batches."""
    config = text_config(model)
    if getattr(config, "_attn_implementation", None) != "sdpa":
        return attention_implementation(model)
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

    AttentionInterface.register(PATH_ATTENTION, path_attention_forward)
    ALL_MASK_ATTENTION_FUNCTIONS.register(PATH_ATTENTION, sdpa_mask)
    config._attn_implementation = PATH_ATTENTION
    return PATH_ATTENTION


def restore_sdpa(model: nn.Module) -> str:
    """Undo :func:`use_path_attention` (when no packed or shared layout is used after all)."""
    config = text_config(model)
    if getattr(config, "_attn_implementation", None) == PATH_ATTENTION:
        config._attn_implementation = "sdpa"
    return attention_implementation(model)



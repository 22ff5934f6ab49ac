"""Attention alone, forward + backward, for one prefix-shared pair laid out as ``prompt + chosen + rejected``:
which kernel runs and what it costs, side by side in one run, one fresh process per point.

- ``dense-mask sdpa``: what the packed and shared layouts ran before: ``scaled_dot_product_attention`` with the
  ``(R, 1, L, L)`` bool mask of ``cpo.layouts.block_mask`` (key heads repeated, as transformers does with a mask);
- ``paths (ours)``: ``cpo.path_attention.block_attention``: fused causal sdpa over ``prompt + chosen`` and
  ``prompt + rejected``, no ``(L, L)`` tensor;
- ``query-chunked``: ``query_chunked.py``, exact attention chunked over queries in pure PyTorch, ``O(L)`` memory;
- ``flex (compiled)``: ``torch.nn.attention.flex_attention`` with a ``BlockMask`` of the same rule, compiled;
- ``causal sdpa (no mask)``: one plain causal sequence of the same length, ``is_causal=True`` (what a fused kernel
  does with no mask at all; it attends to more keys than the pair needs, so it is a yardstick, not a candidate).

The pair has a prompt of T/2 and answers of T/2 each (T = one sequence as TRL lays it out), so L = 1.5 T. Heads:
8 query, 2 key/value, dimension 64 (the hidden-512 Qwen2 of the other benchmarks). ``useful_flops`` counts the
query-key pairs the rule allows (4 * D FLOPs each forward, 2.5x that for forward + backward); ``kernel`` is what
``torch._fused_sdp_choice`` picks for the sdpa calls. Usage: ``python benchmarks/attention.py [--T 2048 4096]``.
"""

from __future__ import annotations

import argparse

from common import Timer, emit, limit_memory, machine, peak_rss_bytes, reset_peak_rss, rss_bytes, run_worker

PATHS = ["dense-mask sdpa", "paths (ours)", "query-chunked", "flex (compiled)", "causal sdpa (no mask)"]
HEADS, KV_HEADS, DIM = 8, 2, 64
BACKENDS = {0: "math", 1: "flash", 2: "efficient", 3: "cudnn", 4: "overrideable"}


def layout(t: int):
    import torch

    from cpo.layouts import PreferenceCollator

    half = t // 2
    feature = {"prompt_input_ids": [5] * half, "chosen_input_ids": [6] * half, "rejected_input_ids": [7] * half}
    batch = PreferenceCollator(0, packed=True, shared_prompt=True)([feature])
    return batch["unit_ids"], batch["branch_ids"], torch.Generator().manual_seed(0)


def useful_pairs(t: int) -> int:
    """Query-key pairs the shared-prefix rule allows: causal over prompt + chosen, rejected sees prompt + itself."""
    half = t // 2
    causal = lambda n: n * (n + 1) // 2  # noqa: E731
    return causal(2 * half) + half * half + causal(half)


def step(path: str, q, k, v, unit_ids, branch_ids):
    import torch
    import torch.nn.functional as F

    g = HEADS // KV_HEADS
    if path == "paths (ours)":
        from cpo.path_attention import attention_paths, block_attention, block_regions, path_plan

        paths = path_plan(attention_paths(block_regions(unit_ids, branch_ids)), *unit_ids.shape)
        choice = torch._fused_sdp_choice(q, k, v, None, 0.0, True, enable_gqa=True)
        return block_attention(q, k, v, paths, DIM**-0.5), choice
    if path == "query-chunked":
        from query_chunked import query_chunked_attention

        from cpo.path_attention import block_regions

        return query_chunked_attention(q, k, v, block_regions(unit_ids, branch_ids), DIM**-0.5), None
    if path == "flex (compiled)":
        from torch.nn.attention.flex_attention import create_block_mask, flex_attention

        units, branches = unit_ids[0], branch_ids[0]

        def rule(b, h, qi, ki):
            return (qi >= ki) & (units[qi] == units[ki]) & ((branches[ki] == 0) | (branches[ki] == branches[qi]))

        mask = create_block_mask(rule, None, None, q.shape[2], q.shape[2], device=q.device.type)
        return torch.compile(flex_attention)(q, k, v, block_mask=mask, enable_gqa=True), None
    k, v = k.repeat_interleave(g, dim=1), v.repeat_interleave(g, dim=1)
    if path == "causal sdpa (no mask)":
        choice = torch._fused_sdp_choice(q, k, v, None, 0.0, True)
        return F.scaled_dot_product_attention(q, k, v, is_causal=True), choice
    from cpo.layouts import block_mask

    mask = block_mask(unit_ids, branch_ids)
    choice = torch._fused_sdp_choice(q, k, v, mask, 0.0, False)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask), choice


def worker(args) -> None:
    import torch

    limit_memory(args.limit_gib)
    unit_ids, branch_ids, gen = layout(args.T)
    length = unit_ids.shape[1]
    q = torch.randn(1, HEADS, length, DIM, generator=gen, requires_grad=True)
    k = torch.randn(1, KV_HEADS, length, DIM, generator=gen, requires_grad=True)
    v = torch.randn(1, KV_HEADS, length, DIM, generator=gen, requires_grad=True)
    times = []
    for i in range(args.repeats + 1):  # the first call compiles / warms up
        base = rss_bytes()
        reset_peak_rss()
        with Timer() as timer:
            out, choice = step(args.path, q, k, v, unit_ids, branch_ids)
            out.backward(torch.ones_like(out))
        peak = peak_rss_bytes() - base
        if i:
            times.append(timer.seconds)
        q.grad = k.grad = v.grad = None
    seconds = min(times)
    flops = 2.5 * 4 * DIM * HEADS * useful_pairs(args.T)
    emit({"status": "ok", "L": length, "seconds": round(seconds, 4), "peak_extra_gib": round(peak / 2**30, 3),
          "useful_gflop_per_s": round(flops / seconds / 1e9, 2),
          "kernel": BACKENDS.get(int(choice), str(choice)) if choice is not None else None})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--path", choices=PATHS)
    parser.add_argument("--paths", nargs="+", default=PATHS, choices=PATHS)
    parser.add_argument("--T", type=int, nargs="+", default=[2048, 4096, 8192, 16384])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--limit_gib", type=float, default=20.0)
    parser.add_argument("--timeout", type=float, default=1800.0)
    args = parser.parse_args()
    if args.worker:
        args.T = args.T[0]
        return worker(args)
    emit({"benchmark": "attention", "machine": machine(), "heads": HEADS, "kv_heads": KV_HEADS, "dim": DIM,
          "limit_gib": args.limit_gib})
    for t in args.T:
        for path in args.paths:
            result = run_worker(["--path", path, "--T", str(t), "--repeats", str(args.repeats), "--limit_gib",
                                 str(args.limit_gib)], args.timeout)
            emit({"T": t, "path": path, **result})


if __name__ == "__main__":
    main()

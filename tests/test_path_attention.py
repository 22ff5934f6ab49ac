"""Path attention (cpo.path_attention): the regions and paths against the dense mask, the kernel against the naive
dense-mask attention (fp64 values and gradients), whole models at a length where the dense mask is large against
the padded reference, and path attention building no (L, L) tensor. When the trainer uses it: tests/test_routes.py."""

import copy

import pytest
import torch
from helpers import OpRecorder, tiny_llama, tiny_qwen2

from cpo.layouts import PreferenceCollator, block_mask
from cpo.modeling import HeadInputCapture, forward_logps, lm_head_of
from cpo.path_attention import (
    PATH_ATTENTION,
    AttentionPath,
    attention_paths,
    block_attention,
    block_regions,
    naive_block_attention,
    path_plan,
    restore_sdpa,
    use_path_attention,
)


def features(lengths, vocab=50, seed=1):
    gen = torch.Generator().manual_seed(seed)

    def ids(n):
        return torch.randint(3, vocab, (n,), generator=gen).tolist()

    return [{"prompt_input_ids": ids(p), "chosen_input_ids": ids(c), "rejected_input_ids": ids(r), "row_index": i}
            for i, (p, c, r) in enumerate(lengths)]


LAYOUTS = [dict(packed=True), dict(shared_prompt=True), dict(packed=True, shared_prompt=True),
           dict(packed=True, shared_prompt=True, max_row_tokens=0), dict(packed=True, max_row_tokens=0)]
LENGTHS = [(7, 5, 3), (2, 9, 4), (1, 1, 1), (30, 12, 20)]


def test_paths_of_a_shared_pair_by_hand():
    """prompt 0-2, chosen 3-4, rejected 5: path 1 is prompt + chosen (all kept), path 2 prompt + rejected (1 kept)."""
    batch = PreferenceCollator(0, shared_prompt=True)(features([(3, 2, 1)]))
    paths = attention_paths(block_regions(batch["unit_ids"], batch["branch_ids"]))
    assert paths == [AttentionPath(0, ((0, 5),), 5), AttentionPath(0, ((0, 3), (5, 6)), 1)]


def test_plan_of_two_rows_by_hand():
    """Rows of 8 tokens. Row 0 holds the shared pair above: paths ``a`` (5 tokens) and ``b`` (prompt + rejected, 4,
    1 kept). Row 1 holds, packed, one sequence ``c`` of 7 tokens, or two, ``d`` and ``e``, of 4.

    ``c, a, b``, longest first: ``c`` and ``a`` padded to 7 cost 2 * 49 = 98 <= 1.5 * (49 + 25); adding ``b``,
    3 * 49 = 147 > 1.5 * (74 + 16), so ``b`` runs alone. ``a, b, d, e`` pad to 5: 4 * 25 = 100 <= 1.5 * 73, one
    batch. The scatter sends every kept token to its slot, the rest (row 0's padding) to the zero row."""
    a, b = AttentionPath(0, ((0, 5),), 5), AttentionPath(0, ((0, 3), (5, 6)), 1)
    c = AttentionPath(1, ((0, 7),), 7)
    d, e = AttentionPath(1, ((0, 4),), 4), AttentionPath(1, ((4, 8),), 4)
    plan = path_plan([a, b, c], 2, 8)
    assert [(g.count, g.width) for g in plan.groups] == [(2, 7), (1, 4)]
    assert plan.groups[0].gather.tolist() == [8, 9, 10, 11, 12, 13, 14] + [0, 1, 2, 3, 4, 0, 0]
    assert plan.groups[1].gather.tolist() == [0, 1, 2, 5]
    assert plan.scatter.tolist() == [7, 8, 9, 10, 11, 17, 18, 18] + [0, 1, 2, 3, 4, 5, 6, 18]
    plan = path_plan([a, b, d, e], 2, 8)
    assert [(g.count, g.width) for g in plan.groups] == [(4, 5)]
    assert plan.groups[0].gather.tolist() == [0, 1, 2, 3, 4, 0, 1, 2, 5, 0, 8, 9, 10, 11, 0, 12, 13, 14, 15, 0]
    assert plan.scatter.tolist() == [0, 1, 2, 3, 4, 8, 20, 20] + [10, 11, 12, 13, 15, 16, 17, 18]


@pytest.mark.parametrize("layout", LAYOUTS)
def test_regions_and_paths_cover_exactly_the_dense_mask(layout):
    batch = PreferenceCollator(0, **layout)(features(LENGTHS))
    unit_ids, branch_ids = batch["unit_ids"], batch["branch_ids"]
    rows, length = unit_ids.shape
    from_regions = torch.zeros(rows, length, length, dtype=torch.bool)
    for reg in block_regions(unit_ids, branch_ids):
        for s, e in reg.context:
            from_regions[reg.row, reg.start : reg.end, s:e] = True
        for q in range(reg.start, reg.end):
            from_regions[reg.row, q, reg.start : q + 1] = True
    from_paths = torch.zeros_like(from_regions)
    for path in attention_paths(block_regions(unit_ids, branch_ids)):
        tokens = [t for s, e in path.spans for t in range(s, e)]
        for i in range(len(tokens) - path.keep, len(tokens)):  # a kept query sees the path's tokens up to itself
            from_paths[path.row, tokens[i], tokens[: i + 1]] = True
    valid = unit_ids >= 0
    dense = block_mask(unit_ids, branch_ids)[:, 0]
    assert torch.equal(from_regions[valid], dense[valid])
    assert torch.equal(from_paths[valid], dense[valid])
    assert not from_paths[~valid].any()


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("heads,kv_heads,slack", [(4, 4, 1.5), (4, 2, 1.5), (6, 1, 1.5), (4, 2, 1.0), (4, 2, 1e9)])
def test_block_attention_equals_dense_mask_attention(layout, heads, kv_heads, slack):
    """Every path alone where lengths differ (slack 1), the default grouping, and all paths in one padded batch."""
    batch = PreferenceCollator(0, **layout)(features(LENGTHS))
    unit_ids, branch_ids = batch["unit_ids"], batch["branch_ids"]
    rows, length = unit_ids.shape
    gen = torch.Generator().manual_seed(0)
    q = torch.randn(rows, heads, length, 8, dtype=torch.float64, generator=gen, requires_grad=True)
    k = torch.randn(rows, kv_heads, length, 8, dtype=torch.float64, generator=gen, requires_grad=True)
    v = torch.randn(rows, kv_heads, length, 5, dtype=torch.float64, generator=gen, requires_grad=True)
    weights = torch.randn(rows, heads, length, 5, dtype=torch.float64, generator=gen)
    plan = path_plan(attention_paths(block_regions(unit_ids, branch_ids)), rows, length, slack)
    got = block_attention(q, k, v, plan, 0.3)
    expected = naive_block_attention(q, k, v, unit_ids, branch_ids, 0.3)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
    got_grads = torch.autograd.grad((got * weights).sum(), (q, k, v))
    expected_grads = torch.autograd.grad((expected * weights).sum(), (q, k, v))
    for a, b in zip(got_grads, expected_grads):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


LONG = [(1536, 768, 1024), (40, 300, 12)]  # a shared row of 3328 tokens: its dense mask has 11M entries


def logps_and_grads(model, batch, attn_impl, chunked=False):
    """Token log-probs in sequence order, and the gradients of their weighted sum (the chunked head with
    ``chunked``; the batch on the model's device)."""
    model = copy.deepcopy(model)
    head, module, _ = lm_head_of(model) if chunked else (None, None, "")
    capture = HeadInputCapture(module) if chunked else None
    out = forward_logps(model, batch, attn_impl=attn_impl, dtype=torch.float32, capture=capture, head=head)
    # a weighted sum, so every token's log-prob reaches the gradients with its own weight
    device = out.token_logps.device
    weights = torch.linspace(0.5, 1.5, len(out.token_logps), device=device)
    order = torch.argsort(batch["target_seq"] * 10**6 + torch.arange(len(batch["target_seq"]), device=device))
    logps = out.token_logps[order]
    (logps * weights).sum().backward()
    return logps.detach(), {n: p.grad for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("build", [tiny_qwen2, tiny_llama])
@pytest.mark.parametrize("layout", [dict(packed=True, max_row_tokens=0),
                                    dict(packed=True, shared_prompt=True, max_row_tokens=0)])
def test_long_packed_and_shared_rows_equal_the_padded_reference(build, layout):
    model = build(257, attn_implementation="sdpa", max_position_embeddings=4096)
    feats = features(LONG, vocab=257)
    ref_logps, ref_grads = logps_and_grads(model, PreferenceCollator(0)(feats), "sdpa")
    assert use_path_attention(model) == PATH_ATTENTION
    got_logps, got_grads = logps_and_grads(model, PreferenceCollator(0, **layout)(feats), PATH_ATTENTION)
    torch.testing.assert_close(got_logps, ref_logps, rtol=1e-5, atol=1e-5)
    assert got_grads.keys() == ref_grads.keys()
    for name, grad in ref_grads.items():  # sums over 3k tokens: fp32 rounding relative to the largest entry
        err = (got_grads[name] - grad).abs().max() / grad.abs().max()
        assert err < 1e-5, (name, err.item())


def test_path_attention_builds_no_length_squared_tensor():
    """The largest tensor of a forward and backward, against L^2 for the row: the dense mask (the same model
    with sdpa and ``block_mask``) builds one of L^2; the path attention none beyond the (L, V) logits, 14x smaller."""
    model = tiny_qwen2(257, attn_implementation="sdpa", max_position_embeddings=4096)
    batch = PreferenceCollator(0, packed=True, shared_prompt=True, max_row_tokens=0)(features(LONG, vocab=257))
    length = batch["input_ids"].shape[1]
    length_sq = length**2
    sizes = {}
    for name in ("sdpa", PATH_ATTENTION):
        if name == PATH_ATTENTION:
            use_path_attention(model)
        with OpRecorder() as largest:
            logps_and_grads(model, batch, name)
        sizes[name] = largest.numel / length_sq
    assert sizes["sdpa"] >= 1.0, sizes
    assert sizes[PATH_ATTENTION] <= length * 257 / length_sq < 1 / 14, sizes


def test_path_attention_leaves_other_calls_to_sdpa_and_is_not_saved(tmp_path):
    """After the switch, a padded batch (a 2D mask, as evaluation and generation send) gives sdpa's logits exactly;
    the saved config names no attention implementation; restore_sdpa switches back."""
    model = tiny_qwen2(257, attn_implementation="sdpa")
    ids = torch.randint(3, 257, (2, 9), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0
    with torch.no_grad():
        expected = model(input_ids=ids, attention_mask=mask).logits
        assert use_path_attention(model) == PATH_ATTENTION
        got = model(input_ids=ids, attention_mask=mask).logits
    assert torch.equal(got, expected)
    model.save_pretrained(tmp_path)
    assert "cpo_paths" not in (tmp_path / "config.json").read_text()
    assert restore_sdpa(model) == "sdpa"


def test_a_sliding_window_layer_gets_the_windowed_dense_mask():
    """Qwen2 with a 16-token window on every layer: packed and shared rows longer than the window equal the padded
    reference, whose mask transformers builds with the window (the window counts positions, as in padded rows)."""
    model = tiny_qwen2(257, attn_implementation="sdpa", use_sliding_window=True, sliding_window=16,
                       max_window_layers=0, layer_types=["sliding_attention"] * 2)
    feats = features([(30, 20, 25), (9, 3, 40)], vocab=257)
    ref_logps, ref_grads = logps_and_grads(model, PreferenceCollator(0)(feats), "sdpa")
    unwindowed = tiny_qwen2(257, attn_implementation="sdpa")  # the same seed: the same weights, no window
    use_path_attention(model)
    batch = PreferenceCollator(0, packed=True, shared_prompt=True, max_row_tokens=0)(feats)
    got_logps, got_grads = logps_and_grads(model, batch, PATH_ATTENTION)
    torch.testing.assert_close(got_logps, ref_logps, rtol=1e-5, atol=1e-5)
    for name, grad in ref_grads.items():
        assert (got_grads[name] - grad).abs().max() <= 1e-5 * grad.abs().max(), name
    no_window, _ = logps_and_grads(unwindowed, PreferenceCollator(0)(feats), "sdpa")
    assert (no_window - ref_logps).abs().max() > 1e-3  # the window matters at these lengths

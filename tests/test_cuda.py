"""The fast paths on CUDA in bf16, against the padded reference: the chunked head, path attention, packing and prefix
sharing. Every test is marked ``cuda``: without a CUDA device they are deselected (tests/conftest.py), not skipped;
``python benchmarks/gpu.py`` runs them on a GPU.

The rule for bf16 (apple/ml-cross-entropy's): against a ground truth in fp64 computed from the same bf16 values,
the fast path is no less accurate than the naive path at bf16 (mean absolute error, with a small slack where the
two run different fused kernels whose accumulation order we do not choose).
"""

import copy

import pytest
import torch
from helpers import OpRecorder, assert_no_less_accurate, tiny_qwen2
from test_chunked import make_case, run
from test_layouts import LAYOUTS
from test_path_attention import LAYOUTS as ATTENTION_LAYOUTS
from test_path_attention import LENGTHS, LONG, features, logps_and_grads

from cpo.chunked import LMHead
from cpo.layouts import PreferenceCollator
from cpo.path_attention import (
    PATH_ATTENTION,
    attention_paths,
    block_attention,
    block_regions,
    naive_block_attention,
    path_plan,
    use_path_attention,
)

pytestmark = pytest.mark.cuda
# fused kernels against our matmul + softmax: the same maths in other summation orders, and path attention sums the
# prompt keys' gradients from two paths, each rounded to bf16 (measured on CPU: up to 1.052x the naive error)
KERNEL_SLACK = 1.1


@pytest.fixture
def device():
    return torch.device("cuda")


def on(device, dtype, hidden, head, *index):
    head = LMHead(head.weight.to(device, dtype), head.bias.to(device, dtype), head.logit_scale, head.softcap)
    return (hidden.to(device, dtype), head, *(t.to(device) for t in index))


@pytest.mark.parametrize("seed", [1, 13])
def test_chunked_head_bf16(device, seed):
    """Values and the three gradients (hidden, weight, bias) of the CPO loss at a vocabulary of 4099."""
    hidden, head, positions, targets, seqs = make_case(pairs=4, length=65, vocab=4099, hidden_size=64, seed=seed)
    truth = run("naive", *on(device, torch.float64, hidden, head, positions, targets, seqs), 4, "sigmoid")
    low = on(device, torch.bfloat16, hidden.bfloat16(), head, positions, targets, seqs)
    ours = run("chunked", *low, 4, "sigmoid", 64)
    naive = run("naive", *low, 4, "sigmoid")
    assert_no_less_accurate([*ours[:2], *ours[3]], [*naive[:2], *naive[3]], [*truth[:2], *truth[3]])


@pytest.mark.parametrize("layout", ATTENTION_LAYOUTS)
def test_path_attention_bf16(device, layout):
    """block_attention (fused causal sdpa over batches of paths) against the dense-mask attention: output and q, k, v gradients;
    8 query heads on 2 key/value heads of dimension 64, as Qwen2-0.5B has (14 on 2)."""
    batch = PreferenceCollator(0, **layout)(features(LENGTHS))
    unit_ids, branch_ids = batch["unit_ids"].to(device), batch["branch_ids"].to(device)
    rows, length = unit_ids.shape
    gen = torch.Generator().manual_seed(0)
    qkv = [torch.randn(rows, h, length, 64, generator=gen).to(device, torch.bfloat16) for h in (8, 2, 2)]
    weights = torch.randn(rows, 8, length, 64, generator=gen).to(device)
    paths = path_plan(attention_paths(block_regions(unit_ids.cpu(), branch_ids.cpu())), rows, length).to(device)

    def outputs(fn, dtype):
        q, k, v = (t.to(dtype).requires_grad_(True) for t in qkv)
        out = fn(q, k, v)
        return [out, *torch.autograd.grad((out * weights.to(dtype)).sum(), (q, k, v))]

    def naive(q, k, v):
        return naive_block_attention(q, k, v, unit_ids, branch_ids, 0.125)

    truth = outputs(naive, torch.float64)
    with OpRecorder() as recorder:
        fast = outputs(lambda q, k, v: block_attention(q, k, v, paths, 0.125), torch.bfloat16)
    assert set(recorder.kernels) == {"flash"}, recorder.kernels
    assert_no_less_accurate(fast, outputs(naive, torch.bfloat16), truth, KERNEL_SLACK, ["out", "q", "k", "v"])


def token_outputs(model, feats, layout, device, dtype):
    """Token log-probs and every gradient (one flat vector) of a copy of ``model`` in ``dtype`` on ``device``: the
    padded layout with full logits (``layout`` None), or ``layout`` with path attention and the chunked head."""
    model = copy.deepcopy(model).to(device, dtype)
    attn = use_path_attention(model) if layout is not None else "sdpa"
    batch = PreferenceCollator(0, **(layout or {}))(feats)
    logps, grads = logps_and_grads(model, {k: v.to(device) for k, v in batch.items()}, attn, layout is not None)
    return [logps, torch.cat([grads[name].flatten() for name in sorted(grads)])]


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_packing_and_prefix_sharing_bf16(device, layout):
    """A whole tiny Qwen2 (sdpa) in bf16: packed and prefix-shared rows with path attention and the chunked head,
    against the padded layout with full logits at bf16, per token (2.4k of them) and per gradient entry; the truth
    is the padded layout in fp64."""
    model = tiny_qwen2(257, attn_implementation="sdpa", max_position_embeddings=4096)
    feats = features(LONG + LENGTHS, vocab=257)
    truth = token_outputs(model, feats, None, device, torch.float64)
    naive = token_outputs(model, feats, None, device, torch.bfloat16)
    fast = token_outputs(model, feats, LAYOUTS[layout], device, torch.bfloat16)
    assert_no_less_accurate(fast, naive, truth, KERNEL_SLACK, ["token log-probs", "gradients"])


def test_the_default_layout_runs_flash_and_builds_no_square(device):
    """The trainer's default layout (everything packed into one shared row, path attention) on CUDA in bf16: every
    attention call is FlashAttention, and no tensor of (L, L) exists for the row's length L."""
    model = tiny_qwen2(257, attn_implementation="sdpa", max_position_embeddings=4096).to(device, torch.bfloat16)
    use_path_attention(model)
    feats = features(LONG, vocab=257)
    batch = {k: v.to(device) for k, v in PreferenceCollator(0, **LAYOUTS["both-one-row"])(feats).items()}
    length = batch["input_ids"].shape[1]
    with OpRecorder(length) as recorder:
        logps_and_grads(model, batch, PATH_ATTENTION, chunked=True)
    assert set(recorder.kernels) == {"flash"} and recorder.squares == 0, (recorder.kernels, recorder.squares)
    assert recorder.numel < length**2 / 10

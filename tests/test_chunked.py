"""The chunked head against the naive reference: values and gradients (hidden, weight, bias), every loss type."""

import pytest
import torch
from helpers import assert_no_less_accurate

from cpo.chunked import KEEP_BYTES, LMHead, chunked_token_logps, default_chunk_size, naive_token_logps
from cpo.logprobs import sequence_logps
from cpo.loss_settings import LossSettings
from cpo.losses import cpo_objective

LOSS_TYPES = ["sigmoid", "hinge", "ipo", "simpo", "sft"]


def scored_tokens(rows: int, length: int, vocab: int, gen, min_prompt: int = 1):
    """Flat scored positions of ``rows`` sequences laid out as a (rows, length) batch, chosen rows first:
    each row has a random prompt length and scores the rest, so some rows score a single token."""
    positions, targets, seqs = [], [], []
    for r in range(rows):
        prompt = int(torch.randint(min_prompt, length, (1,), generator=gen))
        n = length - prompt
        positions += [r * length + prompt - 1 + j for j in range(n)]
        targets += torch.randint(0, vocab, (n,), generator=gen).tolist()
        seqs += [r] * n
    return torch.tensor(positions), torch.tensor(targets), torch.tensor(seqs)


def objective(token_logps, seqs, pairs, loss_type, alpha=0.0):
    sums, counts = sequence_logps(token_logps, seqs, 2 * pairs)
    loss = cpo_objective(sums, counts, num_pairs=pairs, num_chosen_tokens=float(counts[:pairs].sum()),
                         settings=LossSettings(loss_type=loss_type, beta=0.1, alpha=alpha)).loss
    return loss, sums, counts


def run(path, hidden, head, positions, targets, seqs, pairs, loss_type, chunk_size=None, alpha=0.0, keep_bytes=KEEP_BYTES):
    hidden = hidden.detach().clone().requires_grad_(True)
    weight = head.weight.detach().clone().requires_grad_(True)
    bias = None if head.bias is None else head.bias.detach().clone().requires_grad_(True)
    h = LMHead(weight, bias, head.logit_scale, head.softcap)
    flat = hidden.reshape(-1, hidden.shape[-1])[positions]
    if path == "chunked":
        token_logps, means = chunked_token_logps(flat, h, targets, chunk_size, keep_bytes)
    else:
        token_logps, means = naive_token_logps(flat, h, targets)
    loss, sums, counts = objective(token_logps, seqs, pairs, loss_type, alpha)
    loss.backward()
    grads = (hidden.grad, weight.grad, None if bias is None else bias.grad)
    return loss.detach(), sums.detach(), means, grads


def make_case(pairs=3, length=47, vocab=123, hidden_size=16, bias=True, scale=1.0, softcap=None, seed=0):
    gen = torch.Generator().manual_seed(seed)
    hidden = torch.randn(2 * pairs, length, hidden_size, generator=gen)
    weight = torch.randn(vocab, hidden_size, generator=gen) * 0.5
    b = torch.randn(vocab, generator=gen) if bias else None
    positions, targets, seqs = scored_tokens(2 * pairs, length, vocab, gen)
    return hidden, LMHead(weight, b, scale, softcap), positions, targets, seqs


def assert_same(a, b, rtol=1e-5, atol=1e-6):
    for x, y in zip(a, b):
        if x is None:
            assert y is None
            continue
        torch.testing.assert_close(x, y, rtol=rtol, atol=atol)


# the backward from the probabilities the forward kept (the default at these sizes), and from recomputed logits
KEEP = [KEEP_BYTES, 0]


@pytest.mark.parametrize("loss_type", LOSS_TYPES)
@pytest.mark.parametrize("chunk_size", [1, 7, 64, 10_000])
@pytest.mark.parametrize("keep_bytes", KEEP)
def test_values_and_gradients_match_naive(loss_type, chunk_size, keep_bytes):
    hidden, head, positions, targets, seqs = make_case()
    ours = run("chunked", hidden, head, positions, targets, seqs, 3, loss_type, chunk_size, keep_bytes=keep_bytes)
    ref = run("naive", hidden, head, positions, targets, seqs, 3, loss_type)
    assert_same(ours[:3], ref[:3])
    assert_same(ours[3], ref[3])


@pytest.mark.parametrize("scale,softcap,bias", [(1.0, None, False), (0.25, None, True), (1.0, 3.0, True), (2.0, 5.0, False)])
@pytest.mark.parametrize("keep_bytes", KEEP)
def test_logit_scale_softcap_and_bias(scale, softcap, bias, keep_bytes):
    hidden, head, positions, targets, seqs = make_case(bias=bias, scale=scale, softcap=softcap, seed=3)
    # AlphaPO on per-token averages (SimPO-style), where its gradients have a sane scale
    ours = run("chunked", hidden, head, positions, targets, seqs, 3, "simpo", 5, alpha=0.2, keep_bytes=keep_bytes)
    ref = run("naive", hidden, head, positions, targets, seqs, 3, "simpo", alpha=0.2)
    assert_same(ours[:3], ref[:3])
    assert_same(ours[3], ref[3])


def test_rows_that_are_all_prompt_but_one_token():
    gen = torch.Generator().manual_seed(5)
    hidden = torch.randn(4, 9, 8, generator=gen)
    head = LMHead(torch.randn(31, 8, generator=gen), None)
    positions = torch.tensor([7, 9 + 7, 18 + 7, 27 + 7])  # each row scores only its last position
    targets = torch.randint(0, 31, (4,), generator=gen)
    seqs = torch.arange(4)
    for loss_type in LOSS_TYPES:
        ours = run("chunked", hidden, head, positions, targets, seqs, 2, loss_type, 3)
        ref = run("naive", hidden, head, positions, targets, seqs, 2, loss_type)
        assert_same(ours[:3], ref[:3])
        assert_same(ours[3], ref[3])


def test_tied_weights_accumulate_both_gradients():
    """With the head tied to the input embedding, the weight gets the embedding's and the head's gradient."""
    gen = torch.Generator().manual_seed(7)
    ids = torch.randint(0, 50, (2, 12), generator=gen)
    positions, targets, seqs = torch.arange(3, 24), torch.randint(0, 50, (21,), generator=gen), torch.tensor([0] * 9 + [1] * 12)
    grads = {}
    for path in ("chunked", "naive"):
        emb = torch.nn.Embedding(50, 16)
        with torch.no_grad():
            emb.weight.copy_(torch.randn(50, 16, generator=torch.Generator().manual_seed(8)))
        hidden = torch.tanh(emb(ids)).reshape(-1, 16)[positions]
        head = LMHead(emb.weight)  # the same Parameter
        fn = chunked_token_logps if path == "chunked" else naive_token_logps
        token_logps = fn(hidden, head, targets, 4) if path == "chunked" else fn(hidden, head, targets)
        objective(token_logps[0], seqs, 1, "sigmoid")[0].backward()
        grads[path] = emb.weight.grad
    torch.testing.assert_close(grads["chunked"], grads["naive"], rtol=1e-5, atol=1e-6)


def test_frozen_head_gets_no_gradient_and_empty_input_is_fine():
    hidden, head, positions, targets, seqs = make_case(seed=11)
    flat = hidden.reshape(-1, hidden.shape[-1])[positions].requires_grad_(True)
    logps, _ = chunked_token_logps(flat, head, targets, 8)  # head tensors do not require grad
    logps.sum().backward()
    assert flat.grad is not None and head.weight.grad is None
    empty, means = chunked_token_logps(flat[:0], head, targets[:0], 8)
    assert empty.shape == (0,) and means.shape == (0,)


@pytest.mark.parametrize("seed", [1, 13])
@pytest.mark.parametrize("keep_bytes", KEEP)
def test_bf16_error_no_worse_than_naive_bf16(seed, keep_bytes):
    """apple/ml-cross-entropy's rule: against an fp32 ground truth, the chunked bf16 path is no less accurate
    than the naive reference at bf16 (values and all three gradients)."""
    hidden, head, positions, targets, seqs = make_case(pairs=2, length=33, vocab=257, hidden_size=32, seed=seed)
    truth = run("naive", hidden.double(), LMHead(head.weight.double(), head.bias.double()), positions, targets, seqs, 2, "sigmoid")
    low = (hidden.bfloat16(), LMHead(head.weight.bfloat16(), head.bias.bfloat16()))
    ours = run("chunked", *low, positions, targets, seqs, 2, "sigmoid", 16, keep_bytes=keep_bytes)
    naive = run("naive", *low, positions, targets, seqs, 2, "sigmoid")
    assert_no_less_accurate([*ours[:2], *ours[3]], [*naive[:2], *naive[3]], [*truth[:2], *truth[3]])


def test_kept_probabilities_survive_a_second_backward_and_the_budget_is_exact():
    """With ``retain_graph`` the backward runs twice on the kept softmax: both give the naive gradient (the first
    must not overwrite what the second reads). The probabilities are kept exactly when ``4 N V <= keep_bytes``."""
    hidden, head, positions, targets, seqs = make_case(seed=17)
    flat = hidden.reshape(-1, hidden.shape[-1])[positions]
    n, vocab = flat.shape[0], head.weight.shape[0]
    weights = torch.linspace(0.5, 1.5, n)
    h = flat.clone().requires_grad_(True)
    expected = torch.autograd.grad((naive_token_logps(h, head, targets)[0] * weights).sum(), h)[0]
    for keep_bytes, kept in ((4 * n * vocab, True), (4 * n * vocab - 1, False)):
        logps, _ = chunked_token_logps(h, head, targets, 7, keep_bytes)
        assert (len(logps.grad_fn.saved_tensors) > 5) == kept  # hidden, weight, bias, targets, lse, + the chunks
        first = torch.autograd.grad((logps * weights).sum(), h, retain_graph=True)[0]
        second = torch.autograd.grad((logps * weights).sum(), h)[0]
        torch.testing.assert_close(first, expected, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(second, expected, rtol=1e-5, atol=1e-6)
    with torch.no_grad():  # nothing to keep them for
        logps, _ = chunked_token_logps(h, head, targets, 7, 4 * n * vocab)
    assert logps.grad_fn is None
    torch.testing.assert_close(logps, naive_token_logps(h, head, targets)[0], rtol=1e-5, atol=1e-6)


def test_default_chunk_size_budget():
    assert default_chunk_size(32000) == 262  # 32 MiB / (4 B * 32000)
    assert default_chunk_size(8000) == 1048
    assert default_chunk_size(151936) == 256  # 55 by the budget: too few rows for an efficient matmul
    assert default_chunk_size(10**9, min_rows=1) == 1

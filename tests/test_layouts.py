"""Batch layouts: hand-checked collation and masks, then packed / prefix-shared forward passes against the padded
reference on tiny Qwen2 and Llama models (log-probs, losses, metrics and gradients within 1e-5 in fp32)."""

import copy

import pytest
import torch
from helpers import tiny_llama, tiny_qwen2, train_args, train_logs, zen

from cpo import CPOTrainer
from cpo.layouts import PreferenceCollator, block_mask
from cpo.logprobs import sequence_logps
from cpo.loss_settings import LossSettings
from cpo.losses import cpo_objective
from cpo.modeling import HeadInputCapture, forward_logps, lm_head_of
from cpo.path_attention import PATH_ATTENTION, use_path_attention

PAIR = {"prompt_input_ids": [1, 2, 3], "chosen_input_ids": [4, 5], "rejected_input_ids": [6], "row_index": 9}


def test_padded_layout_by_hand():
    batch = PreferenceCollator(pad_token_id=0)([PAIR])
    assert batch["input_ids"].tolist() == [[1, 2, 3, 4, 5], [1, 2, 3, 6, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1, 1], [1, 1, 1, 1, 0]]
    # position 2 (token 3) predicts 4, position 3 predicts 5; in row 1 (offset 5) position 2 predicts 6
    assert batch["target_positions"].tolist() == [2, 3, 7]
    assert batch["target_ids"].tolist() == [4, 5, 6] and batch["target_seq"].tolist() == [0, 0, 1]
    assert batch["row_index"].tolist() == [9]


def test_prefix_shared_layout_by_hand():
    batch = PreferenceCollator(pad_token_id=0, shared_prompt=True)([PAIR])
    assert batch["input_ids"].tolist() == [[1, 2, 3, 4, 5, 6]]
    assert batch["position_ids"].tolist() == [[0, 1, 2, 3, 4, 3]]  # rejected continues from the prompt's end
    assert batch["branch_ids"].tolist() == [[0, 0, 0, 1, 1, 2]]
    # the last prompt token (position 2) predicts both the first chosen and the first rejected token
    assert batch["target_positions"].tolist() == [2, 3, 2]
    assert batch["target_ids"].tolist() == [4, 5, 6] and batch["target_seq"].tolist() == [0, 0, 1]
    mask = block_mask(batch["unit_ids"], batch["branch_ids"])[0, 0].int().tolist()
    assert mask == [
        [1, 0, 0, 0, 0, 0],
        [1, 1, 0, 0, 0, 0],
        [1, 1, 1, 0, 0, 0],
        [1, 1, 1, 1, 0, 0],
        [1, 1, 1, 1, 1, 0],
        [1, 1, 1, 0, 0, 1],  # rejected: the prompt and itself, not the chosen tokens
    ]


def test_packed_layout_rows_and_padding_mask():
    other = {"prompt_input_ids": [7], "chosen_input_ids": [8], "rejected_input_ids": [9, 10, 11], "row_index": 3}
    batch = PreferenceCollator(pad_token_id=0, packed=True)([PAIR, other])
    # sequences of 5, 4, 2, 4 tokens in rows of at most 5 (the longest): first-fit decreasing gives
    # [5], [4], [4], [2]: the 2 fits next to neither 4 (room 1)
    assert batch["input_ids"].shape == (4, 5)
    assert (batch["unit_ids"] >= 0).sum() == 15
    mask = block_mask(batch["unit_ids"], batch["branch_ids"])
    row = batch["unit_ids"][1]  # a 4-token sequence and one padding position
    assert (row < 0).sum() == 1
    for q in range(5):
        for k in range(5):
            same = row[q] == row[k] and row[q] >= 0
            expected = (same and k <= q) or (row[q] < 0 and q == k)
            assert bool(mask[1, 0, q, k]) == expected
    one_row = PreferenceCollator(pad_token_id=0, packed=True, max_row_tokens=0)([PAIR, other])
    assert one_row["input_ids"].shape == (1, 15)


def pairs_with_varied_lengths(vocab, max_length=24, seed=0):
    gen = torch.Generator().manual_seed(seed)

    def ids(n):
        return torch.randint(3, vocab, (n,), generator=gen).tolist()

    return [
        {"prompt_input_ids": ids(5), "chosen_input_ids": ids(1), "rejected_input_ids": ids(7), "row_index": 0},
        {"prompt_input_ids": ids(max_length - 2), "chosen_input_ids": ids(2), "rejected_input_ids": ids(1), "row_index": 1},
        {"prompt_input_ids": ids(1), "chosen_input_ids": ids(9), "rejected_input_ids": ids(4), "row_index": 2},
        {"prompt_input_ids": ids(11), "chosen_input_ids": ids(6), "rejected_input_ids": ids(6), "row_index": 3},
    ]


def layout_outputs(model, features, collator, loss_type, chunked):
    """Per-sequence log-probs, the loss, metric-like sums and all gradients for one batch."""
    model = copy.deepcopy(model)
    model.zero_grad()
    capture = head = None
    if chunked:
        head, module, _ = lm_head_of(model)
        capture = HeadInputCapture(module)
    batch = collator(features)
    out = forward_logps(model, batch, attn_impl=model.config._attn_implementation, dtype=torch.float32,
                        capture=capture, head=head)
    b = len(features)
    sums, counts = sequence_logps(out.token_logps, batch["target_seq"], 2 * b)
    obj = cpo_objective(sums, counts, num_pairs=b, num_chosen_tokens=float(counts[:b].sum()),
                        settings=LossSettings(loss_type=loss_type, beta=0.1))
    loss, losses, cr, rr = obj.loss, obj.losses, obj.chosen_rewards, obj.rejected_rewards
    loss.backward()
    is_chosen = batch["target_seq"] < b
    metrics = torch.stack([cr.sum(), rr.sum(), out.token_logit_means[is_chosen].sum(),
                           out.token_logit_means[~is_chosen].sum()]).float()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return sums.detach(), loss.detach(), losses.detach(), metrics, grads


LAYOUTS = {"packed": dict(packed=True), "shared": dict(shared_prompt=True), "both": dict(packed=True, shared_prompt=True),
           "both-one-row": dict(packed=True, shared_prompt=True, max_row_tokens=0)}


@pytest.mark.parametrize("arch", ["qwen2", "llama"])
@pytest.mark.parametrize("attn", ["sdpa", "eager", "paths"])
@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("loss_type,chunked", [("sigmoid", True), ("simpo", False), ("ipo", True)])
def test_layouts_equal_padded_reference(arch, attn, layout, loss_type, chunked):
    """Against the padded layout with the model's own attention (sdpa for ``paths``: fused causal sdpa over the paths)."""
    build = tiny_qwen2 if arch == "qwen2" else tiny_llama
    model = build(257, attn_implementation="sdpa" if attn == "paths" else attn)
    features = pairs_with_varied_lengths(257)
    ref = layout_outputs(model, features, PreferenceCollator(0), loss_type, chunked)
    if attn == "paths":
        assert use_path_attention(model) == PATH_ATTENTION
    got = layout_outputs(model, features, PreferenceCollator(0, **LAYOUTS[layout]), loss_type, chunked)
    for a, b in zip(got[:4], ref[:4]):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    assert got[4].keys() == ref[4].keys()
    for name, grad in ref[4].items():
        torch.testing.assert_close(got[4][name], grad, rtol=1e-5, atol=1e-6, msg=name)


@pytest.mark.parametrize("loss_type", ["sigmoid", "simpo"])
def test_training_with_layouts_on_and_off_gives_the_same_losses(tmp_path, tok, loss_type):
    base, logs = tiny_qwen2(len(tok)), {}
    for name, flags in {"off": (False, False), "packed": (True, False), "shared": (False, True), "on": (None, None)}.items():
        args = train_args(tmp_path / name, padding_free=flags[0], prefix_sharing=flags[1], loss_type=loss_type)
        trainer = CPOTrainer(model=copy.deepcopy(base), args=args, processing_class=copy.deepcopy(tok),
                             train_dataset=zen("standard_preference"))
        collator = trainer.data_collator
        assert (collator.packed, collator.shared_prompt) == tuple(f is not False for f in flags)
        logs[name] = train_logs(trainer)
    for name in ("packed", "shared", "on"):
        for a, b in zip(logs[name], logs["off"]):
            for key in ("loss", "grad_norm", "nll_loss", "rewards/margins", "rewards/accuracies", "logits/chosen"):
                assert a[key] == pytest.approx(b[key], rel=1e-5, abs=1e-6), (name, key)

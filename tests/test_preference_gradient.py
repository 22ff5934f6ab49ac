"""The preference term alone trains (issue 20, fault 12): with cpo_alpha=0 one SGD step of CPOTrainer, on its default
path (chunked log-probs, the layout it picks), moves every weight by exactly -lr times the gradient of a naive
reference: full logits, hand-written losses, autograd. An MLX port of CPO once shipped a gradient that was always
zero; here that would fail twice (the step would not move, and it would not match the reference)."""

import copy

import pytest
import torch
import torch.nn.functional as F
from datasets import Dataset
from helpers import preference_rows, tiny_qwen2, train_args

from cpo import CPOTrainer

BETA, GAMMA, LR = 0.5, 0.3, 1.0


def naive_loss(model, rows, loss_type):
    """Mean over pairs of the loss written out by hand, from full (T, V) logits of prompt + completion."""
    logps = {}
    for side in ("chosen", "rejected"):
        out = []
        for row in rows:
            ids = torch.tensor(row["prompt_input_ids"] + row[f"{side}_input_ids"])
            n = len(row[f"{side}_input_ids"])
            token_logps = F.log_softmax(model(ids[None]).logits[0, :-1].float(), -1).gather(1, ids[1:, None])[:, 0]
            completion = token_logps[-n:]  # the completion's tokens, each predicted from what precedes it
            out.append(completion.mean() if loss_type in ("ipo", "simpo") else completion.sum())
        logps[side] = torch.stack(out)
    delta = logps["chosen"] - logps["rejected"]
    losses = {
        "sigmoid": lambda: -F.logsigmoid(BETA * delta),  # CPO Eq. 3
        "hinge": lambda: torch.relu(1 - BETA * delta),  # SLiC
        "ipo": lambda: (delta - 1 / (2 * BETA)) ** 2,  # IPO Eq. 17, no reference model
        "simpo": lambda: -F.logsigmoid(BETA * delta - GAMMA),  # SimPO Eq. 6
    }
    return losses[loss_type]().mean()


@pytest.mark.parametrize("loss_type", ["sigmoid", "hinge", "ipo", "simpo"])
def test_the_preference_term_alone_moves_the_weights_by_the_naive_gradient(tmp_path, tok, loss_type):
    base = tiny_qwen2(len(tok))
    args = train_args(tmp_path, loss_type=loss_type, cpo_alpha=0.0, beta=BETA, simpo_gamma=GAMMA, max_steps=1,
                      per_device_train_batch_size=4, optim="sgd", learning_rate=LR, max_grad_norm=0.0)
    trainer = CPOTrainer(model=copy.deepcopy(base), args=args, processing_class=copy.deepcopy(tok),
                         train_dataset=Dataset.from_list(preference_rows(4)))
    rows = list(trainer.train_dataset)
    reference = copy.deepcopy(base)
    naive_loss(reference, rows, loss_type).backward()
    trainer.train()
    moved = dict(trainer.model.named_parameters())
    total = 0.0
    for name, before in base.named_parameters():
        grad = reference.get_parameter(name).grad
        step = (before.detach() - moved[name].detach()) / LR
        torch.testing.assert_close(step, grad, rtol=1e-3, atol=2e-6, msg=lambda m, name=name: f"{name}: {m}")
        total += float(grad.abs().sum())
    assert total > 1e-2  # the reference gradient itself is far from zero, so the match is not 0 == 0

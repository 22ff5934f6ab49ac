"""ARPO (X-ALMA, arXiv 2410.03115): the objective against a naive per-pair reference, values and gradients, and the
trainer on real pairs (packed, prefix-shared) against a naive unbatched forward of every sequence."""

import copy
import json
import math

import pytest
import torch
from datasets import Dataset
from helpers import asset, tiny_qwen2, train_args, train_logs, zen

from cpo import CPOTrainer
from cpo.loss_settings import LossSettings
from cpo.losses import cpo_objective
from cpo.mt.prompts import alma_prompt
from cpo.pairs.alma import alma_pairs


def naive_pair_loss(lc_sum, lc_n, lr_sum, lr_n, s: LossSettings):
    """One pair's preference loss with ARPO, written out from the paper's and the issue's formulas (float64)."""
    m_c, m_r = lc_sum / lc_n, lr_sum / lr_n
    l_c, l_r = (m_c, m_r) if s.loss_type in ("simpo", "ipo") else (lc_sum, lr_sum)
    if s.alpha:
        l_c, l_r = (1 - torch.exp(-s.alpha * l_c)) / s.alpha, (1 - torch.exp(-s.alpha * l_r)) / s.alpha
    g = torch.clamp(s.arpo_c1 * torch.exp(s.arpo_c2 * torch.abs(m_c - m_r)) - 1, max=1.0)
    delta = l_c - g * l_r
    if s.loss_type == "sigmoid":
        z = s.beta * delta
        loss = -(1 - s.label_smoothing) * torch.nn.functional.logsigmoid(z) \
            - s.label_smoothing * torch.nn.functional.logsigmoid(-z)
    elif s.loss_type == "simpo":
        loss = -torch.nn.functional.logsigmoid(s.beta * delta - s.simpo_gamma)
    elif s.loss_type == "hinge":
        loss = torch.relu(1 - s.beta * delta)
    else:
        loss = (delta - 1 / (2 * s.beta)) ** 2
    return loss, g


@pytest.mark.parametrize("loss_type", ["sigmoid", "hinge", "ipo", "simpo"])
@pytest.mark.parametrize("alpha", [0.0, 0.2])
def test_objective_equals_the_naive_reference_values_and_gradients(loss_type, alpha):
    gen = torch.Generator().manual_seed(3)
    counts = torch.randint(1, 9, (10,), generator=gen).double()
    sums = (-torch.rand(10, generator=gen, dtype=torch.float64) * 2 * counts).requires_grad_(True)
    s = LossSettings(loss_type=loss_type, beta=0.3, alpha=alpha, arpo=True, arpo_c1=0.9, arpo_c2=0.4,
                     label_smoothing=0.1 if loss_type == "sigmoid" else 0.0)
    out = cpo_objective(sums, counts, num_pairs=5, num_chosen_tokens=float(counts[:5].sum()), settings=s)
    out.loss.backward()
    ours = sums.grad.clone()
    sums.grad = None
    pairs = [naive_pair_loss(sums[i], counts[i], sums[5 + i], counts[5 + i], s) for i in range(5)]
    ref = sum(p[0] for p in pairs) / 5 + s.cpo_alpha * -sums[:5].sum() / counts[:5].sum()
    ref.backward()
    torch.testing.assert_close(out.loss, ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(ours, sums.grad, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(out.metrics["arpo/gamma"], torch.stack([p[1] for p in pairs]).detach())


def test_gamma_is_c1_minus_one_for_equal_means_and_capped_at_one():
    sums, counts = torch.tensor([-2.0, -50.0, -4.0, -1.0]), torch.tensor([2.0, 10.0, 4.0, 1.0])
    out = cpo_objective(sums, counts, num_pairs=2, num_chosen_tokens=12.0, settings=LossSettings(arpo=True))
    assert out.metrics["arpo/gamma"].tolist() == pytest.approx([0.9 - 1, 1.0])  # means -1/-1; -5/-1 gives > 1
    plain = cpo_objective(sums, counts, num_pairs=2, num_chosen_tokens=12.0, settings=LossSettings())
    assert plain.metrics == {} and not torch.allclose(plain.loss, out.loss)


def naive_sequence_logps(model, prompt, completion):
    """Summed log-prob and length of ``completion`` after ``prompt``: one unpadded, unbatched forward, full logits."""
    ids = torch.tensor([prompt + completion])
    logps = model(ids).logits[0, :-1].float().log_softmax(-1)
    target = ids[0, 1:]
    token = logps.gather(-1, target[:, None])[:, 0][len(prompt) - 1:]
    return token.sum().double(), float(len(completion))


def wmt_pairs(n: int = 16) -> Dataset:
    """The first ``n`` pairs the ALMA-R rule makes of the WMT'22 de-en slice (real source, reference, GPT-4 and
    ALMA-13B-LoRA texts; made-up scores), with the ALMA prompt."""
    rows = [json.loads(line) for line in asset("alma-r", "de-en.jsonl").read_text(encoding="utf-8").splitlines()]
    pairs = alma_pairs(rows, ["de-en"])[0][:n]
    return Dataset.from_list([{"prompt": alma_prompt(p.source, "de", "en"), "chosen": " " + p.chosen,
                               "rejected": " " + p.rejected} for p in pairs])


@pytest.mark.parametrize("c1,c2,beta,loss_type", [(0.9, 0.4, 0.1, "sigmoid"), (1.3, 0.05, 0.5, "simpo")])
def test_trainer_on_real_pairs_packed_and_shared_equals_the_naive_reference(tmp_path, tok, c1, c2, beta, loss_type):
    """One SGD step over 16 real WMT'22 translation pairs, packed into one row with the prompt shared: the logged
    loss and arpo/gamma equal the naive reference to 1e-5, and the updated weights equal the naive gradient's step."""
    base, data, lr = tiny_qwen2(len(tok)), wmt_pairs(), 0.5
    args = train_args(tmp_path, max_steps=1, optim="sgd", learning_rate=lr, max_grad_norm=0.0,
                      per_device_train_batch_size=len(data), loss_type=loss_type, beta=beta, arpo=True,
                      arpo_c1=c1, arpo_c2=c2, padding_free=True, prefix_sharing=True)
    trainer = CPOTrainer(model=copy.deepcopy(base), args=args, processing_class=copy.deepcopy(tok), train_dataset=data)
    rows = trainer.train_dataset
    logged = train_logs(trainer)[0]

    model = copy.deepcopy(base)
    s = LossSettings.of(args)
    chosen = [naive_sequence_logps(model, r["prompt_input_ids"], r["chosen_input_ids"]) for r in rows]
    rejected = [naive_sequence_logps(model, r["prompt_input_ids"], r["rejected_input_ids"]) for r in rows]
    pairs = [naive_pair_loss(c[0], c[1], r[0], r[1], s) for c, r in zip(chosen, rejected)]
    n = len(pairs)
    ref = sum(p[0] for p in pairs) / n + s.cpo_alpha * -sum(c[0] for c in chosen) / sum(c[1] for c in chosen)
    assert logged["loss"] == pytest.approx(ref.item(), rel=1e-5)
    assert logged["arpo/gamma"] == pytest.approx(sum(p[1].item() for p in pairs) / n, rel=1e-5, abs=1e-7)
    assert not all(abs(p[1].item() - 1) < 1e-9 for p in pairs)  # gamma really varies away from plain CPO's 1
    ref.backward()
    for (name, p), (_, q) in zip(model.named_parameters(), trainer.model.named_parameters()):
        torch.testing.assert_close(q.detach(), (p - lr * p.grad).detach(), rtol=1e-5, atol=1e-6, msg=name)


def test_gradient_accumulation_with_arpo_equals_the_unsplit_step(tmp_path, tok):
    base, data, logs = tiny_qwen2(len(tok)), zen("standard_preference"), {}
    for name, batch, accumulate in (("big", 8, 1), ("small", 2, 4)):
        args = train_args(tmp_path / name, max_steps=1, optim="sgd", learning_rate=0.5, arpo=True,
                          per_device_train_batch_size=batch, gradient_accumulation_steps=accumulate)
        trainer = CPOTrainer(model=copy.deepcopy(base), args=args, processing_class=copy.deepcopy(tok),
                             train_dataset=data)
        logs[name] = (train_logs(trainer)[0], dict(trainer.model.named_parameters()))
    for key in ("loss", "grad_norm", "arpo/gamma", "rewards/margins", "nll_loss"):
        assert math.isfinite(logs["big"][0][key])
        assert logs["small"][0][key] == pytest.approx(logs["big"][0][key], rel=1e-5, abs=1e-6), key
    for name, weight in logs["big"][1].items():
        torch.testing.assert_close(logs["small"][1][name], weight, rtol=1e-5, atol=1e-6)

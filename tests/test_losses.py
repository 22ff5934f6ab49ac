"""Losses against hand derivations (scalar math) and against TRL 1.16's own cpo_loss."""

import math
from types import SimpleNamespace

import pytest
import torch

from cpo.loss_settings import LossSettings
from cpo.losses import (
    ALPHAPO_MAX_SLOPE,
    alphapo_reward,
    cpo_objective,
    preference_loss,
    uses_average_logps,
)


def softplus(x: float) -> float:
    return math.log1p(math.exp(x))


# chosen logp -1, rejected logp -3, beta 0.1: delta = 2, beta * delta = 0.2.
HAND = {
    # -log sigmoid(0.2) = log(1 + e^-0.2)
    ("sigmoid", 0.0): softplus(-0.2),
    # 0.9 * -log sigmoid(0.2) + 0.1 * -log sigmoid(-0.2)
    ("sigmoid", 0.1): 0.9 * softplus(-0.2) + 0.1 * softplus(0.2),
    # relu(1 - 0.2)
    ("hinge", 0.0): 0.8,
    # (delta - 1 / (2 beta))^2 = (2 - 5)^2
    ("ipo", 0.0): 9.0,
    # -log sigmoid(0.2 - gamma) with gamma 0.5
    ("simpo", 0.0): softplus(0.3),
    ("simpo", 0.1): 0.9 * softplus(0.3) + 0.1 * softplus(-0.3),
    ("sft", 0.0): 0.0,
}


@pytest.mark.parametrize("loss_type,ls", list(HAND))
def test_hand_derived_values(loss_type, ls):
    losses, cr, rr = preference_loss(
        torch.tensor([-1.0]), torch.tensor([-3.0]), loss_type=loss_type, beta=0.1, label_smoothing=ls
    )
    assert losses.item() == pytest.approx(HAND[(loss_type, ls)], rel=1e-6)
    assert cr.item() == pytest.approx(-0.1) and rr.item() == pytest.approx(-0.3)


def test_hinge_saturates_and_ipo_is_zero_at_target():
    big = preference_loss(torch.tensor([0.0]), torch.tensor([-20.0]), loss_type="hinge", beta=0.1)[0]
    assert big.item() == 0.0  # 1 - 0.1 * 20 < 0
    at_target = preference_loss(torch.tensor([0.0]), torch.tensor([-5.0]), loss_type="ipo", beta=0.1)[0]
    assert at_target.item() == pytest.approx(0.0, abs=1e-12)  # delta == 1 / (2 beta)


def test_alphapo_reward_matches_formula_and_limits():
    # r = (1 - p^-alpha) / alpha with p = e^-2, alpha = 0.25: (1 - e^0.5) / 0.25
    r = alphapo_reward(torch.tensor([-2.0]), 0.25).item()
    assert r == pytest.approx((1 - math.exp(0.5)) / 0.25, rel=1e-12)
    # alpha -> 0 recovers the log-prob; negative alpha is bounded: r in [1/alpha, 0]
    assert alphapo_reward(torch.tensor([-2.0]), 1e-9).item() == pytest.approx(-2.0, rel=1e-6)
    neg = alphapo_reward(torch.tensor([-400.0]), -0.5).item()
    assert neg == pytest.approx((1 - math.exp(-200)) / -0.5) and -2.0 <= neg <= 0.0


# Summed log-probs (sigmoid, hinge) reach the thousands. IPO and SimPO work on per-token averages, and IPO squares
# the reward gap, so it is finite in fp32 up to about alpha * |mean logp| = 40: far beyond real per-token averages.
EXTREMES = {
    "sigmoid": ([-300.0, -350.0, -1000.0, -2000.0], [-320.0, -300.0, -900.0, -2500.0]),
    "hinge": ([-300.0, -350.0, -1000.0, -2000.0], [-320.0, -300.0, -900.0, -2500.0]),
    "simpo": ([-300.0, -350.0, -1000.0, -2000.0], [-320.0, -300.0, -900.0, -2500.0]),
    "ipo": ([-30.0, -60.0, -120.0, -150.0], [-32.0, -55.0, -140.0, -100.0]),
}


@pytest.mark.parametrize("loss_type", list(EXTREMES))
def test_alphapo_stays_finite_in_fp32_for_very_negative_logps(loss_type):
    chosen = torch.tensor(EXTREMES[loss_type][0], requires_grad=True)
    rejected = torch.tensor(EXTREMES[loss_type][1], requires_grad=True)
    losses, cr, rr = preference_loss(chosen, rejected, loss_type=loss_type, beta=0.1, alpha=0.25)
    for t in (losses, cr, rr):
        assert torch.isfinite(t.float()).all()
    losses.sum().backward()
    assert torch.isfinite(chosen.grad).all() and torch.isfinite(rejected.grad).all()
    if loss_type != "ipo":  # sigmoid, hinge, simpo: a log-prob's gradient is at most beta * ALPHAPO_MAX_SLOPE
        assert chosen.grad.abs().max() <= 0.1 * ALPHAPO_MAX_SLOPE * (1 + 1e-9)


def test_alphapo_reward_continues_linearly_past_the_knee():
    """Exact while p^-alpha <= 1e6 (alpha 0.25: logps >= -4 ln 1e6 = -55.26), then linear with slope 1e6; its
    gradient (the slope) is p^-alpha below the knee and 1e6 beyond it, never inf."""
    knee = -4 * math.log(1e6)
    logps = torch.tensor([-20.0, knee + 1e-9, -300.0, -5000.0], dtype=torch.float64, requires_grad=True)
    r = alphapo_reward(logps, 0.25)
    assert r[0].item() == pytest.approx(-math.expm1(5.0) / 0.25, rel=1e-12)
    at_knee = -(1e6 - 1.0) / 0.25
    assert r[1].item() == pytest.approx(at_knee, rel=1e-9)
    # beyond: r(knee) + 1e6 * (logp - knee)
    assert r[2].item() == pytest.approx(at_knee + 1e6 * (-300.0 - knee), rel=1e-12)
    assert r[3].item() == pytest.approx(at_knee + 1e6 * (-5000.0 - knee), rel=1e-12)
    r.sum().backward()
    assert logps.grad.tolist() == pytest.approx([math.exp(5.0), 1e6, 1e6, 1e6], rel=1e-9)
    assert ALPHAPO_MAX_SLOPE == 1e6


def test_trl_formula_is_nan_where_ours_is_finite():
    """Why we differ: TRL forms p = exp(logp) first, which underflows to 0, and 0 ** -alpha = inf."""
    p = torch.exp(torch.tensor([-300.0, -310.0]))
    trl_rewards = (1 - p.pow(-0.25)) / 0.25
    assert torch.isnan(trl_rewards[0] - trl_rewards[1])
    ours = alphapo_reward(torch.tensor([-300.0]), 0.25) - alphapo_reward(torch.tensor([-310.0]), 0.25)
    assert torch.isfinite(ours).all()


def test_alphapo_gradient_matches_autograd_of_naive_formula():
    logps = torch.tensor([-0.5, -2.0, -7.0], dtype=torch.float64, requires_grad=True)
    alphapo_reward(logps, 0.3).sum().backward()
    ref = logps.detach().clone().requires_grad_(True)
    ((1 - torch.exp(ref).pow(-0.3)) / 0.3).sum().backward()
    torch.testing.assert_close(logps.grad, ref.grad)


def trl_cpo_loss(loss_type, chosen, rejected, beta=0.1, label_smoothing=0.0, simpo_gamma=0.5, alpha=0.0):
    """TRL 1.16's CPOTrainer.cpo_loss called on a stand-in `self` carrying only what it reads."""
    from trl.experimental.cpo import CPOTrainer

    fake = SimpleNamespace(
        alpha=alpha, beta=beta, loss_type=loss_type, label_smoothing=label_smoothing, simpo_gamma=simpo_gamma,
        accelerator=SimpleNamespace(device=torch.device("cpu")),
    )
    return CPOTrainer.cpo_loss(fake, chosen, rejected)


# label smoothing applies to sigmoid and simpo only
@pytest.mark.parametrize(("loss_type", "ls"), [("sigmoid", 0.0), ("sigmoid", 0.2), ("hinge", 0.0), ("ipo", 0.0),
                                               ("simpo", 0.0), ("simpo", 0.2)])
@pytest.mark.parametrize("alpha", [0.0, 0.3, -0.2])
def test_equal_to_trl_cpo_loss(loss_type, alpha, ls):
    gen = torch.Generator().manual_seed(1)
    chosen = -torch.rand(16, generator=gen, dtype=torch.float64) * 30
    rejected = -torch.rand(16, generator=gen, dtype=torch.float64) * 30
    ours = preference_loss(chosen, rejected, loss_type=loss_type, beta=0.2, label_smoothing=ls, alpha=alpha)
    ref = trl_cpo_loss(loss_type, chosen, rejected, beta=0.2, label_smoothing=ls, alpha=alpha)
    for a, b in zip(ours, ref):
        torch.testing.assert_close(a, b.to(a.dtype), rtol=1e-9, atol=1e-9)


def test_average_logp_losses():
    assert uses_average_logps("ipo") and uses_average_logps("simpo")
    assert not uses_average_logps("sigmoid") and not uses_average_logps("hinge")


def test_cpo_objective_normalises_by_step_totals():
    """Two micro-batches' shares sum to the objective of the whole step:
    mean over 3 pairs of the pair losses + alpha * NLL per chosen token (7 tokens)."""
    chosen, rejected = torch.tensor([-1.0, -2.0, -4.0]), torch.tensor([-3.0, -2.5, -1.0])
    counts = torch.tensor([2.0, 2.0, 3.0, 1.0, 4.0, 2.0])  # 7 chosen tokens
    full_losses = preference_loss(chosen, rejected, beta=0.1)[0]
    expected = full_losses.mean() + 0.5 * -chosen.sum() / 7
    settings = LossSettings(cpo_alpha=0.5, beta=0.1)
    shares = [
        cpo_objective(torch.cat([chosen[s], rejected[s]]), torch.cat([counts[:3][s], counts[3:][s]]), num_pairs=3,
                      num_chosen_tokens=7, settings=settings).loss
        for s in (slice(0, 1), slice(1, 3))
    ]
    assert (shares[0] + shares[1]).item() == pytest.approx(expected.item(), rel=1e-6)


def test_unknown_loss_type_is_a_clear_error():
    with pytest.raises(ValueError, match="Unknown loss_type 'dpo'"):
        preference_loss(torch.zeros(1), torch.zeros(1), loss_type="dpo")

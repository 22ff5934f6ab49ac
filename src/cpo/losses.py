"""Preference losses of the CPO family, as pure functions of per-sequence log-probs.

Every loss returns unreduced ``(losses, chosen_rewards, rejected_rewards)``, each of shape ``(B,)``.
Reduction (and the whole-step normalisation that makes gradient accumulation exact) is the trainer's job.

Notation: ``l_c``, ``l_r`` are the policy log-probs of the chosen and rejected completions (summed over tokens for
``sigmoid``/``hinge``, averaged for ``ipo``/``simpo``), ``r`` the reward (``r = l`` when ``alpha == 0``, the AlphaPO
reward otherwise) and ``delta = r_c - r_r``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .loss_settings import LossSettings

DEFAULT_SETTINGS = LossSettings()
LOSS_TYPES = ("sigmoid", "hinge", "ipo", "simpo", "sft")

# AlphaPO's reward grows like p^-alpha = exp(-alpha * logps). Past the point where its slope d r / d logps = p^-alpha
# reaches this value, the reward continues linearly with that slope: values and gradients stay finite in fp32.
ALPHAPO_MAX_SLOPE = 1e6


def uses_average_logps(loss_type: str) -> bool:
    """Whether a loss type works on length-normalised (mean per token) log-probs: IPO (Eq. 17) and SimPO."""
    return loss_type in ("ipo", "simpo")


def alphapo_reward(logps: torch.Tensor, alpha: float) -> torch.Tensor:
    """AlphaPO reward ``r = (1 - p^(-alpha)) / alpha`` with ``p = exp(logps)`` (arXiv 2501.03884, Eq. 6).

    Evaluated in log space as ``-expm1(-alpha * logps) / alpha`` in float64, so ``p`` is never formed: TRL's
    ``exp(logps) ** -alpha`` underflows to ``0 ** -alpha = inf`` once summed log-probs pass about -87 (fp32), and
    the gradient, then the loss, turn NaN. The reward's slope ``d r / d logps = p^(-alpha)`` grows like
    ``exp(alpha * |logps|)``: for ``alpha = 0.25`` and a summed log-prob of -300 it is ``e^75``, and the gradient
    norm overflows fp32 however the value is bounded. So past ``p^(-alpha) = ALPHAPO_MAX_SLOPE`` (1e6; for
    ``alpha = 0.25``, ``logps < -55.3``) the reward continues *linearly* with that slope: it stays monotone,
    continuous and differentiable, and its gradient is at most 1e6 times the log-prob's (the gradient norm stays
    finite, and gradient clipping bounds the step). Below that point it equals TRL's formula wherever TRL's is
    finite in fp32 and ``alpha * |logps| <= 13.8``. The AlphaPO paper defines
    the reward on length-normalised log-probs (``simpo``/``ipo``), where per-token averages stay far from the knee
    and the formula is exact; :class:`cpo.CPOConfig` warns when ``alpha`` meets summed log-probs.

    Args:
        logps: ``(B,)`` log-probs, any float dtype.
        alpha: non-zero shape parameter.

    Returns:
        ``(B,)`` float64 rewards. ``alpha -> 0`` recovers ``logps``.
    """
    exponent = -alpha * logps.double()  # log p^(-alpha)
    knee = math.log(ALPHAPO_MAX_SLOPE)
    bounded = exponent.clamp(max=knee)
    return -torch.expm1(bounded) / alpha - ALPHAPO_MAX_SLOPE * (exponent - bounded) / alpha


def summed_alphapo_note(loss_type: str, alpha: float) -> str:
    """Why ``alpha != 0`` with a loss on *summed* log-probs (``sigmoid``, ``hinge``) is a poor idea, and what to use
    instead; "" when the combination is sound (``alpha == 0``, or per-token averages: ``simpo``, ``ipo``)."""
    if alpha == 0 or uses_average_logps(loss_type) or loss_type == "sft":
        return ""
    return (f"alpha={alpha:g} applies the AlphaPO reward (1 - p^-alpha) / alpha to summed log-probs "
            f"(loss_type={loss_type!r}). For a 25-token answer (summed log-prob near -300) p^-alpha is about "
            f"e^{abs(alpha) * 300:.0f}: its value and gradient overflow fp32 (TRL's gradients are then inf or NaN). cpo "
            f"continues the reward linearly once its slope reaches {ALPHAPO_MAX_SLOPE:g}, so training stays finite, "
            "but past that point a pair trains on log-probs scaled by a constant, not on AlphaPO's reward. Use "
            "loss_type='simpo' or 'ipo' (per-token average log-probs, as the AlphaPO paper does), or a small |alpha| "
            "(|alpha| times the summed log-prob below about 14).")


def rewards_from_logps(logps: torch.Tensor, alpha: float) -> torch.Tensor:
    """The implicit reward of CPO (``r = logps``) or, for ``alpha != 0``, the AlphaPO reward."""
    return logps if alpha == 0.0 else alphapo_reward(logps, alpha)


def sigmoid_loss(delta: torch.Tensor, beta: float, label_smoothing: float = 0.0, offset: float = 0.0) -> torch.Tensor:
    """CPO paper Eq. 3 (arXiv 2401.08417) with conservative label smoothing (cDPO):

    ``-(1 - ls) * log sigmoid(beta * delta - offset) - ls * log sigmoid(-(beta * delta - offset))``.
    ``offset`` is SimPO's target margin ``gamma`` (arXiv 2405.14734, Eq. 6); CPO uses 0.
    """
    z = beta * delta - offset
    return (1.0 - label_smoothing) * F.softplus(-z) + label_smoothing * F.softplus(z)


def hinge_loss(delta: torch.Tensor, beta: float) -> torch.Tensor:
    """SLiC calibration loss (arXiv 2305.10425, Eq. 4 with margin 1/beta): ``relu(1 - beta * delta)``."""
    return torch.relu(1.0 - beta * delta)


def ipo_loss(delta: torch.Tensor, beta: float) -> torch.Tensor:
    """IPO (arXiv 2310.12036, Eq. 17) with ``beta`` as tau and no reference model: ``(delta - 1 / (2 beta))^2``."""
    return (delta - 1.0 / (2.0 * beta)) ** 2


def _sigmoid(delta, *, beta, label_smoothing, simpo_gamma):
    return sigmoid_loss(delta, beta, label_smoothing)


def _simpo(delta, *, beta, label_smoothing, simpo_gamma):
    return sigmoid_loss(delta, beta, label_smoothing, offset=simpo_gamma)


def _hinge(delta, *, beta, label_smoothing, simpo_gamma):
    return hinge_loss(delta, beta)


def _ipo(delta, *, beta, label_smoothing, simpo_gamma):
    return ipo_loss(delta, beta)


def _sft(delta, *, beta, label_smoothing, simpo_gamma):
    # No preference term: the loss is the NLL regulariser alone (the CPO paper's SFT baseline).
    return torch.zeros_like(delta)


_LOSSES: dict[str, Callable[..., torch.Tensor]] = {
    "sigmoid": _sigmoid,
    "simpo": _simpo,
    "hinge": _hinge,
    "ipo": _ipo,
    "sft": _sft,
}


def arpo_gamma(chosen_means: torch.Tensor, rejected_means: torch.Tensor, c1: float, c2: float) -> torch.Tensor:
    """ARPO's weight on the rejected side (X-ALMA, arXiv 2410.03115): ``min(c1 * exp(c2 * |m_c - m_r|) - 1, 1)``.

    ``m_c``, ``m_r`` are per-token mean log-probs of the chosen and rejected completions: the closer the two, the less
    the rejected side is pushed down (at ``m_c = m_r`` the weight is ``c1 - 1``, slightly negative for the released
    ``c1 = 0.9``). As in the released code, the weight carries gradient. Shapes ``(B,), (B,) -> (B,)``.
    """
    return torch.clamp(c1 * torch.exp(c2 * (chosen_means - rejected_means).abs()) - 1.0, max=1.0)


def preference_loss(
    chosen_logps: torch.Tensor,
    rejected_logps: torch.Tensor,
    *,
    loss_type: str = "sigmoid",
    beta: float = 0.1,
    label_smoothing: float = 0.0,
    simpo_gamma: float = 0.5,
    alpha: float = 0.0,
    rejected_weight: torch.Tensor | float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-pair preference loss and rewards.

    Args:
        chosen_logps: ``(B,)`` float log-probs of the chosen completions (summed, or averaged for ipo/simpo).
        rejected_logps: ``(B,)`` same for the rejected completions.
        loss_type: one of ``sigmoid``, ``hinge``, ``ipo``, ``simpo``, ``sft``.
        beta: temperature (tau for IPO), > 0.
        label_smoothing: in [0, 0.5); used by sigmoid and simpo.
        simpo_gamma: SimPO target margin.
        alpha: AlphaPO shape; 0 uses the log-prob reward.
        rejected_weight: ``g`` in ``delta = r_c - g * r_r``: 1 for CPO and its family, :func:`arpo_gamma` for ARPO.

    Returns:
        ``(losses, chosen_rewards, rejected_rewards)``, each ``(B,)``; rewards are ``beta * r`` and detached.
        Losses are float64 when ``alpha != 0`` (see :func:`alphapo_reward`), else the dtype of the inputs.
    """
    if loss_type not in _LOSSES:
        raise ValueError(f"Unknown loss_type {loss_type!r}; expected one of {', '.join(LOSS_TYPES)}.")
    chosen_r = rewards_from_logps(chosen_logps, alpha)
    rejected_r = rewards_from_logps(rejected_logps, alpha)
    losses = _LOSSES[loss_type](
        chosen_r - rejected_weight * rejected_r, beta=beta, label_smoothing=label_smoothing, simpo_gamma=simpo_gamma
    )
    return losses, beta * chosen_r.detach(), beta * rejected_r.detach()


@dataclass(frozen=True)
class Objective:
    """One micro-batch's share of the objective, and what the metrics need.

    ``loss`` is a scalar; ``losses``, the rewards and ``chosen_logps``/``rejected_logps`` (as the loss type uses
    them) are ``(B,)``; ``metrics`` maps extra metric names to ``(B,)`` detached per-pair values (``arpo/gamma``).
    """

    loss: torch.Tensor
    losses: torch.Tensor
    chosen_rewards: torch.Tensor
    rejected_rewards: torch.Tensor
    chosen_logps: torch.Tensor
    rejected_logps: torch.Tensor
    metrics: dict


def cpo_objective(
    sums: torch.Tensor,
    counts: torch.Tensor,
    *,
    num_pairs: float,
    num_chosen_tokens: float,
    settings: LossSettings = DEFAULT_SETTINGS,
) -> Objective:
    """This micro-batch's share of the CPO objective (arXiv 2401.08417, Eq. 4: ``L_prefer + cpo_alpha * L_NLL``).

    ``L_prefer`` is the mean of the per-pair losses and ``L_NLL`` the mean NLL per chosen completion token, both over
    the *whole optimiser step*: dividing each micro-batch's sums by the step totals ``num_pairs`` and
    ``num_chosen_tokens`` makes the accumulated gradient equal the one of a single big batch. With ``arpo`` the
    preference term weighs the rejected side by :func:`arpo_gamma` of the per-token means (taken once, also under
    ``simpo``, where the released code divides an average by the length again).

    Args:
        sums, counts: ``(2B,)`` summed log-probs and scored-token counts, chosen then rejected
            (:func:`cpo.logprobs.sequence_logps`).
        num_pairs, num_chosen_tokens: totals over the optimiser step (all micro-batches, all processes).
        settings: the loss settings (:class:`LossSettings`).
    """
    b = sums.shape[0] // 2
    means = sums / counts.clamp(min=1.0)  # never 0/0: a side with no scored token is refused at tokenization
    logps = means if uses_average_logps(settings.loss_type) else sums
    metrics, weight = {}, 1.0
    if settings.arpo:
        weight = arpo_gamma(means[:b], means[b:], settings.arpo_c1, settings.arpo_c2)
        metrics["arpo/gamma"] = weight.detach()
    losses, chosen_rewards, rejected_rewards = preference_loss(
        logps[:b], logps[b:], loss_type=settings.loss_type, beta=settings.beta,
        label_smoothing=settings.label_smoothing, simpo_gamma=settings.simpo_gamma, alpha=settings.alpha,
        rejected_weight=weight)
    loss = losses.sum() / num_pairs
    if settings.cpo_alpha != 0:
        loss = loss + settings.cpo_alpha * -sums[:b].sum() / max(num_chosen_tokens, 1.0)
    return Objective(loss, losses, chosen_rewards, rejected_rewards, logps[:b], logps[b:], metrics)

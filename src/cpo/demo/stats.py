"""The demo's statistics: the per-seed paired difference with a t interval over seeds (the headline), and the exact
McNemar test over pooled items (secondary: it treats each trained model as fixed and ignores run-to-run variation).
Standard library only."""

from __future__ import annotations

import math
import statistics
from math import comb


def t_cdf(x: float, df: int) -> float:
    """P(T <= x) for Student's t with ``df`` degrees of freedom, by Simpson's rule on its density from 0 to ``x``.

    >>> round(t_cdf(2.776445, 4), 5)
    0.975
    """
    if df < 1:
        raise ValueError(f"df={df} must be >= 1.")
    log_norm = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)
    density = lambda t: math.exp(log_norm - (df + 1) / 2 * math.log1p(t * t / df))  # noqa: E731
    steps, a = 4000, abs(x)
    h = a / steps
    area = density(0.0) + density(a) + sum((4 if k % 2 else 2) * density(k * h) for k in range(1, steps))
    half = area * h / 3
    return 0.5 + half if x >= 0 else 0.5 - half


def t_quantile(p: float, df: int) -> float:
    """The ``p`` quantile (0.5 < p < 1) of Student's t with ``df`` degrees of freedom, by bisection on :func:`t_cdf`.

    >>> round(t_quantile(0.975, 4), 3)
    2.776
    """
    if not 0.5 < p < 1:
        raise ValueError(f"p={p} must be in (0.5, 1).")
    low, high = 0.0, 1.0
    while t_cdf(high, df) < p:
        high *= 2
    for _ in range(60):
        mid = (low + high) / 2
        low, high = (mid, high) if t_cdf(mid, df) < p else (low, mid)
    return (low + high) / 2


def mean_interval(values: list[float], level: float = 0.95) -> dict:
    """Mean of ``values`` with its two-sided ``level`` t interval (``n - 1`` degrees of freedom); with one value
    the interval is None.

    Returns:
        ``{"n", "mean", "sd", "low", "high"}``.
    """
    if not values:
        raise ValueError("mean_interval needs at least one value.")
    n, mean = len(values), statistics.fmean(values)
    if n == 1:
        return {"n": 1, "mean": mean, "sd": None, "low": None, "high": None}
    sd = statistics.stdev(values)
    half = t_quantile(0.5 + level / 2, n - 1) * sd / math.sqrt(n)
    return {"n": n, "mean": mean, "sd": sd, "low": mean - half, "high": mean + half}


def paired_difference(a: list[float], b: list[float], level: float = 0.95) -> dict:
    """The per-seed differences ``a[i] - b[i]`` and :func:`mean_interval` of them: the paired t interval over seeds.

    Returns:
        ``{"n", "differences", "mean", "sd", "low", "high"}``.
    """
    if len(a) != len(b) or not a:
        raise ValueError("paired_difference needs two equally long, non-empty lists (one value per seed).")
    diffs = [x - y for x, y in zip(a, b)]
    return {"differences": diffs, **mean_interval(diffs, level)}


def outcome(diff: dict) -> str:
    """``better``, ``worse`` or ``no difference``: whether the interval of :func:`paired_difference` lies above 0,
    below 0, or holds 0 (``undecided`` with one seed)."""
    if diff["low"] is None:
        return "undecided"
    return "better" if diff["low"] > 0 else "worse" if diff["high"] < 0 else "no difference"


def mcnemar(a_right: list[bool], b_right: list[bool]) -> dict:
    """Item-by-item comparison of two models on the same items: how many only ``a`` gets right, only ``b``, and
    the exact two-sided McNemar p-value (binomial with p = 1/2 over the disagreements; 1.0 when there are none)."""
    a_only = sum(a and not b for a, b in zip(a_right, b_right))
    b_only = sum(b and not a for a, b in zip(a_right, b_right))
    n = a_only + b_only
    tail = sum(comb(n, k) for k in range(min(a_only, b_only) + 1)) / 2**n
    return {"a_only": a_only, "b_only": b_only, "p_value": min(1.0, 2 * tail)}

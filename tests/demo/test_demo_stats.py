"""The demo's statistics: Student's t against printed table values, the paired interval and McNemar by hand."""

import math

import pytest

from cpo.demo.stats import mcnemar, mean_interval, outcome, paired_difference, t_cdf, t_quantile


@pytest.mark.parametrize("df, q975", [(1, 12.7062), (2, 4.3027), (4, 2.7764), (9, 2.2622), (29, 2.0452)])
def test_t_quantile_matches_the_printed_table(df, q975):
    assert abs(t_quantile(0.975, df) - q975) < 1e-4


def test_t_cdf_by_hand():
    # df = 1 is the Cauchy distribution: P(T <= x) = 1/2 + atan(x) / pi
    for x in (-3.0, -0.5, 0.0, 1.0, 4.0):
        assert abs(t_cdf(x, 1) - (0.5 + math.atan(x) / math.pi)) < 1e-9
    # df = 2: P(T <= x) = 1/2 + x / (2 sqrt(2 + x^2))
    assert abs(t_cdf(1.5, 2) - (0.5 + 1.5 / (2 * math.sqrt(2 + 2.25)))) < 1e-9
    with pytest.raises(ValueError, match="df=0"):
        t_cdf(1.0, 0)


def test_paired_difference_by_hand():
    d = paired_difference([80.0, 75.0, 90.0, 70.0], [70.0, 80.0, 80.0, 60.0])
    # differences 10, -5, 10, 10: mean 6.25, sd sqrt((3.75^2 * 3 + 11.25^2) / 3) = 7.5
    assert d["differences"] == [10.0, -5.0, 10.0, 10.0] and d["mean"] == 6.25 and abs(d["sd"] - 7.5) < 1e-12
    half = 3.182446 * 7.5 / 2  # t(0.975, 3) * sd / sqrt(4)
    assert abs(d["low"] - (6.25 - half)) < 1e-4 and abs(d["high"] - (6.25 + half)) < 1e-4
    assert outcome(d) == "no difference"
    assert outcome(paired_difference([3.0, 4.0, 5.0], [1.0, 1.0, 1.0])) == "better"
    assert outcome(paired_difference([1.0, 1.0, 1.0], [3.0, 4.0, 5.0])) == "worse"
    assert outcome(paired_difference([1.0], [0.0])) == "undecided" and mean_interval([2.0])["low"] is None
    with pytest.raises(ValueError, match="equally long"):
        paired_difference([1.0], [1.0, 2.0])


def test_mcnemar_by_hand():
    # 3 disagreements, all for b: P(X <= 0) = 1/8 for X ~ Bin(3, 1/2); two-sided p = 1/4.
    assert mcnemar([0, 0, 0, 1, 0], [1, 1, 1, 1, 0]) == {"a_only": 0, "b_only": 3, "p_value": 0.25}
    assert mcnemar([1] * 8, [0] * 6 + [1, 1])["p_value"] == 2 / 64  # 6 for a, none for b: 2 / 2^6
    assert mcnemar([1, 1, 0, 0], [0, 0, 1, 1])["p_value"] == 1.0  # P(X <= 2), Bin(4, 1/2) = 11/16, doubled, capped
    assert mcnemar([1, 0], [1, 0]) == {"a_only": 0, "b_only": 0, "p_value": 1.0}

"""Clopper-Pearson intervals against published values (R's binom.test, scipy's beta.ppf)."""

from __future__ import annotations

from math import comb

import pytest

from dedup.proportions import clopper_pearson, regularized_beta


@pytest.mark.parametrize(
    ("k", "n", "low", "high"),
    [
        (0, 10, 0.0, 0.3085),
        (5, 10, 0.1871, 0.8129),
        (10, 10, 0.6915, 1.0),
        (1, 10, 0.0025, 0.4450),
        (29, 30, 0.8278, 0.9992),
        (950, 1000, 0.9346, 0.9626),
    ],
)
def test_intervals_match_known_values(k: int, n: int, low: float, high: float) -> None:
    got = clopper_pearson(k, n)
    assert got == pytest.approx((low, high), abs=1e-4)


def test_the_incomplete_beta_matches_the_binomial_tail() -> None:
    # I_p(k, n - k + 1) = P(Binomial(n, p) >= k); 3 of 7 at p = 0.4.
    tail = sum(comb(7, j) * 0.4**j * 0.6 ** (7 - j) for j in range(3, 8))
    assert regularized_beta(0.4, 3, 5) == pytest.approx(tail, rel=1e-12)


def test_a_wider_confidence_gives_a_wider_interval_and_bad_input_is_refused() -> None:
    narrow, wide = clopper_pearson(7, 20, 0.90), clopper_pearson(7, 20, 0.99)
    assert wide[0] < narrow[0] and narrow[1] < wide[1]
    with pytest.raises(ValueError, match="not a proportion"):
        clopper_pearson(3, 2)
    with pytest.raises(ValueError, match="not a proportion"):
        clopper_pearson(0, 0)

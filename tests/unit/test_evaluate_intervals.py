"""Clopper-Pearson against binomial tail sums (an independent computation), and the weighted
rates of the subject bootstrap against repeating searches."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dedup.evaluation import open_set
from dedup.evaluation.intervals import (
    clopper_pearson,
    subject_weights,
    weighted_rate_at_or_above,
    weighted_threshold_at_fpir,
)
from dedup.proportions import regularized_beta


def tail_at_least(k: int, n: int, p: float) -> float:
    return sum(math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(k, n + 1))


@pytest.mark.parametrize(("k", "n"), [(1, 10), (3, 50), (17, 40), (29, 30), (5, 300)])
def test_clopper_pearson_ends_are_where_the_binomial_tails_are_alpha_over_two(
    k: int, n: int
) -> None:
    lo, hi = clopper_pearson(k, n)
    assert tail_at_least(k, n, lo) == pytest.approx(0.025, abs=1e-9)
    assert 1 - tail_at_least(k + 1, n, hi) == pytest.approx(0.025, abs=1e-9)
    assert lo < k / n < hi


def test_clopper_pearson_without_errors_has_its_closed_form() -> None:
    lo, hi = clopper_pearson(0, 200)
    assert lo == 0.0
    assert hi == pytest.approx(1 - 0.025 ** (1 / 200), rel=1e-9)
    assert clopper_pearson(7, 7)[1] == 1.0
    assert clopper_pearson(0, 0) == (0.0, 1.0)


@pytest.mark.parametrize(("a", "b", "x"), [(2.0, 3.0, 0.4), (0.5, 0.5, 0.2), (30, 4000, 0.01)])
def test_incomplete_beta_matches_numerical_integration(a: float, b: float, x: float) -> None:
    grid = np.linspace(0, x, 2_000_001)[1:]
    density = np.exp(
        math.lgamma(a + b)
        - math.lgamma(a)
        - math.lgamma(b)
        + (a - 1) * np.log(grid)
        + (b - 1) * np.log1p(-grid)
    )
    integral = float(np.trapezoid(density, grid))
    assert regularized_beta(x, a, b) == pytest.approx(integral, rel=2e-3, abs=1e-6)


@settings(max_examples=50, deadline=None)
@given(
    data=st.lists(st.tuples(st.integers(0, 15), st.integers(0, 3)), min_size=1, max_size=40),
    target=st.sampled_from([0.01, 0.1, 0.3]),
)
def test_weights_count_like_repeated_searches(data: list[tuple[int, int]], target: float) -> None:
    scores = np.array([s / 15 for s, _ in data])
    weights = np.array([w for _, w in data], dtype=np.float64)
    repeated = np.repeat(scores, weights.astype(np.int64))
    if len(repeated) == 0:
        return
    assert weighted_threshold_at_fpir(scores, weights, target) == open_set.threshold_at_fpir(
        repeated, target
    )
    thresholds = np.array([0.0, 0.3, 0.5, 1.0])
    assert np.allclose(
        weighted_rate_at_or_above(scores, weights, thresholds),
        open_set.rate_at_or_above(repeated, thresholds),
    )


def test_subject_weights_draw_whole_subjects_and_are_seeded() -> None:
    subjects = np.array([4, 4, 9, 9, 9, 2])
    draw = subject_weights(subjects, 10, seed=3)
    for b in range(10):
        w = draw(b)
        assert w[0] == w[1] and w[2] == w[3] == w[4]  # one subject's searches stay together
        assert w[[0, 2, 5]].sum() == 3  # as many subjects drawn as there are
    assert np.array_equal(draw(4), subject_weights(subjects, 10, seed=3)(4))

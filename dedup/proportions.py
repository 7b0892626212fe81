"""Exact (Clopper-Pearson) confidence intervals for a proportion, with the standard library.

The bounds are quantiles of beta distributions: for ``k`` successes in ``n`` trials the lower
bound is the ``alpha/2`` quantile of Beta(k, n - k + 1), the upper the ``1 - alpha/2``
quantile of Beta(k + 1, n - k). A quantile is found by bisection on the regularized
incomplete beta function, computed by its continued fraction (Lentz's method).

>>> [round(b, 4) for b in clopper_pearson(5, 10)]
[0.1871, 0.8129]
"""

from __future__ import annotations

import math

# Fewer trials than this and an accuracy says little: pages and reports flag it.
FEW_TRIALS = 30


def clopper_pearson(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """The exact two-sided interval of a proportion of ``k`` in ``n`` (``n`` > 0)."""
    if n <= 0 or not 0 <= k <= n:
        raise ValueError(f"{k} successes in {n} trials is not a proportion")
    if not 0 < confidence < 1:
        raise ValueError("the confidence is a fraction between 0 and 1")
    alpha = 1 - confidence
    low = 0.0 if k == 0 else beta_quantile(alpha / 2, k, n - k + 1)
    high = 1.0 if k == n else beta_quantile(1 - alpha / 2, k + 1, n - k)
    return low, high


def beta_quantile(q: float, a: float, b: float) -> float:
    """The ``x`` at which the Beta(a, b) distribution reaches ``q``, by bisection (the
    distribution function is increasing): 100 halvings reach double precision, for the tiny
    rates of 1:N false matches too."""
    lo, hi = 0.0, 1.0
    for _ in range(100):
        mid = (lo + hi) / 2
        if regularized_beta(mid, a, b) < q:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def regularized_beta(x: float, a: float, b: float) -> float:
    """I_x(a, b), the Beta(a, b) distribution function at ``x``."""
    if x <= 0:
        return 0.0
    if x >= 1:
        return 1.0
    log_front = (
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    )
    # The continued fraction converges fast below the mean; use the symmetry above it.
    if x < (a + 1) / (a + b + 2):
        return math.exp(log_front) * _beta_fraction(x, a, b) / a
    return 1.0 - math.exp(log_front) * _beta_fraction(1 - x, b, a) / b


def _beta_fraction(x: float, a: float, b: float) -> float:
    tiny, eps = 1e-300, 1e-15
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 10_000):
        for numerator in (
            m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1)),
        ):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < eps:
            break
    return h


class TrialAccuracy:
    """What a count of ``correct`` judgements in ``trials`` says, for a dataclass with those
    two fields (an adjudicator's catch trials, or everyone's)."""

    trials: int
    correct: int

    @property
    def rate(self) -> float | None:
        return None if self.trials == 0 else self.correct / self.trials

    @property
    def interval(self) -> tuple[float, float] | None:
        """The accuracy's exact 95% interval (Clopper-Pearson); None without trials."""
        return None if self.trials == 0 else clopper_pearson(self.correct, self.trials)

    @property
    def few(self) -> bool:
        """Fewer than ``FEW_TRIALS`` trials: the accuracy says little yet."""
        return self.trials < FEW_TRIALS

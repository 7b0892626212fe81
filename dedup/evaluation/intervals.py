"""Uncertainty of the rates: Clopper-Pearson intervals and a subject-level bootstrap.

Clopper-Pearson: the exact binomial interval, from quantiles of the Beta distribution,
``lo = B^-1(alpha/2; k, n-k+1)`` and ``hi = B^-1(1-alpha/2; k+1, n-k)``, computed by
``dedup.proportions`` (SciPy is not a dependency). It assumes independent trials; pairs that
share a template are not, so the intervals of pair rates (FMR, FNMR) are too narrow where
templates repeat across pairs.

The bootstrap resamples subjects (with replacement, seeded), never comparisons: each search
carries its subject's weight (how often the subject was drawn), so the searches of one person
stay together. The gallery is held fixed (re-drawing it would need a new search per replicate),
so the bands show the sampling of searches, not of galleries.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from numpy.typing import NDArray

from dedup.evaluation.open_set import Floats
from dedup.proportions import beta_quantile

MIN_ERRORS = 30  # fewer errors behind a rate: flagged as weakly supported
Z95 = 1.959963984540054


def clopper_pearson(errors: int, trials: int, alpha: float = 0.05) -> tuple[float, float]:
    """The exact two-sided ``1 - alpha`` interval of a binomial rate from ``errors`` of
    ``trials``; (0, 1) without trials."""
    if trials <= 0:
        return 0.0, 1.0
    if not 0 <= errors <= trials:
        raise ValueError(f"errors must lie in 0..{trials}, not {errors}")
    lo = 0.0 if errors == 0 else beta_quantile(alpha / 2, errors, trials - errors + 1)
    hi = 1.0 if errors == trials else beta_quantile(1 - alpha / 2, errors + 1, trials - errors)
    return lo, hi


def weighted_rate_at_or_above(
    scores: Floats, weights: Floats, thresholds: NDArray[np.floating]
) -> Floats:
    """Weighted share of ``scores`` at or above each threshold."""
    order = np.argsort(scores)
    ordered, w = scores[order], weights[order]
    tail = np.r_[np.cumsum(w[::-1])[::-1], 0.0]
    total = tail[0] if len(tail) > 1 else 0.0
    rates: Floats = tail[np.searchsorted(ordered, thresholds, side="left")] / max(total, 1e-300)
    return rates


def weighted_threshold_at_fpir(scores: Floats, weights: Floats, target: float) -> float:
    """``threshold_at_fpir`` with each search counted ``weight`` times."""
    order = np.argsort(scores)[::-1]
    ordered, w = scores[order], weights[order]
    keep = w > 0
    ordered, w = ordered[keep], w[keep]
    allowed = math.floor(target * w.sum() + 1e-9)
    above = np.cumsum(w)
    first_over = int(np.searchsorted(above, allowed, side="right"))
    if first_over >= len(ordered):
        return -math.inf
    return float(np.nextafter(ordered[first_over], np.inf))


def subject_weights(
    subjects: NDArray[np.int64], replicates: int, seed: int
) -> Callable[[int], Floats]:
    """For replicate ``b``: each search's weight, how often its subject was drawn when as
    many subjects as there are were drawn with replacement."""
    names, index = np.unique(subjects, return_inverse=True)

    def weights(b: int) -> Floats:
        rng = np.random.default_rng([seed, 7, b])
        drawn = np.bincount(rng.integers(0, len(names), len(names)), minlength=len(names))
        return drawn[index].astype(np.float64)

    if replicates < 1:
        raise ValueError(f"bootstrap replicates must be at least 1, not {replicates}")
    return weights


def percentile_band(samples: Floats, level: float = 0.95) -> tuple[Floats, Floats]:
    """Pointwise percentile band of replicate rows (replicates x points)."""
    tail = (1 - level) / 2 * 100
    return np.nanpercentile(samples, tail, axis=0), np.nanpercentile(samples, 100 - tail, axis=0)

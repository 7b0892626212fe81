"""Review thresholds calibrated to a false-positive identification rate at the gallery's size.

A new enrollment that has no mate in the gallery (a non-mated probe) is compared with all ``N``
enrolled people. If one different-person pair scores above ``t`` with probability ``p(t)``, and
the ``N`` comparisons are treated as independent, the chance that the probe reaches an
adjudicator by mistake is

    FPIR(t, N) = 1 - (1 - p(t)) ** N

so a threshold that is fine at a million records floods adjudicators at a billion. Holding FPIR
at a target needs ``p(t) = 1 - (1 - FPIR) ** (1 / N)``: about 1e-8 for FPIR 0.01 at a million,
1e-11 at a billion. No sample of scored pairs reaches that far, so ``ImpostorTail`` fits a
Generalised Pareto distribution (GPD) to the sample's top ``tail_fraction`` (peaks over a
threshold ``u``; extreme-value theory says exceedances of a high ``u`` are close to GPD whatever
the parent distribution) and keeps the empirical distribution below ``u``.

Two samples to fit on: ``fit`` takes any sample of scores (the random pairs of
``sample_impostor_scores``, u at its 99.9th percentile); ``fit_all_pairs`` takes every pair of
a set of templates (``score_all_pairs``), u where 10,000 of them lie above. The gallery's tail
(``threshold_policy.gallery_tail``) is the second, on every pair of 200,000 gallery rows.

Limits, which the numbers it gives should be read with:

- Independence. Pairs that share a probe are not independent: a sharp, well-lit capture scores
  higher against everyone. The expected number of false candidates (``B * N * p``) does not
  need independence, but FPIR does; with such per-probe spread the true FPIR is *lower* than
  ``fpir_at`` says (Jensen), so the threshold errs on the side of fewer false candidates.
- Extrapolation. The far tail is a mixture dominated by captures that score high against
  everyone (at p = 1e-9 a third of the pairs brute force found came from the 1% of probes
  with the highest mean score), and a GPD fitted far above it does not see it coming: the
  fitted shape is too negative and the extrapolation too short, the more so the more decades
  it spans. Measured on the calibrated
  synthetic templates against brute force (1e11 probe x gallery pairs at N = 10 M,
  ``benchmarks/tail_fit.py``, docs/benchmarks.md): 1e7 random pairs of 200,000 rows (u at
  p = 1e-3) under-stated p(t) 3 to 20 times at 3e-9 and 5 to 100 times at 1e-9, on three row
  samples; every pair of the same rows (2e10 pairs, u at p = 5e-7) was within 0.63 to 1.41 of
  brute force from 1e-5 down to 1e-10. Trust p(t) down to about ``1 / pairs`` of the set the
  tail is fitted on (5e-11 for 200,000 rows) and no further: 1e-10 was 2 / pairs there; with
  1e5 rows it is 0.5 / pairs and came out 0.43 to 0.99, with 5e4 rows 0.125 / pairs and 0.17
  to 0.99. FPIR 0.01 at a billion (p = 1e-11) needs 450,000 rows or more (1e11 pairs, an
  estimated 6 minutes on two cores), and has not been checked against brute force. Re-fit
  whenever the model, the capture process or the population changes.
- Brute force with 10,000 probes cannot check closer than its own spread, since a few sharp
  probes carry the far tail: 90% of probe resamples fall within about 9% of the count at
  p = 1e-8, 20% at 1e-9 and 50% at 1e-10, and seven sets of 10,000 probes against the same
  200,000 rows differed by up to 20% at 1e-6 and 30% at 1e-7.
- A fitted negative shape gives the scores an upper end point (``upper_endpoint``); a target
  beyond what the sample supports returns a threshold just below it.
- The counts ignore the per-probe cap on candidates (top ``k``) and assume the sample of pairs
  comes from the same population as tonight's probes and the gallery.

Example::

    tail = ImpostorTail.fit_all_pairs(score_all_pairs(templates, keep=200_000))
    t = review_threshold_for(0.01, gallery_size=1_000_000_000, tail=tail)
    expected_false_candidates(t, batch_size=50_000, gallery_size=1_000_000_000, tail=tail)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from dedup.errors import DedupError
from dedup.matching.impostor_pairs import PairScores

MIN_SCORES = 1_000  # fewer sampled pairs cannot say anything about a 1e-3 tail, let alone 1e-10
MIN_EXCEEDANCES = 50  # the GPD's two parameters need a few dozen points above u at the least
BODY_KNOTS = 513  # quantiles kept of the distribution below u: the body matters only for plots
SHAPE_BOUNDS = (-0.5, 0.5)  # outside, maximum likelihood is irregular; cosines have no heavy tail
DEEP_EXCEEDANCES = 10_000  # points above u in a fit on every pair (``fit_all_pairs``)
KNOTS_PER_DECADE = 16  # body knots a decade between p = 1e-2 and u in ``fit_all_pairs``


class TailFitError(DedupError, ValueError):
    """The impostor sample cannot support a tail fit (too few scores or too few above u)."""


@dataclass(frozen=True)
class ImpostorTail:
    """Distribution of different-person scores: empirical below ``threshold`` (u), GPD above.

    ``exceedance(t) = tail_fraction * (1 + shape * (t - u) / scale) ** (-1 / shape)`` for
    ``t >= u`` (``exp(-(t - u) / scale)`` at shape 0). Small, hashable and plain numbers, so
    it can be written next to a run's outputs and compared between nights.
    """

    sample_size: int
    threshold: float
    tail_fraction: float
    shape: float
    scale: float
    body: tuple[float, ...]  # scores below u, ascending, ending at or just below u
    # P(score > body[k]), descending to tail_fraction; empty: evenly spaced from 1 (``fit``).
    body_exceedance: tuple[float, ...] = ()

    @classmethod
    def fit(
        cls,
        scores: NDArray[np.floating],
        tail_fraction: float = 0.001,
        *,
        exponential: bool = False,
    ) -> ImpostorTail:
        """Fit the tail to a sample of non-mated pair scores.

        ``tail_fraction`` sets u at the sample's ``1 - tail_fraction`` quantile: a higher u is
        closer to the GPD limit, a lower u leaves more points to estimate the shape from. Cosine
        tails look bounded at moderate u (a negative shape) and less so further up, so a low u
        under-states the far tail (see the module's limits); hence the 99.9th percentile. The
        GPD is fitted by maximum likelihood. ``exponential`` fixes the shape at 0 instead: it
        over-states a bounded or Gaussian-like tail, so it errs towards a higher threshold,
        fewer false candidates and more missed duplicates.
        """
        if not 0.0 < tail_fraction < 1.0:
            raise ValueError(f"tail_fraction must lie in (0, 1), not {tail_fraction}")
        values = np.sort(np.asarray(scores, dtype=np.float64).ravel())
        if not np.all(np.isfinite(values)):
            raise TailFitError("the impostor sample holds NaN or infinite scores")
        if len(values) < MIN_SCORES:
            raise TailFitError(
                f"{len(values)} impostor scores are too few to fit a tail: sample at least "
                f"{MIN_SCORES:,} non-mated pairs (millions for a gallery of billions)"
            )
        u = float(np.quantile(values, 1.0 - tail_fraction))
        above = values[values > u] - u
        if len(above) < MIN_EXCEEDANCES:
            raise TailFitError(
                f"only {len(above)} of {len(values):,} impostor scores lie above u = {u:.4f}; "
                f"the tail fit needs {MIN_EXCEEDANCES}: sample more pairs or raise tail_fraction"
            )
        shape, scale = (0.0, float(above.mean())) if exponential else fit_gpd(above)
        fraction = len(above) / len(values)
        below = values[: len(values) - len(above)]
        knots = np.quantile(below, np.linspace(0.0, 1.0, BODY_KNOTS))
        return cls(
            sample_size=len(values),
            threshold=u,
            tail_fraction=fraction,
            shape=shape,
            scale=scale,
            body=tuple(float(k) for k in knots),
        )

    @classmethod
    def fit_all_pairs(cls, scores: PairScores, exceedances: int = DEEP_EXCEEDANCES) -> ImpostorTail:
        """Fit the tail to every pair of a set of templates (``score_all_pairs``).

        u is the ``exceedances``-th highest of all the pairs' scores, or their 99.9th
        percentile where that is higher (a set of a few thousand templates). For the 2e10
        pairs of 200,000 templates u lies at p = 5e-7 instead of the 1e-3 of a random sample,
        so p = 1e-9 (FPIR 0.01 at ten million) is 2.7 decades of extrapolation instead of 6.
        Below u the knots are exact order statistics of all the pairs as far as
        ``scores.top`` reaches, and quantiles of ``scores.sample`` above that (p(t) at a
        configured threshold feeds the report and the drift alert, so it must hold there
        too): evenly spaced in probability down to 1e-2, then
        ``KNOTS_PER_DECADE`` a decade down to u.
        """
        top = np.asarray(scores.top, dtype=np.float64)
        pairs = scores.pairs
        count = max(MIN_EXCEEDANCES, min(exceedances, math.ceil(pairs * 1e-3)))
        if len(top) <= count:
            raise TailFitError(
                f"the {len(top):,} highest of {pairs:,} pair scores are too few to fit a tail "
                f"on: keep more than {count:,} of them"
            )
        u = float(top[count])
        above = top[top > u] - u
        if len(above) < MIN_EXCEEDANCES or not np.all(np.isfinite(top)):
            raise TailFitError(f"only {len(above)} finite pair scores lie above u = {u:.4f}")
        fraction = len(above) / pairs
        decades = max(0.0, -2.0 - math.log10(fraction))
        steps = np.concatenate(
            [
                1.0 - np.linspace(0.0, 0.99, 199),
                np.logspace(-2.0, math.log10(fraction), 2 + int(decades * KNOTS_PER_DECADE))[1:-1],
            ]
        )
        probabilities = np.append(steps[steps > fraction], fraction)
        ranks = np.rint(probabilities * pairs).astype(np.int64)
        exact = ranks < len(top)
        knots = np.empty(len(probabilities))
        knots[exact] = top[ranks[exact]]
        if not np.all(exact):
            knots[~exact] = np.quantile(scores.sample, 1.0 - probabilities[~exact])
        knots = np.minimum(np.maximum.accumulate(knots), u)  # sample noise must not fold it
        knots[-1] = u
        shape, scale = fit_gpd(above)
        return cls(
            sample_size=pairs,
            threshold=u,
            tail_fraction=fraction,
            shape=shape,
            scale=scale,
            body=tuple(float(k) for k in knots),
            body_exceedance=tuple(float(p) for p in probabilities),
        )

    @property
    def upper_endpoint(self) -> float:
        """The highest score the fitted tail allows (infinite unless the shape is negative)."""
        return self.threshold - self.scale / self.shape if self.shape < 0 else math.inf

    def _body_log_exceedance(self) -> NDArray[np.float64]:
        """log P(score > knot) of the body's knots, between which both directions interpolate
        linearly: exact at the knots, continuous into the GPD at u, and, where knots are
        decades apart, the straight line that an exponential-like tail nearly follows."""
        if self.body_exceedance:
            return np.log(np.asarray(self.body_exceedance, dtype=np.float64))
        below = np.linspace(0.0, 1.0 - self.tail_fraction, len(self.body))
        return np.asarray(np.log1p(-below), dtype=np.float64)

    def exceedance(self, t: float) -> float:
        """p(t) = P(score > t) for one different-person pair: what every count here rests on."""
        if t < self.threshold:
            return math.exp(float(np.interp(t, self.body, self._body_log_exceedance(), left=0.0)))
        z = (t - self.threshold) / self.scale
        if abs(self.shape) < 1e-9:
            return self.tail_fraction * math.exp(-z)
        if 1.0 + self.shape * z <= 0.0:
            return 0.0
        return self.tail_fraction * math.exp(-math.log1p(self.shape * z) / self.shape)

    def score_at(self, p: float) -> float:
        """The score exceeded by a different-person pair with probability ``p`` (inverse)."""
        if not 0.0 < p < 1.0:
            raise ValueError(f"an exceedance probability lies in (0, 1), not {p}")
        if p >= self.tail_fraction:
            log_p = self._body_log_exceedance()[::-1]
            return float(np.interp(math.log(p), log_p, np.asarray(self.body)[::-1]))
        log_ratio = math.log(p / self.tail_fraction)  # < 0
        if abs(self.shape) < 1e-9:
            excess = -self.scale * log_ratio
        else:
            excess = self.scale * math.expm1(-self.shape * log_ratio) / self.shape
        return self.threshold + excess


def fit_gpd(excesses: NDArray[np.float64]) -> tuple[float, float]:
    """Maximum-likelihood (shape, scale) of a GPD on positive excesses over u.

    With ``theta = shape / scale`` the likelihood has the shape in closed form,
    ``shape(theta) = mean(log1p(theta * y))``, leaving a one-dimensional search over ``theta``;
    it is restricted to shapes in ``SHAPE_BOUNDS``, where the estimator is regular (below -1 the
    likelihood is unbounded at the sample maximum).
    """
    y = np.asarray(excesses, dtype=np.float64)
    mean = float(y.mean())

    def shape_of(theta: float) -> float:
        return float(np.mean(np.log1p(theta * y)))

    def profile(theta: float) -> float:
        if abs(theta) * mean < 1e-12:
            return -(math.log(mean) + 1.0)  # the exponential limit
        shape = shape_of(theta)
        return -(math.log(shape / theta) + shape + 1.0)

    low, high = (_theta_for(shape_of, bound, y) for bound in SHAPE_BOUNDS)
    grid = np.concatenate([low + (0.0 - low) * np.linspace(0.0, 1.0, 33)[:-1], [0.0]])
    grid = np.concatenate([grid, np.linspace(0.0, high, 33)[1:]])
    values = [profile(float(theta)) for theta in grid]
    best = int(np.argmax(values))
    a, b = float(grid[max(best - 1, 0)]), float(grid[min(best + 1, len(grid) - 1)])
    golden = (math.sqrt(5.0) - 1.0) / 2.0
    for _ in range(60):
        c, d = b - golden * (b - a), a + golden * (b - a)
        if profile(c) >= profile(d):
            b = d
        else:
            a = c
    theta = (a + b) / 2.0
    if abs(theta) * mean < 1e-12:
        return 0.0, mean
    shape = shape_of(theta)
    return shape, shape / theta


def _theta_for(shape_of: Callable[[float], float], shape: float, y: NDArray[np.float64]) -> float:
    """The ``theta`` at which ``shape(theta)`` (increasing in theta) equals ``shape``."""
    if shape < 0:
        low, high = -(1.0 - 1e-12) / float(y.max()), 0.0
    else:
        low, high = 0.0, 1.0 / float(y.mean())
        while shape_of(high) < shape:
            high *= 2.0
    if shape < 0 and shape_of(low) > shape:
        return low
    for _ in range(200):
        middle = (low + high) / 2.0
        if shape_of(middle) < shape:
            low = middle
        else:
            high = middle
    return (low + high) / 2.0


def _check_gallery_size(gallery_size: int, least: int) -> None:
    if gallery_size < least:
        raise ValueError(f"gallery_size must be at least {least}, not {gallery_size}")


def review_threshold_for(target_fpir: float, gallery_size: int, tail: ImpostorTail) -> float:
    """The smallest threshold whose FPIR against ``gallery_size`` people is at most the target.

    Why: the adjudicators' workload is set by FPIR, not by a score, so the threshold must rise
    as the registry grows. Solves ``p(t) = 1 - (1 - target) ** (1 / N)`` with log1p/expm1,
    which stays exact where ``1 - target ** (1/N)`` would round to zero (N in the billions).
    """
    if not 0.0 < target_fpir < 1.0:
        raise ValueError(f"target_fpir must lie in (0, 1), not {target_fpir}")
    _check_gallery_size(gallery_size, 1)
    per_pair = -math.expm1(math.log1p(-target_fpir) / gallery_size)
    return tail.score_at(per_pair)


def fpir_at(threshold: float, gallery_size: int, tail: ImpostorTail) -> float:
    """FPIR(t, N) = 1 - (1 - p(t)) ** N: the share of non-mated probes sent to review."""
    _check_gallery_size(gallery_size, 0)
    p = tail.exceedance(threshold)
    if p >= 1.0:
        return 1.0 if gallery_size > 0 else 0.0
    return -math.expm1(gallery_size * math.log1p(-p))


def expected_false_candidates(
    threshold: float,
    batch_size: int,
    gallery_size: int,
    tail: ImpostorTail,
    *,
    within_batch: bool = True,
) -> float:
    """Expected different-person pairs above ``threshold`` in tonight's batch.

    ``B * N * p(t)`` against the gallery, plus ``B * (B - 1) / 2 * p(t)`` among the batch's
    own probes when ``within_batch``. This is the forecast of adjudicator workload that the
    run reports beside what adjudicators then decide; being an expectation it holds without
    independence between pairs. Mated probes are counted as non-mated: a few in thousands.
    """
    if batch_size < 0:
        raise ValueError(f"batch_size must be at least 0, not {batch_size}")
    _check_gallery_size(gallery_size, 0)
    pairs = batch_size * gallery_size
    if within_batch:
        pairs += batch_size * (batch_size - 1) // 2
    return pairs * tail.exceedance(threshold)

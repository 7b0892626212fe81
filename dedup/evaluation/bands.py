"""Subject-level bootstrap bands on the curves: DET (FNIR at each FPIR) and CMC.

Each replicate draws the subjects again (``intervals.subject_weights``), re-calibrates the
threshold at every FPIR of the grid on the re-drawn non-mated searches and measures FNIR on the
re-drawn mated ones, so a band holds the threshold's own uncertainty too.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from dedup.evaluation.intervals import (
    percentile_band,
    subject_weights,
    weighted_rate_at_or_above,
    weighted_threshold_at_fpir,
)
from dedup.evaluation.open_set import Floats


@dataclass(frozen=True)
class Bands:
    fpir: list[float]
    fnir_low: list[float]
    fnir_high: list[float]
    cmc_low: list[float]
    cmc_high: list[float]
    replicates: int
    seed: int


def fpir_grid(nonmated: int, points: int = 25) -> Floats:
    """Log-spaced FPIR values from the smallest the non-mated searches can resolve to 0.5."""
    low = min(1.0 / max(nonmated, 1), 0.5)
    return np.geomspace(low, 0.5, points)


def bootstrap_bands(
    nonmated_top: Floats,
    nonmated_subjects: NDArray[np.int64],
    returned: Floats,
    mate_rank: NDArray[np.int64],
    mated_subjects: NDArray[np.int64],
    replicates: int,
    seed: int,
    max_rank: int = 20,
) -> Bands:
    """95% bands of FNIR over ``fpir_grid`` and of CMC(1..max_rank)."""
    grid = fpir_grid(len(nonmated_top))
    subjects = np.r_[nonmated_subjects, mated_subjects]
    draw = subject_weights(subjects, replicates, seed)
    split_at = len(nonmated_top)
    fnir = np.empty((replicates, len(grid)))
    cmc = np.empty((replicates, max_rank))
    ranks = np.where(mate_rank >= 1, mate_rank, max_rank + 1).astype(np.float64)
    for b in range(replicates):
        weights = draw(b)
        w_non, w_mated = weights[:split_at], weights[split_at:]
        thresholds = np.array(
            [weighted_threshold_at_fpir(nonmated_top, w_non, float(f)) for f in grid]
        )
        fnir[b] = 1.0 - weighted_rate_at_or_above(returned, w_mated, thresholds)
        cmc[b] = weighted_rate_at_or_above(-ranks, w_mated, -np.arange(1, max_rank + 1) - 0.5)
    f_lo, f_hi = percentile_band(fnir)
    c_lo, c_hi = percentile_band(cmc)
    return Bands(
        grid.tolist(), f_lo.tolist(), f_hi.tolist(), c_lo.tolist(), c_hi.tolist(), replicates, seed
    )

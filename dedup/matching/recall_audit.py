"""How much the approximate search missed: the recall audit of a batch.

A random share of the probes is searched exactly too, and the candidate recall at the review
threshold (exact candidates that the approximate search also returned) is reported and
compared with the floor (``search.recall_floor``); below it the batch's candidates are not
kept (``RecallBelowFloor``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from dedup.errors import GalleryError
from dedup.gallery.engines import ExactSweepEngine
from dedup.gallery.reader import Gallery


@dataclass(frozen=True)
class RecallAudit:
    probes_sampled: int
    exact_candidates: int
    found: int
    floor: float

    @property
    def recall(self) -> float:
        return self.found / self.exact_candidates if self.exact_candidates else 1.0

    @property
    def passed(self) -> bool:
        return self.recall >= self.floor


class RecallBelowFloor(GalleryError):
    """The approximate search missed more exact candidates than the floor allows."""


def audit_recall(
    gallery: Gallery,
    probes: NDArray[np.float32],
    approx_scores: NDArray[np.float32],
    approx_ids: NDArray[np.int64],
    *,
    threshold: float,
    fraction: float,
    floor: float,
    seed: int = 0,
) -> RecallAudit:
    """Search a random share of the probes exactly; count which exact candidates were found."""
    if fraction <= 0 or len(probes) == 0:
        return RecallAudit(0, 0, 0, floor)
    size = min(len(probes), max(1, math.ceil(fraction * len(probes))))
    sample = np.sort(np.random.default_rng(seed).choice(len(probes), size=size, replace=False))
    k = approx_ids.shape[1]
    exact_scores, exact_ids = ExactSweepEngine().search(gallery, probes[sample], k)
    wanted = _pairs(exact_scores, exact_ids, threshold)
    got = _pairs(approx_scores[sample], approx_ids[sample], threshold)
    return RecallAudit(size, len(wanted), len(wanted & got), floor)


def _pairs(
    scores: NDArray[np.float32], ids: NDArray[np.int64], threshold: float
) -> set[tuple[int, int]]:
    """(probe row, gallery id) of every candidate at or above the threshold."""
    rows, cols = np.nonzero(scores >= threshold)
    return set(zip(rows.tolist(), ids[rows, cols].tolist(), strict=True))

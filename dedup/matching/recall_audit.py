"""How much the approximate search missed: the score-banded recall audit of a batch.

A random share of the probes (``search.audit_fraction``) is searched exactly too. Every exact
top-k pair of a sampled probe is counted in its score band (``BAND_WIDTH`` wide) as found or
not by the approximate search. Two figures come of it:

- the recall in the **genuine band** (at and above its floor, ``genuine_band``), which the
  floor ``search.recall_floor`` applies to: a miss there is a true duplicate lost;
- the candidate recall at the review threshold, reported beside it (below the genuine band,
  candidates are mostly impostors that happen to score high, which an index is not built to
  find and whose loss costs no duplicate).

Below the floor the batch is not failed: ``batch_search`` searches it again, at a higher
``nprobe`` that the gallery measured to reach the target, or with the exact sweep.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from dedup.gallery.engines import ExactSweepEngine
from dedup.gallery.reader import Gallery
from dedup.gallery.recall_bands import banded_counts, pairs_found


@dataclass(frozen=True)
class RecallAudit:
    probes_sampled: int
    # Exact pairs at and above the review threshold, and how many were found.
    exact_candidates: int
    found: int
    floor: float
    # The genuine band: its floor score, its exact pairs and those found.
    band_floor: float = 1.0
    band_pairs: int = 0
    band_found: int = 0
    # (band index, exact pairs, found) for every band holding a pair at or above the lower of
    # the two floors; band b holds scores in [b * BAND_WIDTH, (b + 1) * BAND_WIDTH).
    bands: tuple[tuple[int, int, int], ...] = ()

    @property
    def recall(self) -> float:
        """Candidate recall at the review threshold."""
        return self.found / self.exact_candidates if self.exact_candidates else 1.0

    @property
    def band_recall(self) -> float | None:
        """Recall in the genuine band; None when no sampled probe had a pair there."""
        return self.band_found / self.band_pairs if self.band_pairs else None

    @property
    def passed(self) -> bool:
        band = self.band_recall
        return band is None or band >= self.floor

    def line(self) -> str:
        band = (
            "no exact pair in the genuine band"
            if self.band_recall is None
            else f"genuine band (>= {self.band_floor:.4f}) {self.band_found}/{self.band_pairs} "
            f"= {self.band_recall:.4f}"
        )
        return (
            f"recall audit on {self.probes_sampled} sampled probes: {band} (floor {self.floor}); "
            f"at the threshold {self.found}/{self.exact_candidates} = {self.recall:.4f}"
        )


def audit_recall(
    gallery: Gallery,
    probes: NDArray[np.float32],
    approx_scores: NDArray[np.float32],
    approx_ids: NDArray[np.int64],
    *,
    threshold: float,
    band_floor: float,
    fraction: float,
    floor: float,
    seed: int = 0,
) -> RecallAudit:
    """Search a random share of the probes exactly; count which exact pairs were found."""
    if fraction <= 0 or len(probes) == 0:
        return RecallAudit(0, 0, 0, floor, band_floor)
    size = min(len(probes), max(1, math.ceil(fraction * len(probes))))
    sample = np.sort(np.random.default_rng(seed).choice(len(probes), size=size, replace=False))
    k = approx_ids.shape[1]
    exact_scores, exact_ids = ExactSweepEngine().search(gallery, probes[sample], k)
    approx = approx_ids[sample]
    valid = exact_ids >= 0
    found = pairs_found(exact_ids, approx)
    at_threshold = valid & (exact_scores >= threshold)
    in_band = valid & (exact_scores >= band_floor)
    lowest = min(threshold, band_floor)
    shown = valid & (exact_scores >= lowest)
    bands = tuple(zip(*banded_counts(exact_scores[shown], found[shown]), strict=True))
    return RecallAudit(
        size,
        int(np.count_nonzero(at_threshold)),
        int(np.count_nonzero(found & at_threshold)),
        floor,
        band_floor,
        int(np.count_nonzero(in_band)),
        int(np.count_nonzero(found & in_band)),
        bands,
    )

"""Which search engine a batch gets, and how much the approximate one missed.

The cost model compares the two engines' predicted wall time from the batch size B, the
gallery size N, the dimension d and rates measured on the hardware (``SearchSettings``):

- exact sweep: 2 * B * N * d floating-point operations at the measured matrix-product rate
  (CPU or GPU);
- IVF-PQ: each probe ranks the nlist coarse centroids (2 * nlist * d operations at the
  matrix-product rate), scans about nprobe / nlist of the N codes at the measured time per
  code, and pays a measured fixed cost (fan-out, merge, gathering and re-scoring the
  shortlist).

IVF-PQ is only eligible when its recall, as last measured at the configured ``nprobe``, reaches
the batch's target; otherwise the exact sweep is chosen whatever it costs. The choice and its
reason are reported with every search.

The recall audit then checks the approximate result: a random share of the probes is searched
exactly too, and the candidate recall at the review threshold (exact candidates that the
approximate search also returned) is reported and compared with the floor.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from dedup.errors import GalleryError
from dedup.gallery.engines import ExactSweepEngine
from dedup.gallery.reader import Gallery
from dedup.settings import SearchSettings


@dataclass(frozen=True)
class EngineChoice:
    engine: str  # "exact" or "ivfpq"
    reason: str
    exact_seconds: float
    ivf_seconds: float


def predict_seconds(
    batch: int, gallery: int, dim: int, nlist: int, settings: SearchSettings, gpu: bool
) -> tuple[float, float]:
    """(exact sweep, IVF-PQ) predicted seconds for B probes against N templates."""
    gflops = settings.exact_gflops_gpu if gpu else settings.exact_gflops_cpu
    exact = 2.0 * batch * gallery * dim / (gflops * 1e9)
    scanned = gallery * min(1.0, settings.nprobe / max(nlist, 1))
    ranking = 2.0 * nlist * dim / (gflops * 1e9)
    per_probe = ranking + scanned * settings.ivf_ns_per_code * 1e-9
    ivf = batch * (per_probe + settings.ivf_us_per_probe * 1e-6)
    return exact, ivf


def choose_engine(
    batch: int, gallery: int, dim: int, nlist: int, settings: SearchSettings, gpu: bool = False
) -> EngineChoice:
    exact, ivf = predict_seconds(batch, gallery, dim, nlist, settings, gpu)
    where = "GPU" if gpu else "CPU"
    if settings.engine != "auto":
        return EngineChoice(settings.engine, "set by search.engine", exact, ivf)
    if settings.ivf_measured_recall < settings.target_recall:
        return EngineChoice(
            "exact",
            f"IVF-PQ at nprobe {settings.nprobe} was measured at recall "
            f"{settings.ivf_measured_recall:.4f}, below the target {settings.target_recall:.4f}",
            exact,
            ivf,
        )
    if exact <= ivf:
        return EngineChoice(
            "exact",
            f"the exact sweep is predicted faster on {where} ({exact:.3g} s vs {ivf:.3g} s) "
            "and has no recall loss",
            exact,
            ivf,
        )
    return EngineChoice(
        "ivfpq",
        f"IVF-PQ is predicted {exact / ivf:.1f}x faster on {where} ({ivf:.3g} s vs "
        f"{exact:.3g} s) and reached recall {settings.ivf_measured_recall:.4f} >= target "
        f"{settings.target_recall:.4f}",
        exact,
        ivf,
    )


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

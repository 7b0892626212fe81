"""Measured recall by score band: what a gallery version's manifest records of its index.

``dedup.gallery.recall`` measures it; the planner (``dedup.matching.cost_model``) reads it to
decide whether the index may serve a batch, at which ``nprobe``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from dedup.errors import GalleryError

BAND_WIDTH = 0.01

Method = Literal["exact", "mates"]


def pairs_found(exact_ids: NDArray[np.int64], found_ids: NDArray[np.int64]) -> NDArray[np.bool_]:
    """Whether each exact pair (row, id; -1 is none) is among its row's ``found_ids``."""
    found: NDArray[np.bool_] = (exact_ids[:, :, None] == found_ids[:, None, :]).any(axis=2)
    return found & (exact_ids >= 0)


def banded_counts(
    scores: NDArray[np.floating], found: NDArray[np.bool_]
) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
    """(bands, pairs, found) of exact pairs with these ``scores``, ``found`` or not: band b
    holds scores in [b * BAND_WIDTH, (b + 1) * BAND_WIDTH)."""
    numbers = np.floor(np.asarray(scores, dtype=np.float64) / BAND_WIDTH + 1e-9).astype(np.int64)
    present = np.unique(numbers)
    return (
        tuple(int(b) for b in present),
        tuple(int(np.count_nonzero(numbers == b)) for b in present),
        tuple(int(np.count_nonzero(found[numbers == b])) for b in present),
    )


@dataclass(frozen=True)
class RecallPoint:
    """The index at one ``nprobe``: pairs and found pairs per score band, and its speed."""

    nprobe: int
    bands: tuple[int, ...]  # band b holds scores in [b * BAND_WIDTH, (b + 1) * BAND_WIDTH)
    pairs: tuple[int, ...]
    found: tuple[int, ...]
    us_per_query: float

    def counts_at_or_above(self, score: float) -> tuple[int, int]:
        """(found, pairs) over the bands from the one holding ``score`` up; the whole of that
        band is counted, so the figure leans to the lower scores, which are harder."""
        lowest = math.floor(score / BAND_WIDTH + 1e-9)
        keep = [i for i, band in enumerate(self.bands) if band >= lowest]
        return sum(self.found[i] for i in keep), sum(self.pairs[i] for i in keep)

    def recall_at_or_above(self, score: float) -> float | None:
        """Found / pairs at and above ``score``; None when the sample held no such pair."""
        found, pairs = self.counts_at_or_above(score)
        return found / pairs if pairs else None


@dataclass(frozen=True)
class MeasuredRecall:
    """A measurement of one index: what the gallery's manifest records and the planner reads."""

    method: Method
    queries: int
    k: int
    shortlist: int
    points: tuple[RecallPoint, ...]  # by ascending nprobe
    # The live templates the index held when measured (0: not recorded), so an add can tell
    # how far the gallery has grown since.
    gallery_size: int = 0

    def at(self, nprobe: int) -> RecallPoint | None:
        """The point measured at the largest ``nprobe`` not above the one asked for (recall only
        grows with nprobe, so this never overstates); None below the smallest measured."""
        below = [p for p in self.points if p.nprobe <= nprobe]
        return below[-1] if below else None

    def operating_point(self, score: float, target: float) -> RecallPoint | None:
        """The smallest measured ``nprobe`` whose recall at and above ``score`` reaches
        ``target``; None when none does (or the sample held no pair there)."""
        for point in self.points:
            recall = point.recall_at_or_above(score)
            if recall is not None and recall >= target:
                return point
        return None

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "queries": self.queries,
            "k": self.k,
            "shortlist": self.shortlist,
            "gallery_size": self.gallery_size,
            "band_width": BAND_WIDTH,
            "points": [
                {
                    "nprobe": p.nprobe,
                    "bands": list(p.bands),
                    "pairs": list(p.pairs),
                    "found": list(p.found),
                    "us_per_query": round(p.us_per_query, 3),
                }
                for p in self.points
            ],
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> MeasuredRecall:
        if float(raw["band_width"]) != BAND_WIDTH:
            raise GalleryError(f"recall bands of width {raw['band_width']}, not {BAND_WIDTH}")
        method = str(raw["method"])
        if method not in ("exact", "mates"):
            raise GalleryError(f"recall measured by {method!r}")
        points = tuple(
            RecallPoint(
                int(p["nprobe"]),
                tuple(int(b) for b in p["bands"]),
                tuple(int(c) for c in p["pairs"]),
                tuple(int(c) for c in p["found"]),
                float(p["us_per_query"]),
            )
            for p in raw["points"]
        )
        if any(len(p.bands) != len(p.pairs) or len(p.pairs) != len(p.found) for p in points):
            raise GalleryError("recall bands, pairs and found differ in length")
        if any(f > c for p in points for f, c in zip(p.found, p.pairs, strict=True)):
            raise GalleryError("recall counts more pairs found than there are")
        return cls(
            "exact" if method == "exact" else "mates",
            int(raw["queries"]),
            int(raw["k"]),
            int(raw["shortlist"]),
            tuple(sorted(points, key=lambda p: p.nprobe)),
            int(raw.get("gallery_size", 0)),
        )


def nprobe_ladder(nlist: int, around: int | None = None) -> list[int]:
    """The ``nprobe`` values a measurement tries: powers of two from 8 up to ``nlist``, or the
    four around ``around`` (a half, itself, twice, four times), within 1..nlist.

    >>> nprobe_ladder(2048)
    [8, 16, 32, 64, 128, 256, 512, 1024, 2048]
    >>> nprobe_ladder(50176, around=1024)
    [512, 1024, 2048, 4096]
    """
    if around is not None:
        values = {max(1, min(nlist, around * f // 2)) for f in (1, 2, 4, 8)}
    else:
        values = {min(nlist, 1 << e) for e in range(3, max(4, nlist.bit_length() + 1))}
    return sorted(values)

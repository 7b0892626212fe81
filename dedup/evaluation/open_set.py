"""Open-set 1:N identification metrics, as NIST FRTE reports them.

The protocol (``split``): subjects are shuffled (seeded); a share of them is held out of the
gallery entirely and gives one non-mated search each; every other subject puts one enrollment
in the gallery, and one of its other enrollments, where it has one, is its mated search. So
each mated search has exactly one mate in the gallery.

At a threshold ``t`` and a candidate list of ``rank`` entries (default 1: NIST's "FNIR at rank
1, threshold T", identification at a threshold):

- ``FPIR(t)``: the share of non-mated searches with any candidate scoring at least ``t``;
- ``FNIR(t)``: the share of mated searches whose mate is not returned: it scores below ``t``
  or more than ``rank - 1`` non-mates score at least as high (ties go against the mate);
- the threshold for a target FPIR is the smallest ``t`` with ``FPIR(t) <= target``: just above
  the ``(floor(target * n) + 1)``-th highest non-mated top score;
- CMC(r): the share of mated searches whose mate ranks ``r`` or better at threshold 0
  (investigation mode: any score counts); rank 1 is CMC(1).

Every function here takes scores and ranks only (what ``search`` returns), never a label.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from dedup.errors import EvaluationError
from dedup.evaluation.search import NO_MATE

Floats = NDArray[np.float64]


@dataclass(frozen=True)
class Split:
    """Rows of the evaluation set: the gallery, mated probes (with their mate's gallery
    position) and non-mated probes, in the order the search takes them."""

    gallery: NDArray[np.int64]
    mated: NDArray[np.int64]
    mates: NDArray[np.int64]  # gallery position of each mated probe's mate
    nonmated: NDArray[np.int64]


def split(subjects: NDArray[np.int64], held_out: float, seed: int) -> Split:
    """The open-set protocol over enrollments labelled with subject numbers (module doc).
    The gallery comes in a random order, so its first ``N`` rows are a random gallery of
    ``N``: every mated search whose mate is among them keeps its one mate."""
    if not 0.0 < held_out < 1.0:
        raise ValueError(f"held_out must lie in (0, 1), not {held_out}")
    rng = np.random.default_rng([seed, 1])
    order = rng.permutation(len(subjects))  # enrollments in random order within subjects
    by_subject = order[np.argsort(subjects[order], kind="stable")]
    first = np.r_[0, np.nonzero(np.diff(subjects[by_subject]))[0] + 1]
    counts = np.diff(np.r_[first, len(by_subject)])
    people = rng.permutation(len(first))
    cut = round(held_out * len(people))
    outside, inside = people[:cut], rng.permutation(people[cut:])
    gallery = by_subject[first[inside]]
    two = counts[inside] >= 2
    mated = by_subject[first[inside][two] + 1]
    mates = np.nonzero(two)[0].astype(np.int64)
    nonmated = by_subject[first[outside]]
    if len(mated) == 0 or len(nonmated) == 0:
        raise EvaluationError(
            "the set gives no mated or no non-mated searches: it needs subjects with two "
            "enrollments and enough subjects to hold some out of the gallery"
        )
    return Split(gallery, mated, mates, nonmated)


def returned_scores(mate_score: Floats, mate_rank: NDArray[np.int64], rank: int) -> Floats:
    """The mate's score where the mate is on the candidate list of ``rank`` entries, else
    -inf: a mated search is a hit at ``t`` exactly where this is at least ``t``."""
    on_list = (mate_rank >= 1) & (mate_rank <= rank)
    return np.where(on_list, mate_score, -np.inf)


def rate_at_or_above(scores: Floats, thresholds: Floats) -> Floats:
    """Share of ``scores`` at or above each threshold."""
    ordered = np.sort(scores)
    below = np.searchsorted(ordered, thresholds, side="left")
    return (len(ordered) - below) / max(len(ordered), 1)


def threshold_at_fpir(nonmated_top: Floats, target: float) -> float:
    """The smallest threshold at which at most ``floor(target * n)`` non-mated searches
    return a candidate: just above the next one's top score."""
    if not 0.0 < target < 1.0:
        raise ValueError(f"an FPIR target lies in (0, 1), not {target}")
    ordered = np.sort(nonmated_top)[::-1]
    allowed = math.floor(target * len(ordered) + 1e-9)
    if allowed >= len(ordered):
        return -math.inf
    return float(np.nextafter(ordered[allowed], np.inf))


@dataclass(frozen=True)
class OperatingPoint:
    fpir_target: float
    threshold: float
    fpir: float
    fnir: float
    false_positives: int  # non-mated searches with a candidate
    misses: int  # mated searches without their mate


def operating_point(target: float, nonmated_top: Floats, returned: Floats) -> OperatingPoint:
    t = threshold_at_fpir(nonmated_top, target)
    false_positives = int((nonmated_top >= t).sum())
    misses = int((returned < t).sum())
    return OperatingPoint(
        target,
        t,
        false_positives / len(nonmated_top),
        misses / len(returned),
        false_positives,
        misses,
    )


def det_curve(nonmated_top: Floats, returned: Floats, points: int = 200) -> dict[str, list[float]]:
    """(threshold, FPIR, FNIR) at thresholds through the non-mated top scores, thinned to
    about ``points`` on a log scale of FPIR: the DET / IET curve."""
    ordered = np.unique(nonmated_top[np.isfinite(nonmated_top)])[::-1]
    if len(ordered) > points:
        picks = np.unique(np.geomspace(1, len(ordered), points).astype(np.int64) - 1)
        ordered = ordered[picks]
    fpir = rate_at_or_above(nonmated_top, ordered)
    fnir = 1.0 - rate_at_or_above(returned, ordered)
    return {"threshold": ordered.tolist(), "fpir": fpir.tolist(), "fnir": fnir.tolist()}


def cmc(mate_rank: NDArray[np.int64], max_rank: int = 20) -> Floats:
    """CMC(1..max_rank): share of mated searches whose mate ranks r or better (T = 0)."""
    ranks = mate_rank[mate_rank >= 1]
    counts = np.bincount(np.minimum(ranks, max_rank + 1), minlength=max_rank + 2)[1 : max_rank + 1]
    return np.cumsum(counts) / max(len(mate_rank), 1)


@dataclass(frozen=True)
class GrowthRow:
    gallery_size: int
    mated_searches: int
    fixed_threshold: float
    fixed_fpir: float
    fixed_fnir: float
    calibrated_threshold: float
    calibrated_fpir: float
    calibrated_fnir: float


def growth(
    sizes: tuple[int, ...],
    top_nonmate: Floats,
    mate_rank: NDArray[np.int64],
    mate_score: Floats,
    nonmated: NDArray[np.bool_],
    target: float,
    rank: int = 1,
) -> list[GrowthRow]:
    """FNIR and FPIR per gallery size (rows of ``search``'s result), once at the threshold
    calibrated at the smallest size and held, once re-calibrated to ``target`` at each size.
    A mated search counts at a size only where its mate is in that gallery."""
    rows: list[GrowthRow] = []
    fixed = math.nan
    for k, n in enumerate(sizes):
        top = top_nonmate[k, nonmated]
        used = (~nonmated) & (mate_rank[k] >= 1)
        returned = returned_scores(mate_score[used], mate_rank[k, used], rank)
        point = operating_point(target, top, returned)
        fixed = point.threshold if k == 0 else fixed
        rows.append(
            GrowthRow(
                n,
                int(used.sum()),
                fixed,
                float((top >= fixed).mean()),
                float((returned < fixed).mean()),
                point.threshold,
                point.fpir,
                point.fnir,
            )
        )
    return rows


def mates_of(split_: Split, probes: int) -> NDArray[np.int64]:
    """The mate positions of ``search``'s probes: mated first, then non-mated."""
    mates: NDArray[np.int64] = np.r_[
        split_.mates, np.full(probes - len(split_.mates), NO_MATE)
    ].astype(np.int64)
    return mates

"""Demographic differentials (NIST IR 8280 / 8429, ISO/IEC 19795-10): error rates per group.

At one threshold (the report uses the one calibrated to FPIR 0.003 on all searches, and names
it), over all pairs of enrollments of the evaluation set:

- a group's FMR: the share of its same-group impostor pairs (two different subjects, both of
  the group) scoring at or above the threshold; its FNMR: the share of its genuine pairs (two
  enrollments of one subject) below it; each with a Clopper-Pearson interval;
- for each error type, the ratio of the largest group rate to the geometric mean of all groups'
  rates (None where a group has no error: the geometric mean is then 0);
- the cross-group impostor matrix: FMR over pairs of one subject of group A and one of B;
- a flag where a group's FMR exceeds the best (lowest) group's by more than ``factor`` and
  the two Clopper-Pearson intervals do not overlap: at 1:N thresholds most groups have a
  handful of false matches, and one against none is not a differential;
- each group's FMR over the best group's, with a 95% subject-bootstrap interval. The
  Clopper-Pearson intervals treat pairs as independent, but a template sits in hundreds of
  impostor pairs, so they are too narrow for a ratio; the bootstrap draws subjects with
  replacement (a subject drawn twice is two people whose pairs with each other are excluded,
  like genuine pairs) and re-weights every pair by its two subjects' draws.

The scores come from ``search.pairs_at_or_above`` and ``search.pair_scores``, which take
vectors only; the groups meet the results here, after the search.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, replace

import numpy as np
from numpy.typing import NDArray

from dedup.evaluation.intervals import clopper_pearson, subject_weights
from dedup.evaluation.search import pair_scores, pairs_at_or_above

PAIR_CHUNK = 20_000  # false-match pairs re-weighted at once (replicates x chunk floats)


@dataclass(frozen=True)
class GroupRates:
    group: str
    fmr: float
    fmr_ci: tuple[float, float]
    false_matches: int
    impostor_pairs: int
    fnmr: float
    fnmr_ci: tuple[float, float]
    false_non_matches: int
    genuine_pairs: int
    # FMR over the best (lowest-FMR) group's, and its subject-bootstrap interval
    fmr_to_best: float | None = None
    fmr_to_best_ci: tuple[float, float] | None = None


@dataclass(frozen=True)
class ColumnDifferentials:
    column: str
    threshold: float
    groups: list[GroupRates]
    fmr_max_over_geomean: float | None
    fnmr_max_over_geomean: float | None
    cross_fmr: list[list[float | None]]  # [a][b]: FMR of pairs of group a x group b
    flagged: list[str]  # groups whose FMR exceeds the best group's by more than the factor
    factor: float


@dataclass(frozen=True)
class PairCounts:
    """The pairs of an evaluation set at one threshold, before any group is looked at."""

    subjects: NDArray[np.int64]
    hit_i: NDArray[np.int64]  # pairs i < j at or above the threshold
    hit_j: NDArray[np.int64]
    genuine_i: NDArray[np.int64]  # every same-subject pair i < j
    genuine_j: NDArray[np.int64]
    genuine_scores: NDArray[np.float64]


def score_pairs(
    vectors: NDArray[np.float32], subjects: NDArray[np.int64], threshold: float
) -> PairCounts:
    """All pairs above ``threshold`` and every genuine pair's score."""
    hit_i, hit_j = pairs_at_or_above(vectors, threshold)
    order = np.argsort(subjects, kind="stable")
    starts = np.r_[0, np.nonzero(np.diff(subjects[order]))[0] + 1, len(order)]
    pairs_i: list[int] = []
    pairs_j: list[int] = []
    for a, b in itertools.pairwise(starts):
        members = np.sort(order[a:b])
        for x in range(len(members)):
            for y in range(x + 1, len(members)):
                pairs_i.append(int(members[x]))
                pairs_j.append(int(members[y]))
    gi, gj = np.array(pairs_i, np.int64), np.array(pairs_j, np.int64)
    return PairCounts(subjects, hit_i, hit_j, gi, gj, pair_scores(vectors, gi, gj))


def _ratio(rates: list[float]) -> float | None:
    if not rates or min(rates) <= 0:
        return None
    geomean = math.exp(sum(math.log(r) for r in rates) / len(rates))
    return max(rates) / geomean


def column_differentials(
    column: str,
    labels: list[str],
    pairs: PairCounts,
    threshold: float,
    factor: float = 2.0,
    replicates: int = 1000,
    seed: int = 0,
) -> ColumnDifferentials:
    """The differentials of one group column (one label per enrollment); ``replicates``
    subject draws for the ratios' intervals."""
    names, group = np.unique(np.array(labels, dtype=object), return_inverse=True)
    k = len(names)
    subjects = pairs.subjects
    impostor_hits = np.zeros((k, k), dtype=np.int64)
    different = subjects[pairs.hit_i] != subjects[pairs.hit_j]
    a, b = group[pairs.hit_i[different]], group[pairs.hit_j[different]]
    np.add.at(impostor_hits, (np.minimum(a, b), np.maximum(a, b)), 1)
    all_pairs = _all_pairs(group, k)
    genuine_pairs = np.zeros((k, k), dtype=np.int64)
    np.add.at(genuine_pairs, (group[pairs.genuine_i], group[pairs.genuine_j]), 1)
    genuine_pairs = np.triu(genuine_pairs + genuine_pairs.T - np.diag(np.diag(genuine_pairs)))
    impostors = all_pairs - genuine_pairs
    rows: list[GroupRates] = []
    for g, name in enumerate(names):
        mine = (group[pairs.genuine_i] == g) & (group[pairs.genuine_j] == g)
        misses = int((pairs.genuine_scores[mine] < threshold).sum())
        trials = int(mine.sum())
        hits, tried = int(impostor_hits[g, g]), int(impostors[g, g])
        rows.append(
            GroupRates(
                str(name),
                hits / tried if tried else math.nan,
                clopper_pearson(hits, tried),
                hits,
                tried,
                misses / trials if trials else math.nan,
                clopper_pearson(misses, trials),
                misses,
                trials,
            )
        )
    cross: list[list[float | None]] = [
        [
            None
            if impostors[min(x, y), max(x, y)] == 0
            else float(impostor_hits[min(x, y), max(x, y)] / impostors[min(x, y), max(x, y)])
            for y in range(k)
        ]
        for x in range(k)
    ]
    measured = [r for r in rows if r.impostor_pairs]
    best = min(measured, key=lambda r: r.fmr) if measured else None
    if best is not None and best.fmr > 0:
        draws = bootstrap_fmr(group, k, pairs, replicates, seed)
        lowest = draws[:, list(names).index(best.group)]
        rows = [
            replace(
                r, fmr_to_best=r.fmr / best.fmr, fmr_to_best_ci=_ratio_band(draws[:, g], lowest)
            )
            if r.impostor_pairs
            else r
            for g, r in enumerate(rows)
        ]
    flagged = [
        r.group
        for r in rows
        if r.impostor_pairs
        and best is not None
        and r.fmr > factor * best.fmr
        and r.fmr_ci[0] > best.fmr_ci[1]
        and r.group != best.group
    ]
    return ColumnDifferentials(
        column,
        threshold,
        rows,
        _ratio([r.fmr for r in rows if r.impostor_pairs]),
        _ratio([r.fnmr for r in rows if r.genuine_pairs]),
        cross,
        flagged,
        factor,
    )


def _all_pairs(group: NDArray[np.int64], k: int) -> NDArray[np.int64]:
    """Pairs of enrollments per (group a <= group b), whatever their subjects."""
    sizes = np.bincount(group, minlength=k).astype(np.int64)
    pairs = np.outer(sizes, sizes)
    pairs[np.diag_indices(k)] = sizes * (sizes - 1) // 2
    return np.triu(pairs)


def bootstrap_fmr(
    group: NDArray[np.int64], k: int, pairs: PairCounts, replicates: int, seed: int
) -> NDArray[np.float64]:
    """Each group's same-group FMR in each of ``replicates`` subject draws (replicates x k)."""
    draw = subject_weights(np.unique(pairs.subjects), replicates, seed)  # one weight a subject
    return weighted_fmr(group, k, pairs, np.stack([draw(b) for b in range(replicates)]))


def weighted_fmr(
    group: NDArray[np.int64], k: int, pairs: PairCounts, weights: NDArray[np.float64]
) -> NDArray[np.float64]:
    """Each group's same-group FMR under each row of subject ``weights`` (rows x subjects,
    subjects in sorted order): weights of 1 give the plain rates.

    A subject drawn ``w`` times counts ``w`` times in every pair it is in, so a pair weighs
    ``w_a * w_b``; a group's impostor pairs are then ``(T^2 - sum w_s^2 n_s^2) / 2``, with
    ``n_s`` the subject's enrollments of the group and ``T = sum w_s n_s`` (pairs within one
    subject or between two draws of one subject left out)."""
    names, subject = np.unique(pairs.subjects, return_inverse=True)
    per_group = np.zeros((len(names), k), dtype=np.float64)
    np.add.at(per_group, (subject, group), 1.0)
    totals = weights @ per_group
    impostors = (totals**2 - (weights**2) @ (per_group**2)) / 2
    si, sj = subject[pairs.hit_i], subject[pairs.hit_j]
    same = (si != sj) & (group[pairs.hit_i] == group[pairs.hit_j])
    hits = np.zeros((len(weights), k), dtype=np.float64)
    for g in range(k):
        mine = np.flatnonzero(same & (group[pairs.hit_i] == g))
        for start in range(0, len(mine), PAIR_CHUNK):
            chunk = mine[start : start + PAIR_CHUNK]
            hits[:, g] += (weights[:, si[chunk]] * weights[:, sj[chunk]]).sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(impostors > 0, hits / impostors, np.nan)


def _ratio_band(rates: NDArray[np.float64], best: NDArray[np.float64]) -> tuple[float, float]:
    """The 95% percentile interval of ``rates / best`` over the replicates (a replicate
    where the best group has no false match gives an unbounded ratio)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = np.where(best > 0, rates / best, np.inf)
    kept = np.sort(ratios[~np.isnan(ratios)])
    if not len(kept):
        return math.nan, math.nan
    # order statistics, not interpolation: an unbounded replicate stays unbounded
    last = len(kept) - 1
    return float(kept[int(np.floor(0.025 * last))]), float(kept[int(np.ceil(0.975 * last))])


def ratio_interval(rates: GroupRates) -> tuple[float, float]:
    """The subject-bootstrap interval of a group's FMR over the best group's."""
    if rates.fmr_to_best_ci is None:
        raise ValueError(
            f"group {rates.group!r} has no FMR ratio (the best group has no false match)"
        )
    return rates.fmr_to_best_ci

"""Choosing a gallery's index recipe by measurement on its own templates.

A recipe that ranks well on one distribution can fail on another: fast-scan PQ without
residuals, tuned on the project's calibrated generator, returned under half of the exact top-10
pairs above the threshold on templates with heavier-tailed noise and look-alike clusters. So
``choose_recipe`` tries every candidate that fits the memory budget
(``recipes.candidate_factories``) on a sample of the gallery (at most ``TRIAL_TEMPLATES``):

1. one coarse quantizer is trained on the sample and shared by every candidate, with its
   ``nlist`` scaled down to the sample so that lists hold as many templates as they will at
   full size;
2. each candidate's codes are trained and the sample added, then its recall is measured by
   score band at a ladder of ``nprobe`` (``dedup.gallery.recall``);
3. a candidate qualifies at the smallest ``nprobe`` whose recall at and above the genuine
   band's floor reaches the target; the fastest qualifying candidate (per query, as measured)
   is kept, fewer bytes breaking ties. When none qualifies, the one with the best recall is
   kept and the planner sends the gallery's batches to the exact sweep until it measures better.

The built index is measured again at full size before it is published; that measurement, not
this one, is what the planner reads.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any

import faiss
import numpy as np
from numpy.typing import NDArray

from dedup.gallery.recall import measure_recall
from dedup.gallery.recall_bands import nprobe_ladder
from dedup.gallery.recipes import candidate_factories, default_factory, parse_factory
from dedup.gallery.training import (
    KMEANS_ITERATIONS,
    TWO_LEVEL_FROM,
    train_index,
    two_level_centroids,
)

TRIAL_TEMPLATES = 200_000
TRIAL_QUERIES = 1000
# Below this a gallery is not worth measuring recipes on: the exact sweep serves it anyway.
MIN_TRIAL_TEMPLATES = 20_000


@dataclass(frozen=True)
class RecallTarget:
    """What a gallery's index must reach: ``target`` recall of the exact top ``k`` at and above
    ``floor_score`` (the genuine scores' lower quantile), re-scoring ``shortlist`` per shard."""

    floor_score: float
    target: float = 0.995
    shortlist: int = 300
    k: int = 10


@dataclass(frozen=True)
class Trial:
    factory: str
    bytes_per_template: int
    # Share of the lists the smallest qualifying nprobe visits; None: no nprobe qualified.
    nprobe_share: float | None
    recall: float | None  # at that nprobe (the best measured when none qualified)
    us_per_query: float | None
    seconds: float

    def line(self) -> str:
        recall = "no pair in the band" if self.recall is None else f"recall {self.recall:.4f}"
        where = (
            "never reached the target"
            if self.nprobe_share is None
            else f"at {self.nprobe_share:.1%} of the lists, {self.us_per_query:.0f} us a query"
        )
        return (
            f"  {self.factory}: {self.bytes_per_template} B a template, {recall}, {where} "
            f"({self.seconds:.1f} s to try)"
        )


@dataclass(frozen=True)
class RecipeChoice:
    factory: str
    reason: str
    trials: tuple[Trial, ...] = ()

    def lines(self) -> list[str]:
        tried = [trial.line() for trial in self.trials]
        return [f"index recipe {self.factory}: {self.reason}", *tried]


class TrialIndex:
    """An unpublished index over in-memory templates, searchable by the engines."""

    def __init__(self, index: faiss.Index, vectors: NDArray[np.float32]) -> None:
        self.shards = [(0, index)]
        self.vectors = vectors
        self.tombstones = np.zeros(0, dtype=np.int64)

    def is_live(self, ids: Any) -> NDArray[np.bool_]:
        array = np.asarray(ids, dtype=np.int64)
        live: NDArray[np.bool_] = (array >= 0) & (array < len(self.vectors))
        return live


def choose_recipe(
    data: NDArray[np.float32],
    shards: int,
    goal: RecallTarget,
    *,
    seed: int = 0,
    candidates: list[str] | None = None,
) -> RecipeChoice:
    """The recipe for a gallery of ``data`` over ``shards`` shards (see the module docstring)."""
    n, dim = data.shape
    if n < MIN_TRIAL_TEMPLATES and candidates is None:
        return RecipeChoice(
            default_factory(n, dim, shards),
            f"the default: {n} templates are too few to measure recipes on "
            f"(from {MIN_TRIAL_TEMPLATES}), and the exact sweep serves a gallery this small",
        )
    factories = candidates or candidate_factories(n, dim, shards)
    rng = np.random.default_rng([seed, 5])
    size = min(n, TRIAL_TEMPLATES)
    rows = np.sort(rng.choice(n, size=size, replace=False)) if size < n else np.arange(n)
    sample = np.ascontiguousarray(data[rows], dtype=np.float32)
    full_nlist = parse_factory(factories[0], dim).nlist
    nlist = max(1, round(full_nlist * size / n))
    centroids = coarse_centroids(sample, nlist, seed)
    trials = [_trial(factory, sample, nlist, centroids, goal, seed) for factory in factories]
    qualified = [t for t in trials if t.nprobe_share is not None]
    if qualified:
        best = min(qualified, key=lambda t: (t.us_per_query or 0.0, t.bytes_per_template))
        reason = (
            f"the fastest of {len(trials)} tried to reach recall {goal.target} at and above "
            f"{goal.floor_score:.3f} (the genuine band) on {size} of the templates"
        )
    else:
        best = max(trials, key=lambda t: (t.recall or 0.0, -t.bytes_per_template))
        reason = (
            f"none of {len(trials)} tried reached recall {goal.target} at and above "
            f"{goal.floor_score:.3f} on {size} of the templates; kept the best, and the "
            "planner will use the exact sweep until the gallery's own measurement reaches it"
        )
    return RecipeChoice(best.factory, reason, tuple(trials))


def coarse_centroids(sample: NDArray[np.float32], nlist: int, seed: int) -> NDArray[np.float32]:
    """``nlist`` unit centroids of ``sample``: two-level k-means from ``TWO_LEVEL_FROM``."""
    if nlist >= TWO_LEVEL_FROM:
        return two_level_centroids(sample, nlist, seed)
    kmeans = faiss.Kmeans(
        sample.shape[1],
        nlist,
        niter=KMEANS_ITERATIONS,
        seed=seed,
        spherical=True,
        max_points_per_centroid=max(1, len(sample) // nlist + 1),
    )
    kmeans.train(sample)
    return np.ascontiguousarray(kmeans.centroids, dtype=np.float32)


def _trial(
    factory: str,
    sample: NDArray[np.float32],
    nlist: int,
    centroids: NDArray[np.float32],
    goal: RecallTarget,
    seed: int,
) -> Trial:
    started = time.perf_counter()
    dim = sample.shape[1]
    scaled = re.sub(r"IVF\d+", f"IVF{nlist}", factory)
    index = train_index(scaled, parse_factory(scaled, dim), sample, seed, centroids=centroids)
    index.add_with_ids(sample, np.arange(len(sample), dtype=np.int64))
    measured = measure_recall(
        TrialIndex(index, sample),
        nprobe_ladder(nlist),
        shortlist=goal.shortlist,
        k=goal.k,
        queries=TRIAL_QUERIES,
        seed=seed,
    )
    point = measured.operating_point(goal.floor_score, goal.target)
    if point is None:
        best = max(measured.points, key=lambda p: p.recall_at_or_above(goal.floor_score) or 0.0)
        recall, share, speed = best.recall_at_or_above(goal.floor_score), None, None
    else:
        recall = point.recall_at_or_above(goal.floor_score)
        share, speed = point.nprobe / nlist, point.us_per_query
    return Trial(
        factory,
        parse_factory(factory, dim).bytes_per_template,
        share,
        recall,
        speed,
        time.perf_counter() - started,
    )

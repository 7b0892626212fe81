"""How much of the exact search an index returns, by score band, measured on its own templates.

``measure_recall`` searches a sample of the gallery's live templates both exactly and with the
index at several ``nprobe``:

- **self queries**: a sampled template itself, its own id excluded from both answers, so the
  pairs are its natural nearest neighbours (look-alikes, relatives, and impostors further down);
- **planted queries**: a sampled template moved to a chosen cosine ``t`` from itself
  (``t * x + sqrt(1 - t^2) * u``, ``u`` a random unit direction orthogonal to ``x``), with ``t``
  spread evenly from the population's typical impostor score to 1. These weight the
  near-threshold and genuine bands, where natural pairs are rare and a miss costs the registry a
  duplicate.

A pair is one of the exact top ``k`` of a query; it is found when the index's top ``k`` (after
exact re-scoring) holds it too. Pairs are counted in bands ``BAND_WIDTH`` wide, so a reader can
ask for the recall at and above any score (the genuine band's floor, a review threshold).

``method="mates"`` skips the exact search and counts only each planted query's own template:
what an add measures, so that its cost does not grow with the gallery.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from dedup.errors import GalleryError
from dedup.gallery.engines import ExactSweepEngine, IvfPqEngine, Searchable
from dedup.gallery.recall_bands import (
    MeasuredRecall,
    Method,
    RecallPoint,
    banded_counts,
    pairs_found,
)

# Queries of a measurement: half self, half planted.
DEFAULT_QUERIES = 2000
# Planted cosines stop short of 1, where a query is its own template again.
PLANTED_TOP = 0.995


def measure_recall(
    gallery: Searchable,
    nprobes: Sequence[int],
    *,
    shortlist: int,
    k: int = 10,
    queries: int = DEFAULT_QUERIES,
    method: Method = "exact",
    seed: int = 0,
    pick_from: NDArray[np.int64] | None = None,
) -> MeasuredRecall:
    """Measure the gallery's index at each of ``nprobes`` (see the module docstring).

    ``pick_from`` restricts the sampled templates (an add samples its own batch and the old
    gallery alike); by default any live template may be picked.
    """
    rng = np.random.default_rng([seed, 11])
    live = pick_from if pick_from is not None else np.arange(len(gallery.vectors))
    live = live[gallery.is_live(live)]
    if len(live) < 2:
        raise GalleryError("a recall measurement needs at least two live templates")
    picked = np.sort(rng.choice(live, size=min(queries, len(live)), replace=False))
    rng.shuffle(picked)
    self_ids = picked[: len(picked) // 2] if method == "exact" else picked[:0]
    mates = picked[len(self_ids) :]
    own = np.asarray(gallery.vectors[np.sort(picked)], dtype=np.float32)
    by_id = dict(zip(np.sort(picked).tolist(), range(len(picked)), strict=True))
    vectors = own[[by_id[g] for g in picked.tolist()]]
    planted, targets = _planted(vectors[len(self_ids) :], rng)
    probes = np.ascontiguousarray(np.concatenate([vectors[: len(self_ids)], planted]))
    if method == "exact":
        exact_scores, exact_ids = _without_self(
            *ExactSweepEngine().search(gallery, probes, k + 1), self_ids, k
        )
    else:  # the planted query's own template, at the cosine it was planted at
        exact_scores = targets[:, None].astype(np.float32)
        exact_ids = mates[:, None]
    points = []
    for nprobe in sorted(set(nprobes)):
        engine = IvfPqEngine(nprobe=nprobe, shortlist=shortlist)
        started = time.perf_counter()
        scores, ids = engine.search(gallery, probes, k + 1)
        seconds = time.perf_counter() - started
        _, ids = _without_self(scores, ids, self_ids, k)
        points.append(_banded(nprobe, exact_scores, exact_ids, ids, seconds, len(probes)))
    return MeasuredRecall(method, len(probes), k, shortlist, tuple(points))


def _planted(
    vectors: NDArray[np.float32], rng: np.random.Generator
) -> tuple[NDArray[np.float32], NDArray[np.float64]]:
    """Each template moved to a cosine spread from the typical impostor score to 1."""
    if not len(vectors):
        return vectors, np.zeros(0)
    pairs = min(len(vectors) // 2, 500)
    typical = float(np.median(np.einsum("nd,nd->n", vectors[:pairs], vectors[-pairs:])))
    low = min(max(typical, -0.5), PLANTED_TOP - 0.05) if pairs else 0.5
    targets = np.linspace(low, PLANTED_TOP, len(vectors))
    rng.shuffle(targets)
    x = vectors.astype(np.float64)
    noise = rng.normal(size=x.shape)
    noise -= np.einsum("nd,nd->n", noise, x)[:, None] * x
    noise /= np.linalg.norm(noise, axis=1, keepdims=True)
    moved = targets[:, None] * x + np.sqrt(1.0 - targets**2)[:, None] * noise
    moved /= np.linalg.norm(moved, axis=1, keepdims=True)
    return moved.astype(np.float32), targets


def _without_self(
    scores: NDArray[np.float32], ids: NDArray[np.int64], self_ids: NDArray[np.int64], k: int
) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
    """Each row's first ``k`` answers, a self query's own id removed from its row."""
    rows = len(self_ids)
    drop = np.zeros(ids.shape, dtype=bool)
    drop[:rows] = ids[:rows] == self_ids[:, None]
    # Stable: rows keep their order, dropped entries move to the end.
    order = np.argsort(drop, axis=1, kind="stable")
    scores = np.take_along_axis(np.where(drop, -np.inf, scores), order, axis=1)[:, :k]
    ids = np.take_along_axis(np.where(drop, -1, ids), order, axis=1)[:, :k]
    return scores.astype(np.float32), ids


def _banded(
    nprobe: int,
    exact_scores: NDArray[np.float32],
    exact_ids: NDArray[np.int64],
    found_ids: NDArray[np.int64],
    seconds: float,
    queries: int,
) -> RecallPoint:
    valid = exact_ids >= 0
    found = pairs_found(exact_ids, found_ids)
    bands, pairs, hits = banded_counts(exact_scores[valid], found[valid])
    return RecallPoint(nprobe, bands, pairs, hits, round(seconds / max(queries, 1) * 1e6, 3))

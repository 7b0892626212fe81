"""The non-mated scores an impostor tail is fitted on: random pairs, or every pair of a set.

``sample_impostor_scores`` draws random pairs one by one (a gather of two templates each);
``score_all_pairs`` scores every pair ``i < j`` of a set of templates by blocked matrix
products, which BLAS runs at its full rate, and keeps the ``keep`` highest exactly, plus an
even sample of the rest. Per pair, the second is about 300 times cheaper (on two quiet x86_64
cores, 1e7 random pairs of 200,000 templates took 10 s, all 2e10 pairs of them 69 s), and it
sees every pair of the set's high-scoring templates, which are what the far tail is made of.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

IndexArray = NDArray[np.int64]
Exclude = Callable[[IndexArray, IndexArray], NDArray[np.bool_]] | Collection[tuple[int, int]]

PAIR_CHUNK = 65_536  # random pairs scored per gather, to bound memory (about 32 MiB at 128 dims)
BLOCK = 4096  # rows per side of a block product: 64 MiB of float32 scores


def pair_count(n: int) -> int:
    """The number of unordered pairs ``i < j`` of ``n`` rows."""
    return n * (n - 1) // 2


@dataclass(frozen=True)
class PairScores:
    """Every pair's score of a set of templates, summarised for a tail fit."""

    pairs: int  # how many pairs were scored: n (n - 1) / 2
    top: NDArray[np.float32]  # the highest scores of them all, exactly, highest first
    sample: NDArray[np.float32]  # an even sample of all of them (every pair when few)


def score_all_pairs(
    vectors: NDArray[np.floating],
    keep: int,
    *,
    sample: int = 4_000_000,
    block: int = BLOCK,
    seed: int = 0,
) -> PairScores:
    """The ``keep`` highest float32 cosines over all pairs ``i < j`` of unit-length
    ``vectors`` (every pair's when there are fewer), and about ``sample`` of all the scores.

    The scores above a running cutoff are kept: the cutoff is the ``keep``-th highest so far,
    so it only rises, and after the first blocks one pass of row maxima drops nearly every
    row of a block. The sample takes every ``k``-th row and column of each block at a random
    offset, so each pair has about the same chance ``1 / k^2`` of being in it, at no extra
    products. Memory: one ``block x block`` score buffer, a copy of its rows that hold a kept
    score, at most ``3 * keep`` kept scores and the sample.
    """
    x = np.ascontiguousarray(vectors, dtype=np.float32)
    if x.ndim != 2 or len(x) < 2:
        raise ValueError("vectors must be a (count, dim) array of at least two rows")
    if keep < 1 or block < 1 or sample < 1:
        raise ValueError(
            f"keep, sample and block must be at least 1, not {keep}, {sample}, {block}"
        )
    n = len(x)
    pairs = pair_count(n)
    keep = min(keep, pairs)
    stride = max(1, int(np.sqrt(pairs / sample)))
    rng = np.random.default_rng(seed)
    side = min(block, n)
    scores = np.empty((side, side), dtype=np.float32)
    lower = np.tril(np.ones((side, side), dtype=np.bool_))  # i >= j within a diagonal block
    kept: list[NDArray[np.float32]] = []
    even: list[NDArray[np.float32]] = []
    held, cutoff = 0, -np.inf
    for i0 in range(0, n, side):
        rows = x[i0 : i0 + side]
        for j0 in range(i0, n, side):
            s = scores[: len(rows), : min(side, n - j0)]
            np.matmul(rows, x[j0 : j0 + side].T, out=s)
            if j0 == i0:
                s[lower[: s.shape[0], : s.shape[1]]] = -np.inf
            a, b = rng.integers(0, stride, size=2)
            grid = s[a::stride, b::stride].ravel()
            even.append(grid[grid > -np.inf])
            # One pass of row maxima finds the few rows with a score above the cutoff; only
            # those are compared element by element.
            hot = s[np.flatnonzero(s.max(axis=1) > cutoff)]
            hits = hot[hot > cutoff]
            if len(hits):
                kept.append(hits)
                held += len(hits)
            if held > 2 * keep or (cutoff == -np.inf and held >= keep):
                kept = [_highest(kept, keep)]
                held, cutoff = keep, float(kept[0][0])
    top = np.sort(_highest(kept, keep))[::-1].copy()
    return PairScores(pairs=pairs, top=top, sample=np.concatenate(even))


def _highest(parts: list[NDArray[np.float32]], keep: int) -> NDArray[np.float32]:
    """The ``keep`` highest of the scores in ``parts``, their lowest first, the rest unordered."""
    values = np.concatenate(parts)
    if len(values) <= keep:
        return np.sort(values)
    cut = len(values) - keep
    return np.partition(values, cut)[cut:]  # the partition puts the cut's order statistic first


def sample_impostor_scores(
    templates: NDArray[np.floating],
    pairs: int,
    seed: int,
    exclude: Exclude | None = None,
) -> NDArray[np.float64]:
    """Cosines of ``pairs`` random pairs ``i != j`` of unit-length ``templates``.

    Uniform random pairs give the score distribution that a probe meets across the gallery,
    at the cost of a sample rather than all ``n^2 / 2`` pairs. The caller knows which
    templates are the same person: ``exclude`` is either a set of index pairs ``(i, j)``
    (either order) or a function of the index arrays ``(i, j)`` that returns True for pairs to
    drop. Scores are float32 dot products, as the search computes them.
    """
    vectors = np.asarray(templates)
    if vectors.ndim != 2 or len(vectors) < 2:
        raise ValueError("templates must be a (count, dim) array of at least two templates")
    if pairs < 1:
        raise ValueError(f"pairs must be at least 1, not {pairs}")
    n = len(vectors)
    dropped = _exclusion(exclude, n)
    rng = np.random.default_rng(seed)
    chunks: list[NDArray[np.float64]] = []
    found, barren = 0, 0
    while found < pairs:
        want = min(pairs - found, PAIR_CHUNK)
        draw = want + want // 8 + 16
        i = rng.integers(0, n, size=draw, dtype=np.int64)
        j = rng.integers(0, n, size=draw, dtype=np.int64)
        keep = (i != j) & ~dropped(i, j)
        i, j = i[keep][:want], j[keep][:want]
        barren = barren + 1 if len(i) == 0 else 0
        if barren > 100:
            raise ValueError("exclude removes (nearly) every pair: no impostor pairs to sample")
        scores = np.einsum("ij,ij->i", vectors[i], vectors[j])
        chunks.append(scores.astype(np.float64))
        found += len(i)
    return np.concatenate(chunks)


def _exclusion(
    exclude: Exclude | None, n: int
) -> Callable[[IndexArray, IndexArray], NDArray[np.bool_]]:
    if exclude is None:
        return lambda i, j: np.zeros(len(i), dtype=np.bool_)
    if callable(exclude):
        return lambda i, j: np.asarray(exclude(i, j), dtype=np.bool_)
    known = np.array(sorted(exclude), dtype=np.int64).reshape(-1, 2)
    keys = np.unique(np.concatenate([known[:, 0] * n + known[:, 1], known[:, 1] * n + known[:, 0]]))
    return lambda i, j: np.isin(i * n + j, keys)

"""Exact 1:N search for evaluation: vectors in, scores and ranks out, nothing else.

This module sees only vectors and positions (which gallery row is a probe's mate): never a
subject's group, so no demographic field can reach a score (the brief's rule;
``tests/unit/test_evaluate_differentials.py`` holds it by this module's imports and signatures
and by a run with shuffled groups). Cosine similarity of unit vectors, in float32 blocks of
probes against the whole gallery, so 100k x 100k needs ``CHUNK * gallery`` floats at a time
(about 400 MB at the default), never the whole score matrix.

Galleries of several sizes are searched in one pass: the gallery is given in an order whose
first ``N`` rows are the gallery of size ``N`` (nested galleries), and every reduction is taken
over each prefix.

Ties go against the mate: a non-mate scoring exactly the mate's score ranks ahead of it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

CHUNK = 1024  # probes per block of scores
NO_MATE = -1


@dataclass(frozen=True)
class SearchResult:
    """Per gallery size (rows) and probe (columns).

    ``top_nonmate``: the highest score of a non-mate in that gallery (-inf if none);
    ``mate_rank``: 1 + how many non-mates score at or above the mate (0 where the probe has no
    mate in that gallery); ``mate_score``: per probe, the mate's score (NaN without a mate).
    """

    sizes: tuple[int, ...]
    top_nonmate: NDArray[np.float64]
    mate_rank: NDArray[np.int64]
    mate_score: NDArray[np.float64]


def search(
    probes: NDArray[np.float32],
    gallery: NDArray[np.float32],
    mates: NDArray[np.int64],
    sizes: Sequence[int] | None = None,
    chunk: int = CHUNK,
) -> SearchResult:
    """Score every probe against the first ``N`` gallery rows for each ``N`` in ``sizes``
    (default: the whole gallery). ``mates[i]`` is probe ``i``'s mate's gallery row or
    ``NO_MATE``; a mate at row ``N`` or beyond is not in the gallery of size ``N``."""
    sizes = tuple(sizes) if sizes is not None else (len(gallery),)
    if any(not 0 < n <= len(gallery) for n in sizes):
        raise ValueError(f"gallery sizes must lie in 1..{len(gallery)}, not {sizes}")
    if len(mates) != len(probes):
        raise ValueError("one mate position per probe")
    p = np.ascontiguousarray(probes, dtype=np.float32)
    g = np.ascontiguousarray(gallery, dtype=np.float32)
    top = np.full((len(sizes), len(p)), -np.inf)
    rank = np.zeros((len(sizes), len(p)), dtype=np.int64)
    mate_score = np.full(len(p), np.nan)
    for start in range(0, len(p), chunk):
        rows = slice(start, start + chunk)
        scores = (p[rows] @ g.T).astype(np.float64)
        block_mates = mates[rows]
        has = block_mates != NO_MATE
        local = np.nonzero(has)[0]
        own = np.full(len(block_mates), np.nan)
        own[local] = scores[local, block_mates[local]]
        scores[local, block_mates[local]] = -np.inf  # what is left are the non-mates
        mate_score[rows] = own
        at_or_above = scores >= np.where(has, own, np.inf)[:, None]
        for k, n in enumerate(sizes):
            top[k, rows] = scores[:, :n].max(axis=1)
            present = has & (block_mates < n)
            rank[k, rows] = np.where(present, 1 + at_or_above[:, :n].sum(axis=1), 0)
    return SearchResult(sizes, top, rank, mate_score)


def pairs_at_or_above(
    vectors: NDArray[np.float32], threshold: float, chunk: int = CHUNK
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Every pair ``i < j`` of rows whose cosine is at least ``threshold`` (as float32 dot
    products, like ``search``), without holding all pairs' scores at once."""
    v = np.ascontiguousarray(vectors, dtype=np.float32)
    found_i: list[NDArray[np.int64]] = []
    found_j: list[NDArray[np.int64]] = []
    for start in range(0, len(v), chunk):
        scores = (v[start : start + chunk] @ v[start:].T).astype(np.float64)
        i, j = np.nonzero(scores >= threshold)
        keep = j > i  # the block's columns start at its own first row
        found_i.append(i[keep] + start)
        found_j.append(j[keep] + start)
    return np.concatenate(found_i), np.concatenate(found_j)


def pair_scores(
    vectors: NDArray[np.float32], i: NDArray[np.int64], j: NDArray[np.int64]
) -> NDArray[np.float64]:
    """Cosines of the given pairs of rows (float32 products, as ``search`` computes them)."""
    v = np.asarray(vectors, dtype=np.float32)
    out = np.empty(len(i))
    for start in range(0, len(i), 65_536):
        a, b = i[start : start + 65_536], j[start : start + 65_536]
        out[start : start + 65_536] = np.einsum("ij,ij->i", v[a], v[b])
    return out

"""Open-set metrics against an obviously-correct implementation: Python loops over every
probe and gallery entry, on small random sets, and hypothesis over score lists."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.typing import NDArray

from dedup.evaluation import open_set
from dedup.evaluation.search import NO_MATE, search


def unit_rows(rng: np.random.Generator, n: int, dim: int = 8) -> NDArray[np.float32]:
    v = rng.normal(size=(n, dim)).astype(np.float32)
    rows: NDArray[np.float32] = v / np.linalg.norm(v, axis=1, keepdims=True)
    return rows


def brute_search(
    probes: NDArray[np.float32], gallery: NDArray[np.float32], mates: NDArray[np.int64], n: int
) -> tuple[list[float], list[int]]:
    """Top non-mate score and mate rank against the first n gallery rows, by loops."""
    tops: list[float] = []
    ranks: list[int] = []
    for i, p in enumerate(probes):
        scores = [float(np.dot(p, gallery[j])) for j in range(n)]
        mate = int(mates[i])
        nonmates = [s for j, s in enumerate(scores) if j != mate]
        tops.append(max(nonmates) if nonmates else -math.inf)
        if mate == NO_MATE or mate >= n:
            ranks.append(0)
        else:
            ranks.append(1 + sum(1 for s in nonmates if s >= scores[mate]))
    return tops, ranks


def test_search_matches_loops_for_every_nested_gallery() -> None:
    rng = np.random.default_rng(3)
    gallery, probes = unit_rows(rng, 40), unit_rows(rng, 25)
    probes[:10] = gallery[[3, 7, 39, 0, 12, 20, 21, 5, 30, 38]] + 0.3 * probes[:10]
    mates = np.r_[[3, 7, 39, 0, 12, 20, 21, 5, 30, 38], np.full(15, NO_MATE)].astype(np.int64)
    sizes = (10, 25, 40)
    result = search(probes, gallery, mates, sizes, chunk=7)  # blocks split the probes unevenly
    for k, n in enumerate(sizes):
        tops, ranks = brute_search(probes, gallery, mates, n)
        assert np.allclose(result.top_nonmate[k], tops, atol=1e-6)
        assert result.mate_rank[k].tolist() == ranks


def brute_threshold(scores: list[float], target: float) -> float:
    """The smallest candidate threshold with FPIR <= target, trying every score's successor."""
    candidates = sorted({*scores, *(float(np.nextafter(s, np.inf)) for s in scores)})
    for t in candidates:
        if sum(1 for s in scores if s >= t) / len(scores) <= target + 1e-12:
            return t
    raise AssertionError("the successor of the highest score always qualifies")


scores_strategy = st.lists(
    st.integers(0, 40).map(lambda v: v / 40.0), min_size=1, max_size=60
)  # coarse values: many ties


@settings(max_examples=60, deadline=None)
@given(scores=scores_strategy, target=st.sampled_from([0.001, 0.01, 0.05, 0.2, 0.5]))
def test_threshold_at_fpir_is_the_smallest_that_meets_the_target(
    scores: list[float], target: float
) -> None:
    found = open_set.threshold_at_fpir(np.array(scores), target)
    if math.isinf(found):  # every search may return a candidate
        assert math.floor(target * len(scores) + 1e-9) >= len(scores)
        return
    assert found == brute_threshold(scores, target)


@settings(max_examples=50, deadline=None)
@given(
    mated=st.lists(st.tuples(st.integers(0, 20), st.integers(0, 5)), min_size=1, max_size=40),
    nonmated=st.lists(st.integers(0, 20), min_size=1, max_size=40),
    rank=st.integers(1, 3),
)
def test_fnir_fpir_and_cmc_match_loops(
    mated: list[tuple[int, int]], nonmated: list[int], rank: int
) -> None:
    mate_score = np.array([s / 20 for s, _ in mated])
    mate_rank = np.array([r for _, r in mated], dtype=np.int64)  # 0: mate not in the gallery
    top = np.array([s / 20 for s in nonmated])
    returned = open_set.returned_scores(mate_score, mate_rank, rank)
    curve = open_set.det_curve(top, returned)
    for t, fpir, fnir in zip(curve["threshold"], curve["fpir"], curve["fnir"], strict=True):
        assert fpir == sum(1 for s in nonmated if s / 20 >= t) / len(nonmated)
        misses = sum(1 for s, r in mated if not (1 <= r <= rank and s / 20 >= t))
        assert fnir == pytest.approx(misses / len(mated))
    cmc = open_set.cmc(mate_rank, 5)
    for r in range(1, 6):
        assert cmc[r - 1] == pytest.approx(sum(1 for _, k in mated if 1 <= k <= r) / len(mated))


def test_split_gives_each_mated_search_one_mate_and_holds_non_mated_subjects_out() -> None:
    rng = np.random.default_rng(0)
    subjects = rng.integers(0, 60, 200)
    parts = open_set.split(subjects, 0.4, seed=1)
    gallery_subjects = subjects[parts.gallery]
    assert len(set(gallery_subjects.tolist())) == len(parts.gallery)  # one entry a subject
    for probe, mate in zip(parts.mated, parts.mates, strict=True):
        assert subjects[parts.gallery[mate]] == subjects[probe]
        assert parts.gallery[mate] != probe
    assert not set(subjects[parts.nonmated].tolist()) & set(gallery_subjects.tolist())
    again = open_set.split(subjects, 0.4, seed=1)
    assert np.array_equal(again.gallery, parts.gallery)  # seeded
    assert np.array_equal(again.mated, parts.mated)


def test_growth_holds_the_smallest_gallerys_threshold_and_recalibrates_the_other() -> None:
    rng = np.random.default_rng(5)
    gallery, probes = unit_rows(rng, 300), unit_rows(rng, 400)
    mates = np.r_[np.arange(200), np.full(200, NO_MATE)].astype(np.int64)
    probes[:200] = gallery[:200] + 0.5 * probes[:200]
    probes /= np.linalg.norm(probes, axis=1, keepdims=True)
    sizes = (50, 150, 300)
    result = search(probes, gallery, mates, sizes)
    nonmated = mates == NO_MATE
    rows = open_set.growth(
        sizes, result.top_nonmate, result.mate_rank, result.mate_score, nonmated, 0.01
    )
    assert rows[0].fixed_threshold == rows[0].calibrated_threshold
    assert all(r.fixed_threshold == rows[0].fixed_threshold for r in rows)
    assert [r.mated_searches for r in rows] == [50, 150, 200]
    for k, row in enumerate(rows):
        top = result.top_nonmate[k, nonmated]
        assert row.calibrated_threshold == open_set.threshold_at_fpir(top, 0.01)
        assert row.fixed_fpir == float((top >= row.fixed_threshold).mean())
    assert rows[-1].fixed_fpir >= rows[0].fixed_fpir  # more people, more false candidates

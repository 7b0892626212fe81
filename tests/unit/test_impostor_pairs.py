"""Every pair of a set of templates, scored in blocks: the highest scores must be exactly those
of a full sort, whatever the block size, and the even sample must look like all the pairs."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.typing import NDArray

from dedup.matching.impostor_pairs import pair_count, score_all_pairs


def unit_rows(n: int, dim: int, seed: int) -> NDArray[np.float32]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, dim)) + 2.0  # a shared direction, as face templates have
    rows: NDArray[np.float32] = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    return rows


def every_pair(x: NDArray[np.float32]) -> NDArray[np.float64]:
    """All scores i < j, highest first, in float64: the reference a blocked float32 product
    must agree with to float32 rounding."""
    wide = x.astype(np.float64)
    scores = (wide @ wide.T)[np.triu_indices(len(x), k=1)]
    return np.sort(scores)[::-1]


@pytest.mark.parametrize(
    ("keep", "block"),
    [
        (1, 4096),  # one block holds everything
        (100, 256),  # 1,501 rows: partial blocks at the edges, diagonal blocks masked
        (5_000, 97),  # many small blocks, the cutoff raised many times
        (2_000_000, 500),  # more than there are pairs: every pair comes back
    ],
)
def test_the_kept_scores_are_the_highest_of_a_full_sort(keep: int, block: int) -> None:
    x = unit_rows(1501, 16, seed=1)
    reference = every_pair(x)
    got = score_all_pairs(x, keep, block=block, sample=1000).top
    assert len(got) == min(keep, pair_count(1501)) and got.dtype == np.float32
    assert np.all(np.diff(got) <= 0)  # highest first
    np.testing.assert_allclose(got, reference[: len(got)], rtol=0, atol=1e-6)


def test_the_sample_is_every_pair_when_there_are_few_and_an_even_share_otherwise() -> None:
    x = unit_rows(1200, 16, seed=2)
    reference = every_pair(x)
    everything = score_all_pairs(x, 10, sample=10**7, block=256)
    assert everything.pairs == len(reference) == 1200 * 1199 // 2
    np.testing.assert_allclose(np.sort(everything.sample)[::-1], reference, rtol=0, atol=1e-6)
    some = score_all_pairs(x, 10, sample=20_000, block=256, seed=3)
    assert 0.6 * 20_000 <= len(some.sample) <= 1.6 * 20_000
    probabilities = [0.01, 0.1, 0.5, 0.9, 0.99]
    np.testing.assert_allclose(
        np.quantile(some.sample, probabilities),
        np.quantile(reference, probabilities),
        atol=0.02 * float(reference[0] - reference[-1]),
    )


def test_fewer_than_two_rows_or_nothing_to_keep_is_refused() -> None:
    with pytest.raises(ValueError, match="at least two rows"):
        score_all_pairs(unit_rows(1, 8, seed=0), 10)
    with pytest.raises(ValueError, match="at least 1"):
        score_all_pairs(unit_rows(10, 8, seed=0), 0)

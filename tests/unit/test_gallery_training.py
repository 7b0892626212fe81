"""Training at large list counts: two-level k-means, jittered tiny galleries, fast scan."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import faiss
import numpy as np
import pytest

from dedup.evaluation.synthetic import TemplateSynth
from dedup.gallery import training
from dedup.gallery.engines import IvfPqEngine
from dedup.gallery.reader import open_gallery
from dedup.gallery.recipes import parse_factory
from dedup.gallery.training import split_lists, train_index, two_level_centroids
from dedup.gallery.writer import build_gallery

pytestmark = pytest.mark.usefixtures("one_faiss_thread")

DIM = 32


def templates(n: int, seed: int = 0) -> np.ndarray:
    synth = TemplateSynth(DIM, seed)
    return synth.captures(synth.identities(0, n), stream=0)


def test_split_lists_shares_every_list_and_serves_every_cluster() -> None:
    sizes = np.array([1000, 10, 1, 0, 500])
    shares = split_lists(sizes, 64)
    assert shares.sum() == 64
    assert shares[3] == 0 and (shares[[0, 1, 2, 4]] >= 1).all()
    assert shares[0] > shares[4] > shares[1]


def test_two_level_centroids_are_unit_deterministic_and_cover_the_data() -> None:
    sample = templates(20_000)
    centroids = two_level_centroids(sample, 256, seed=3)
    assert centroids.shape == (256, DIM) and centroids.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(centroids, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(centroids, two_level_centroids(sample, 256, seed=3))
    flat = faiss.IndexFlatIP(DIM)
    flat.add(centroids)
    _, nearest = flat.search(sample, 1)
    counts = np.bincount(nearest.ravel(), minlength=256)
    # Every list is used and none swallows the data (even split: 78 each).
    assert counts.min() > 0 and counts.max() < 8 * len(sample) / 256


def test_train_index_uses_two_level_centroids_from_the_threshold(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sample = templates(20_000)
    spec = parse_factory("IVF128,PQ16x4fs", DIM)
    monkeypatch.setattr(training, "TWO_LEVEL_FROM", 128)
    index = train_index("IVF128,PQ16x4fs", spec, sample, seed=1)
    quantizer = faiss.extract_index_ivf(index).quantizer
    assert index.is_trained and quantizer.ntotal == 128
    np.testing.assert_array_equal(
        quantizer.reconstruct_n(0, 128), two_level_centroids(sample, 128, seed=1)
    )


def test_a_fast_scan_gallery_finds_each_template_and_counts_its_padding(tmp_path: Path) -> None:
    data = templates(6_000)
    names = [f"e{i:05d}" for i in range(len(data))]
    build_gallery(
        tmp_path / "g",
        names,
        data,
        model_id="m",
        batch_id="b",
        shards=2,
        factory="IVF16,PQ16x4fs",
    )
    gallery = open_gallery(tmp_path / "g")
    scores, ids = IvfPqEngine(nprobe=16, shortlist=20).search(gallery, data[:200], 1)
    np.testing.assert_array_equal(ids[:, 0], np.arange(200))
    np.testing.assert_allclose(scores[:, 0], 1.0, rtol=1e-3)
    invlists: list[Any] = [faiss.extract_index_ivf(shard).invlists for _, shard in gallery.shards]
    sizes = [lists.list_size(number) for lists in invlists for number in range(16)]
    assert sum(sizes) == len(data)
    expected = sum(-(-size // 32) * 32 * 8 + size * 8 for size in sizes)
    assert gallery.index_bytes() == expected > len(data) * (8 + 8)


def test_a_gallery_smaller_than_the_codebook_builds_on_jittered_copies(tmp_path: Path) -> None:
    data = templates(5)
    sample = training.jittered(data, 16, seed=0)
    assert sample.shape == (16, DIM)
    np.testing.assert_array_equal(sample[:5], data)
    np.testing.assert_allclose(np.linalg.norm(sample, axis=1), 1.0, rtol=1e-5)
    assert (sample[5:] @ data.T).max(axis=1).min() > 0.95  # each copy stays near its template
    names = [f"e{i}" for i in range(5)]
    build_gallery(tmp_path / "g", names, data, model_id="m", batch_id="b")
    gallery = open_gallery(tmp_path / "g")
    assert gallery.manifest.factory == "IVF1,PQ16x4fsr" and gallery.size == 5
    _, ids = IvfPqEngine(nprobe=1, shortlist=5).search(gallery, data, 1)
    np.testing.assert_array_equal(ids[:, 0], np.arange(5))

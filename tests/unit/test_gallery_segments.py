"""Segmented galleries: reading vectors and shards across segments, the merge policy, and
compaction merging segments without changing what a search returns."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from dedup.errors import GalleryError
from dedup.gallery.engines import ExactSweepEngine, IvfPqEngine
from dedup.gallery.erasure import compact, erase
from dedup.gallery.layout import MANIFEST_FILE, GalleryManifest
from dedup.gallery.reader import open_gallery, open_shard, verify_gallery
from dedup.gallery.segments import MAX_SEGMENTS, MERGE_FANOUT, SegmentVectors, plan_merges
from dedup.gallery.writer import add_batch, build_gallery

N, DIM, MODEL, FACTORY = 1500, 16, "synthetic-v1", "IVF8,PQ8"
BATCHES = (40, 1, 300)

pytestmark = pytest.mark.usefixtures("one_faiss_thread")


def unit_vectors(n: int, seed: int) -> npt.NDArray[np.float32]:
    vectors = np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)
    unit: npt.NDArray[np.float32] = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    return unit


@pytest.fixture(scope="module")
def everything() -> npt.NDArray[np.float32]:
    return unit_vectors(N + sum(BATCHES), seed=3)


@pytest.fixture(scope="module")
def segmented(
    tmp_path_factory: pytest.TempPathFactory,
    everything: npt.NDArray[np.float32],
    one_faiss_thread: None,
) -> Path:
    """A gallery of four segments over two shards: the build, then batches of 40, 1, 300."""
    root = tmp_path_factory.mktemp("segmented") / "gallery"
    names = [f"e{i:05d}" for i in range(len(everything))]
    build_gallery(root, names[:N], everything[:N], model_id=MODEL, batch_id="b0", shards=2,
                  factory=FACTORY)  # fmt: skip
    start = N
    for number, size in enumerate(BATCHES):
        add_batch(root, f"b{number + 1}", names[start : start + size],
                  everything[start : start + size], model_id=MODEL)  # fmt: skip
        start += size
    return root


def test_vectors_read_across_segments_as_one_matrix(
    segmented: Path, everything: npt.NDArray[np.float32]
) -> None:
    vectors = open_gallery(segmented).vectors
    assert isinstance(vectors, SegmentVectors) and vectors.shape == everything.shape
    whole = everything.astype(np.float16)
    ids = np.array([[0, N - 1, N], [N + 40, N + 41, len(whole) - 1]])
    np.testing.assert_array_equal(vectors[ids], whole[ids])
    for start, stop in [(0, 10), (N - 5, N + 45), (N + 39, N + 42), (0, len(whole) + 7)]:
        np.testing.assert_array_equal(vectors[start:stop], whole[start:stop])
    np.testing.assert_array_equal(vectors[N + 40], whole[N + 40])
    np.testing.assert_array_equal(np.asarray(vectors), whole)
    with pytest.raises(IndexError):
        vectors[np.array([len(whole)])]


def test_a_segmented_gallery_searches_like_its_compacted_self(
    segmented: Path, everything: npt.NDArray[np.float32], tmp_path: Path
) -> None:
    probes = everything[::37]
    before = open_gallery(segmented)
    shards = [index.ntotal for _, index in before.shards]
    ivf = IvfPqEngine(nprobe=8, shortlist=50).search(before, probes, 5)
    exact = ExactSweepEngine(tile_rows=700).search(before, probes, 5)  # tiles cross segments
    np.testing.assert_array_equal(exact[1][:, 0], np.arange(0, len(everything), 37))
    for shard_id, count in enumerate(shards):
        assert open_shard(segmented, shard_id).shards[0][1].ntotal == count

    root = Path(shutil.copytree(segmented, tmp_path / "gallery"))
    merged = compact(root, full=True)
    assert len(merged.segments) == 1 and merged.segments[0].rows == len(everything)
    after = open_gallery(root, mmap=True)  # one segment: the shard files are memory-mapped
    assert [index.ntotal for _, index in after.shards] == shards
    for engine in (IvfPqEngine(nprobe=8, shortlist=50), ExactSweepEngine(tile_rows=700)):
        want = ivf if engine.name == "ivfpq" else exact
        got = engine.search(after, probes, 5)
        np.testing.assert_array_equal(got[1], want[1])
        np.testing.assert_allclose(got[0], want[0], rtol=1e-6)
    assert [p.name for p in (root / "segments").iterdir()] == [merged.segments[0].name]
    assert verify_gallery(root) == merged


def test_compaction_erases_from_the_segment_that_held_the_template(
    segmented: Path, tmp_path: Path
) -> None:
    root = Path(shutil.copytree(segmented, tmp_path / "gallery"))
    segments = open_gallery(root).manifest.segments
    victim = N + 40  # the batch of one: its segment is left with no template at all
    erase(root, f"e{victim:05d}")
    compacted = compact(root)
    assert [s.name == t.name for s, t in zip(segments, compacted.segments, strict=True)] == [
        True, True, False, True]  # fmt: skip
    rewritten = compacted.segments[2]
    assert (rewritten.first_id, rewritten.rows, sum(rewritten.shard_counts)) == (victim, 1, 0)
    gallery = open_gallery(root)
    assert not gallery.vectors[victim].any() and not gallery.is_live(np.array([victim]))[0]
    assert verify_gallery(root).size == N + sum(BATCHES) - 1


def test_the_merge_policy_keeps_the_segment_count_bounded() -> None:
    rows = [1_000_000]
    for _ in range(2_000):  # nightly batches of 10 k, compacted every night
        rows.append(10_000)
        for run in reversed(plan_merges(rows)):
            rows[run.start : run.stop] = [sum(rows[run.start : run.stop])]
        assert len(rows) <= 5 * (MERGE_FANOUT - 1)
    assert sum(rows) == 1_000_000 + 2_000 * 10_000 and len(rows) <= MAX_SEGMENTS
    assert plan_merges([5] * 7) == [] and plan_merges([5] * 8) == [range(0, 8)]
    assert len(plan_merges([1]) + plan_merges([])) == 0


def test_a_gallery_of_the_first_format_is_refused_with_what_to_do(segmented: Path) -> None:
    text = (open_gallery(segmented).path / MANIFEST_FILE).read_text(encoding="utf-8")
    old = json.loads(text) | {"format_version": 1}
    with pytest.raises(GalleryError, match=r"format version 1 is not supported.*rebuild"):
        GalleryManifest.from_json(json.dumps(old))

"""1:N search with one Ray actor per shard, against the in-process IVF-PQ engine on one gallery.

A local Ray cluster of two CPUs serves a three-shard gallery built from calibrated synthetic
templates: the actors must share the cores, and must return exactly what ``IvfPqEngine`` does.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from numpy.typing import NDArray

from dedup.contracts.vectors import read_templates
from dedup.errors import GalleryError
from dedup.evaluation.synthetic import write_synthetic_set
from dedup.gallery.engines import IvfPqEngine
from dedup.gallery.erasure import erase
from dedup.gallery.layout import shard_file
from dedup.gallery.reader import Gallery, open_gallery
from dedup.gallery.writer import build_gallery
from dedup.matching.candidates import search_batch
from pipelines.ray.shard_actors import (
    RayShardSearch,
    ShardActor,
    actor_resources,
    merge_shard_candidates,
)

pytestmark = [pytest.mark.slow]

NPROBE, SHORTLIST, K = 16, 100, 10
THRESHOLD = 0.90
SORT_KEYS = [("probe_id", "ascending"), ("source", "ascending"), ("rank", "ascending")]


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[None]:
    import ray

    started = not ray.is_initialized()
    if started:
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    if started:
        ray.shutdown()


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth")
    write_synthetic_set(out, n=5000, dim=64, duplicates=100, probes=400, seed=3)
    return out


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, data: Path) -> Path:
    """A published gallery that no test modifies: tests that do work on a copy."""
    root = tmp_path_factory.mktemp("built") / "gallery"
    ids, vectors = read_templates(data / "gallery.parquet")
    build_gallery(
        root,
        ids,
        vectors,
        model_id="synthetic",
        batch_id="b0",
        shards=3,
        factory="IVF32,PQ16",
        vector_dtype="float32",
    )
    return root


@pytest.fixture(scope="module")
def probes(data: Path) -> tuple[list[str], NDArray[np.float32]]:
    return read_templates(data / "probes.parquet")


@pytest.fixture(scope="module")
def engine(ray_cluster: None) -> Iterator[RayShardSearch]:
    with RayShardSearch(nprobe=NPROBE, shortlist=SHORTLIST) as search:
        yield search


def copy_gallery(built: Path, to: Path) -> Path:
    shutil.copytree(built, to, symlinks=True)
    return to


def sorted_rows(table: pa.Table) -> pa.Table:
    return table.sort_by(SORT_KEYS)


def assert_same_candidates(ours: pa.Table, theirs: pa.Table) -> None:
    ours, theirs = sorted_rows(ours), sorted_rows(theirs)
    assert ours.schema == theirs.schema
    for column in ("probe_id", "candidate_id", "rank", "source"):
        assert ours[column].to_pylist() == theirs[column].to_pylist(), column
    np.testing.assert_allclose(
        ours["score"].to_numpy(), theirs["score"].to_numpy(), rtol=0, atol=1e-6
    )


def test_actors_share_the_cores_when_shards_outnumber_them() -> None:
    assert actor_resources(3, {"CPU": 2.0}) == (0.6666, 0.0)
    assert actor_resources(4, {"CPU": 64.0, "GPU": 8.0}) == (1.0, 1.0)
    assert actor_resources(4, {"CPU": 8.0, "GPU": 2.0}) == (1.0, 0.5)


def test_per_shard_step_merged_equals_the_in_process_engine(
    built: Path, probes: tuple[list[str], NDArray[np.float32]]
) -> None:
    """Without Ray: the actors' arithmetic, shard by shard, is the in-process engine's."""
    gallery = open_gallery(built)
    _, vectors = probes
    actors = [ShardActor(built, shard, mmap=True) for shard, _ in gallery.shards]
    replies = [actor.search(vectors, NPROBE, SHORTLIST) for actor in actors]
    scores, ids = merge_shard_candidates(replies, K)
    want_scores, want_ids = IvfPqEngine(nprobe=NPROBE, shortlist=SHORTLIST).search(
        gallery, vectors, K
    )
    np.testing.assert_array_equal(ids, want_ids)
    np.testing.assert_array_equal(scores, want_scores)


def test_ray_candidates_equal_in_process_candidates(
    built: Path, probes: tuple[list[str], NDArray[np.float32]], engine: RayShardSearch
) -> None:
    gallery = open_gallery(built)
    probe_ids, vectors = probes
    local = IvfPqEngine(nprobe=NPROBE, shortlist=SHORTLIST)
    ours = search_batch(gallery, probe_ids, vectors, k=K, threshold=THRESHOLD, engine=engine)
    theirs = search_batch(gallery, probe_ids, vectors, k=K, threshold=THRESHOLD, engine=local)
    assert ours.filter(pc.equal(ours["source"], "gallery")).num_rows >= 90
    assert_same_candidates(ours, theirs)

    # The raw (B, k) lists agree too, below the threshold; the actors are reused, not restarted.
    actors = engine.serving
    scores, ids = engine.search(gallery, vectors, K)
    want_scores, want_ids = local.search(gallery, vectors, K)
    assert engine.serving == actors == gallery.location
    assert engine.devices == ["cpu"] * 3
    assert scores.shape == ids.shape == (len(vectors), K) and ids.dtype == np.int64
    np.testing.assert_array_equal(ids, want_ids)
    np.testing.assert_allclose(scores, want_scores, rtol=0, atol=1e-6)


def test_an_erased_template_is_never_returned(
    built: Path,
    probes: tuple[list[str], NDArray[np.float32]],
    engine: RayShardSearch,
    data: Path,
    tmp_path: Path,
) -> None:
    root = copy_gallery(built, tmp_path / "gallery")
    probe_ids, vectors = probes
    truth = pq.read_table(data / "truth.parquet").to_pylist()
    planted = next(row for row in truth if row["source"] == "gallery")
    probe = probe_ids.index(planted["probe_id"])

    def ray_hits(gallery: Gallery) -> list[str]:
        table = search_batch(gallery, probe_ids, vectors, k=K, threshold=THRESHOLD, engine=engine)
        mine = table.filter(pc.equal(table["probe_id"], planted["probe_id"]))
        hits: list[str] = mine["candidate_id"].to_pylist()
        return hits

    before = open_gallery(root)
    assert planted["match_id"] in ray_hits(before)
    erased_id = int(before.gallery_ids([planted["match_id"]])[0])

    erase(root, planted["match_id"])
    after = open_gallery(root)
    assert planted["match_id"] not in ray_hits(after)
    assert engine.serving == after.location != before.location  # the new version got its own actors
    _, ids = engine.search(after, vectors, K)
    assert not np.isin(ids, [erased_id]).any()
    _, local_ids = IvfPqEngine(nprobe=NPROBE, shortlist=SHORTLIST).search(after, vectors, K)
    np.testing.assert_array_equal(ids, local_ids)
    assert (
        erased_id
        in IvfPqEngine(nprobe=NPROBE, shortlist=SHORTLIST).search(
            before, vectors[probe : probe + 1], K
        )[1]
    )


def test_a_corrupt_shard_is_refused_by_its_actor(
    built: Path,
    probes: tuple[list[str], NDArray[np.float32]],
    engine: RayShardSearch,
    tmp_path: Path,
) -> None:
    root = copy_gallery(built, tmp_path / "gallery")
    gallery = open_gallery(root)  # read intact: the file goes bad afterwards, on the actor's node
    shard = root / gallery.manifest.segments[0].key(shard_file(1))
    shard.chmod(0o644)
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    shard.chmod(0o444)

    _, vectors = probes
    with pytest.raises(GalleryError, match=r"shard-00001\.faiss .*refused to start.*corrupt"):
        engine.search(gallery, vectors[:5], K)
    assert engine.serving is None  # the other shards' actors are stopped too


def test_actors_that_cannot_be_placed_time_out_with_a_clear_error(
    built: Path, probes: tuple[list[str], NDArray[np.float32]], engine: RayShardSearch
) -> None:
    gallery = open_gallery(built)
    _, vectors = probes
    engine.search(gallery, vectors[:5], K)  # its three actors now hold both cores
    with (
        RayShardSearch(nprobe=NPROBE, shortlist=SHORTLIST, start_timeout_s=2) as crowded,
        pytest.raises(GalleryError, match=r"did not start within 2 s"),
    ):
        crowded.search(gallery, vectors[:5], K)
    assert crowded.serving is None
    assert engine.search(gallery, vectors[:5], K)[1].shape == (5, K)

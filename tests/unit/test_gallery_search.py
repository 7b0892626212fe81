"""Search over a real (small) FAISS gallery built from calibrated synthetic templates."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import faiss
import numpy as np
import pyarrow.parquet as pq
import pytest
from numpy.typing import NDArray

from dedup.contracts.schemas import CANDIDATES
from dedup.contracts.vectors import read_templates
from dedup.errors import GalleryError
from dedup.evaluation.synthetic import write_synthetic_set
from dedup.gallery import engines
from dedup.gallery.engines import ExactSweepEngine, IvfPqEngine
from dedup.gallery.erasure import compact, erase
from dedup.gallery.reader import Gallery, open_gallery
from dedup.gallery.writer import build_gallery
from dedup.matching.candidates import in_batch, search_batch

THRESHOLD = 0.90


pytestmark = pytest.mark.usefixtures("one_faiss_thread")


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth")
    write_synthetic_set(out, n=6000, dim=64, duplicates=150, probes=600, seed=2)
    return out


@pytest.fixture
def gallery_root(tmp_path: Path, data: Path) -> Path:
    ids, vectors = read_templates(data / "gallery.parquet")
    build_gallery(
        tmp_path / "gallery",
        ids,
        vectors,
        model_id="synthetic",
        batch_id="initial",
        shards=3,
        factory="IVF32,PQ16",
        vector_dtype="float32",
    )
    return tmp_path / "gallery"


@pytest.fixture
def gallery(gallery_root: Path) -> Gallery:
    return open_gallery(gallery_root)


def brute_force(gallery: Gallery, probes: NDArray[np.float32], k: int) -> NDArray[np.int64]:
    scores = probes @ np.asarray(gallery.vectors, dtype=np.float32).T
    return np.argsort(-scores, axis=1)[:, :k]


def test_exact_sweep_equals_brute_force_across_tiles(gallery: Gallery, data: Path) -> None:
    _, probes = read_templates(data / "probes.parquet")
    scores, ids = ExactSweepEngine(tile_rows=1000).search(gallery, probes[:50], 10)
    np.testing.assert_array_equal(ids, brute_force(gallery, probes[:50], 10))
    assert np.all(np.diff(scores, axis=1) <= 0)


def test_ivfpq_scores_are_exact_rescores(gallery: Gallery, data: Path) -> None:
    _, probes = read_templates(data / "probes.parquet")
    scores, ids = IvfPqEngine(nprobe=32, shortlist=200).search(gallery, probes[:50], 5)
    full = np.asarray(gallery.vectors, dtype=np.float32)
    expected = np.einsum("bd,bkd->bk", probes[:50], full[ids])
    np.testing.assert_allclose(scores, expected, atol=1e-5)
    # with every list probed and a long shortlist, it finds what exact search finds
    np.testing.assert_array_equal(ids[:, 0], brute_force(gallery, probes[:50], 1)[:, 0])


def test_planted_duplicates_become_candidates(gallery: Gallery, data: Path) -> None:
    probe_ids, probes = read_templates(data / "probes.parquet")
    truth = pq.read_table(data / "truth.parquet").to_pylist()
    found = search_batch(
        gallery, probe_ids, probes, k=10, threshold=THRESHOLD, engine=ExactSweepEngine()
    )
    assert found.schema == CANDIDATES
    rows = found.to_pylist()
    pairs = {(r["probe_id"], r["candidate_id"], r["source"]) for r in rows}
    hits = [t for t in truth if (t["probe_id"], t["match_id"], t["source"]) in pairs]
    hits += [
        t
        for t in truth
        if t["source"] == "batch" and (t["match_id"], t["probe_id"], "batch") in pairs
    ]
    assert len({(t["probe_id"], t["match_id"]) for t in hits}) >= 0.97 * len(truth)
    assert all(r["score"] >= THRESHOLD and r["rank"] >= 1 for r in rows)
    assert {r["source"] for r in rows} == {"gallery", "batch"}


def test_in_batch_search_never_returns_the_probe_itself() -> None:
    rng = np.random.default_rng(0)
    probes = rng.normal(size=(20, 8)).astype(np.float32)
    probes /= np.linalg.norm(probes, axis=1, keepdims=True)
    probes[5] = probes[3]
    _, ids = in_batch(probes, 3)
    assert all(i not in row for i, row in enumerate(ids))
    assert ids[3, 0] == 5 and ids[5, 0] == 3


@pytest.mark.parametrize("engine", [ExactSweepEngine(tile_rows=2500), IvfPqEngine(nprobe=32)])
def test_an_erased_enrollment_is_never_returned_before_or_after_compaction(
    gallery_root: Path, data: Path, engine: ExactSweepEngine | IvfPqEngine
) -> None:
    ids, vectors = read_templates(data / "gallery.parquet")
    target = ids[123]
    own = vectors[123:124]
    before = open_gallery(gallery_root)
    _, found = engine.search(before, own, 100)
    assert before.gallery_ids([target])[0] in found[0]  # it is found while enrolled
    erase(gallery_root, target)
    for state in ("tombstoned", "compacted"):
        if state == "compacted":
            compact(gallery_root)
        gallery = open_gallery(gallery_root)
        candidates = search_batch(
            gallery, ["probe"], own, k=100, threshold=-1.0, engine=engine
        ).to_pylist()
        assert target not in {c["candidate_id"] for c in candidates}, state
        assert len(candidates) == 100


def test_probes_of_another_model_are_refused(gallery: Gallery) -> None:
    probes = np.ones((1, gallery.dimension), dtype=np.float32)
    with pytest.raises(GalleryError, match="never mixes models"):
        search_batch(
            gallery, ["p"], probes, k=5, threshold=0.9, engine=ExactSweepEngine(), model_id="x"
        )
    with pytest.raises(GalleryError, match="must be"):
        search_batch(gallery, ["p"], probes[:, :3], k=5, threshold=0.9, engine=ExactSweepEngine())


class StandInGpu:
    """What faiss-gpu adds to the faiss module, computing on the CPU: records every call to
    ``knn_gpu`` so the tests can check what the GPU path hands it (no GPU here)."""

    def __init__(self) -> None:
        self.calls: list[tuple[np.dtype[Any], np.dtype[Any], int, int]] = []

    def get_num_gpus(self) -> int:
        return 1

    def StandardGpuResources(self) -> object:
        return object()

    def knn_gpu(
        self, resources: object, xq: np.ndarray, xb: np.ndarray, k: int, **options: Any
    ) -> tuple[np.ndarray, np.ndarray]:
        self.calls.append((xq.dtype, xb.dtype, options["metric"], k))
        scores = xq.astype(np.float32) @ xb.astype(np.float32).T
        ids = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        return np.take_along_axis(scores, ids, axis=1), ids


def test_the_exact_sweep_hands_fp16_tiles_to_the_gpu_and_agrees_with_the_cpu(
    gallery: Gallery, data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    probes = read_templates(data / "probes.parquet")[1][:100]
    stand_in = StandInGpu()
    for name in ("get_num_gpus", "StandardGpuResources", "knn_gpu"):
        monkeypatch.setattr(faiss, name, getattr(stand_in, name), raising=False)
    assert engines.gpu_count() == 1
    on_cpu = ExactSweepEngine(tile_rows=700, device="cpu").search(gallery, probes, 10)
    on_gpu = ExactSweepEngine(tile_rows=700).search(gallery, probes, 10)
    tiles = -(-int(gallery.manifest.next_id) // 700)
    assert len(stand_in.calls) == tiles
    assert all(
        (str(q), str(b), metric) == ("float16", "float16", faiss.METRIC_INNER_PRODUCT)
        for q, b, metric, _ in stand_in.calls
    )
    np.testing.assert_allclose(on_gpu[0], on_cpu[0], atol=2e-3)  # fp16 probes
    assert (on_gpu[1] == on_cpu[1]).mean() > 0.95  # near-ties may swap under fp16


def test_asking_for_a_gpu_where_there_is_none_is_a_clear_error(
    gallery: Gallery, data: Path
) -> None:
    probes = read_templates(data / "probes.parquet")[1][:10]
    with pytest.raises(GalleryError, match="no GPU"):
        ExactSweepEngine(device="gpu").search(gallery, probes, 10)

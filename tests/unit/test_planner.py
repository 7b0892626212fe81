from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from dedup.evaluation.synthetic import write_synthetic_set
from dedup.gallery.engines import ExactSweepEngine, IvfPqEngine
from dedup.gallery.planner import audit_recall, choose_engine, predict_seconds
from dedup.gallery.reader import open_gallery
from dedup.gallery.writer import build_gallery
from dedup.settings import SearchSettings


def test_exact_wins_for_a_small_gallery_and_ivf_for_a_large_one() -> None:
    settings = SearchSettings()
    small = choose_engine(10_000, 100_000, 128, 1024, settings)
    large = choose_engine(1_000, 1_000_000_000, 128, 131_072, settings)
    assert small.engine == "exact" and "faster" in small.reason
    assert large.engine == "ivfpq" and "x faster" in large.reason
    assert large.exact_seconds > large.ivf_seconds


def test_a_gpu_makes_the_exact_sweep_win_where_the_cpu_would_not() -> None:
    settings = SearchSettings()
    cpu = choose_engine(1_000_000, 1_000_000_000, 128, 131_072, settings, gpu=False)
    gpu = choose_engine(1_000_000, 1_000_000_000, 128, 131_072, settings, gpu=True)
    assert cpu.engine == "ivfpq" and gpu.engine == "exact"


def test_ivf_is_not_eligible_below_its_measured_recall() -> None:
    settings = SearchSettings(ivf_measured_recall=0.90, target_recall=0.995)
    choice = choose_engine(1_000, 1_000_000_000, 128, 131_072, settings)
    assert choice.engine == "exact" and "below the target" in choice.reason


def test_forced_engine_is_respected() -> None:
    choice = choose_engine(10, 10, 8, 1, SearchSettings(engine="ivfpq"))
    assert choice.engine == "ivfpq" and choice.reason == "set by search.engine"


def test_predictions_scale_with_batch_and_gallery() -> None:
    settings = SearchSettings()
    e1, i1 = predict_seconds(100, 10**6, 128, 4096, settings, gpu=False)
    e2, i2 = predict_seconds(200, 2 * 10**6, 128, 4096, settings, gpu=False)
    assert e2 == pytest.approx(4 * e1) and i2 > 1.9 * i1


@pytest.fixture(scope="module")
def gallery_and_probes(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Path, np.ndarray]:
    out = tmp_path_factory.mktemp("audit")
    write_synthetic_set(out, n=6000, dim=64, duplicates=300, probes=600, seed=4)
    gallery = pq.read_table(out / "gallery.parquet")
    vectors = np.stack(gallery["vector"].to_numpy(zero_copy_only=False)).astype(np.float32)
    root = out / "gallery"
    build_gallery(
        root,
        gallery["enrollment_id"].to_pylist(),
        vectors,
        model_id="s",
        batch_id="b",
        shards=2,
        factory="IVF64,PQ16",
        vector_dtype="float32",
    )
    probes = pq.read_table(out / "probes.parquet")["vector"].to_numpy(zero_copy_only=False)
    return root, np.stack(probes).astype(np.float32)


def test_the_audit_measures_what_a_weak_search_missed(
    gallery_and_probes: tuple[Path, np.ndarray],
) -> None:
    root, probes = gallery_and_probes
    gallery = open_gallery(root)
    exact_scores, exact_ids = ExactSweepEngine().search(gallery, probes, 10)
    perfect = audit_recall(
        gallery, probes, exact_scores, exact_ids, threshold=0.9, fraction=0.5, floor=0.99
    )
    assert perfect.recall == 1.0 and perfect.passed and perfect.exact_candidates > 50
    weak_scores, weak_ids = IvfPqEngine(nprobe=1, shortlist=5).search(gallery, probes, 10)
    weak = audit_recall(
        gallery, probes, weak_scores, weak_ids, threshold=0.9, fraction=0.5, floor=0.99
    )
    assert weak.recall < perfect.recall and not weak.passed
    assert weak.probes_sampled == 300

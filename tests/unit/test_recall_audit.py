"""The score-banded recall audit, and what happens when it falls below its floor: the batch is
searched again (a higher nprobe the gallery measured, or the exact sweep), never failed."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from dedup.evaluation.synthetic import write_synthetic_set
from dedup.gallery.engines import ExactSweepEngine, IvfPqEngine
from dedup.gallery.reader import Gallery, open_gallery
from dedup.gallery.writer import build_gallery
from dedup.matching.batch_search import search_gallery
from dedup.matching.recall_audit import audit_recall
from dedup.observability.job_metrics import search_registry
from dedup.settings import Settings

BAND = 0.93


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


def audit(gallery: Gallery, probes: np.ndarray, scores: np.ndarray, ids: np.ndarray) -> object:
    return audit_recall(
        gallery, probes, scores, ids, threshold=0.85, band_floor=BAND, fraction=0.5, floor=0.99
    )


def test_the_audit_counts_pairs_by_band_and_applies_the_floor_to_the_genuine_band(
    gallery_and_probes: tuple[Path, np.ndarray],
) -> None:
    root, probes = gallery_and_probes
    gallery = open_gallery(root)
    exact_scores, exact_ids = ExactSweepEngine().search(gallery, probes, 10)
    perfect = audit_recall(
        gallery, probes, exact_scores, exact_ids, threshold=0.85, band_floor=BAND,
        fraction=0.5, floor=0.99,
    )  # fmt: skip
    assert perfect.passed and perfect.recall == 1.0 and perfect.band_recall == 1.0
    assert perfect.probes_sampled == 300 and perfect.band_pairs > 100
    assert perfect.exact_candidates > perfect.band_pairs  # impostors at 0.85 to 0.93
    assert sum(p for _, p, _ in perfect.bands) == perfect.exact_candidates
    assert all(b * 0.01 >= 0.85 - 0.01 for b, _, _ in perfect.bands)

    # Losing every pair below the genuine band misses candidates, but no duplicate: it passes.
    blind = np.where(exact_scores >= BAND, exact_ids, -1)
    below = audit_recall(
        gallery, probes, exact_scores, blind, threshold=0.85, band_floor=BAND,
        fraction=0.5, floor=0.99,
    )  # fmt: skip
    assert below.recall < 0.9 and below.band_recall == 1.0 and below.passed

    # A weak search loses pairs in the band: it fails, and the line says where.
    weak_scores, weak_ids = IvfPqEngine(nprobe=1, shortlist=5).search(gallery, probes, 10)
    weak = audit_recall(
        gallery, probes, weak_scores, weak_ids, threshold=0.85, band_floor=BAND,
        fraction=0.5, floor=0.99,
    )  # fmt: skip
    assert weak.band_recall is not None and weak.band_recall < 0.99 and not weak.passed
    assert f"genuine band (>= {BAND:.4f}) {weak.band_found}/{weak.band_pairs}" in weak.line()


def settings_for(nprobe: int, floor: float = 0.99) -> Settings:
    settings = Settings()
    search = settings.search.model_copy(
        update={
            "engine": "ivfpq",
            "nprobe": nprobe,
            "audit_fraction": 0.5,
            "recall_floor": floor,
            "target_recall": 0.99,
        }
    )
    model = settings.models["dlib-resnet-v1"].model_copy(update={"dimension": 64})
    return settings.model_copy(update={"search": search, "models": {"s": model}})


def test_an_audit_below_its_floor_searches_the_batch_again_at_a_measured_nprobe(
    gallery_and_probes: tuple[Path, np.ndarray],
) -> None:
    root, probes = gallery_and_probes
    gallery = open_gallery(root)
    assert gallery.manifest.recall is not None  # measured at build
    names = [f"p{i}" for i in range(len(probes))]
    want, _ = search_gallery(
        gallery, names, probes, settings_for(64).model_copy(
            update={"search": settings_for(64).search.model_copy(update={"engine": "exact"})}
        ), threshold=0.85,
    )  # fmt: skip
    found, report = search_gallery(gallery, names, probes, settings_for(1), threshold=0.85)
    assert report.failed_audit is not None and not report.failed_audit.passed
    assert report.fallback is not None and report.fallback.startswith("nprobe ")
    assert report.audit is not None and report.audit.passed
    assert "searched again (nprobe" in " ".join(report.lines())
    # Over the whole batch, the genuine band is found at the recall the gallery measured.
    got = set(zip(*columns(found.filter(pq_col(found, BAND))), strict=True))
    wanted = set(zip(*columns(want.filter(pq_col(want, BAND))), strict=True))
    assert len(wanted) > 200 and len(got & wanted) / len(wanted) >= 0.99
    # The metric an alert watches.
    registry = search_registry(report.figures())
    assert (
        registry.get_sample_value("dedup_search_recall_fallback", {"fallback": report.fallback})
        == 1
    )


def test_without_a_measured_nprobe_that_reaches_the_floor_the_batch_goes_to_the_exact_sweep(
    gallery_and_probes: tuple[Path, np.ndarray],
) -> None:
    root, probes = gallery_and_probes
    gallery = open_gallery(root)
    gallery.manifest = dataclasses.replace(gallery.manifest, recall=None)
    names = [f"p{i}" for i in range(len(probes))]
    exact = settings_for(1).model_copy(
        update={"search": settings_for(1).search.model_copy(update={"engine": "exact"})}
    )
    want, _ = search_gallery(gallery, names, probes, exact, threshold=0.85)
    found, report = search_gallery(gallery, names, probes, settings_for(1), threshold=0.85)
    assert report.fallback == "exact" and report.audit is None
    assert found.to_pylist() == want.to_pylist()
    registry = search_registry(report.figures())
    assert registry.get_sample_value("dedup_search_recall_fallback", {"fallback": "exact"}) == 1
    # A search whose audit passes says so with a zero.
    _, fine = search_gallery(gallery, names, probes, settings_for(64, floor=0.0), threshold=0.85)
    assert fine.fallback is None
    assert (
        search_registry(fine.figures()).get_sample_value(
            "dedup_search_recall_fallback", {"fallback": "none"}
        )
        == 0
    )


def pq_col(table: object, floor: float) -> object:
    import pyarrow.compute as pc

    return pc.greater_equal(table["score"], floor)  # type: ignore[index]


def columns(table: object) -> tuple[list[str], list[str]]:
    return table["probe_id"].to_pylist(), table["candidate_id"].to_pylist()  # type: ignore[index]

"""The recall audit measures what an approximate search missed against the exact one."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from dedup.evaluation.synthetic import write_synthetic_set
from dedup.gallery.engines import ExactSweepEngine, IvfPqEngine
from dedup.gallery.reader import open_gallery
from dedup.gallery.writer import build_gallery
from dedup.matching.recall_audit import audit_recall


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

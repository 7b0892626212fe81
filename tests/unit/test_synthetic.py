"""Synthetic templates must score like dlib's model on the real portraits (dedup demo):
same person 0.939 to 0.99 (median 0.971), different people median 0.816, at most 0.843."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from numpy.typing import NDArray

from dedup.contracts.vectors import read_templates
from dedup.evaluation.synthetic import TemplateSynth, write_synthetic_set


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth")
    write_synthetic_set(out, n=5000, dim=128, duplicates=400, probes=2000, seed=1)
    return out


def genuine_and_impostor(folder: Path) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    gallery_ids, gallery = read_templates(folder / "gallery.parquet")
    probe_ids, probes = read_templates(folder / "probes.parquet")
    g_at = {e: i for i, e in enumerate(gallery_ids)}
    p_at = {e: i for i, e in enumerate(probe_ids)}
    truth = pq.read_table(folder / "truth.parquet").to_pylist()
    genuine = np.array(
        [
            probes[p_at[t["probe_id"]]]
            @ (
                gallery[g_at[t["match_id"]]]
                if t["source"] == "gallery"
                else probes[p_at[t["match_id"]]]
            )
            for t in truth
        ]
    )
    mated = {t["probe_id"] for t in truth} | {t["match_id"] for t in truth}
    clean = [i for i, e in enumerate(probe_ids) if e not in mated][:300]
    unmated_gallery = [i for i, e in enumerate(gallery_ids) if e not in mated][:3000]
    impostor = (probes[clean] @ gallery[unmated_gallery].T).ravel()
    return genuine.astype(np.float64), impostor.astype(np.float64)


def test_scores_match_the_default_model_on_real_faces(synthetic: Path) -> None:
    genuine, impostor = genuine_and_impostor(synthetic)
    assert 0.96 <= np.median(genuine) <= 0.98
    assert np.percentile(genuine, 5) >= 0.93
    assert genuine.max() <= 0.999
    assert 0.80 <= np.median(impostor) <= 0.83
    assert np.percentile(impostor, 99) <= 0.87
    # the two populations are apart as on real faces, with a tail near the threshold
    assert np.percentile(genuine, 1) > np.percentile(impostor, 99.99)


def test_templates_share_a_mean_direction_and_are_unit(synthetic: Path) -> None:
    _, gallery = read_templates(synthetic / "gallery.parquet")
    np.testing.assert_allclose(np.linalg.norm(gallery, axis=1), 1.0, atol=1e-5)
    mean = gallery.mean(axis=0)
    assert np.linalg.norm(mean) > 0.85  # isotropic templates would give about 1/sqrt(n)


def test_planted_duplicates_are_listed_with_their_source(synthetic: Path) -> None:
    truth = pq.read_table(synthetic / "truth.parquet").to_pylist()
    sources = [t["source"] for t in truth]
    assert sources.count("gallery") == 400 and sources.count("batch") == 40
    probe_ids, _ = read_templates(synthetic / "probes.parquet")
    assert len(probe_ids) == len(set(probe_ids)) == 2000
    assert {t["probe_id"] for t in truth} <= set(probe_ids)


def test_same_seed_same_bytes_other_seed_other_templates(tmp_path: Path) -> None:
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        write_synthetic_set(tmp_path / name, n=300, dim=16, duplicates=20, probes=100, seed=seed)
    for file in ("gallery.parquet", "probes.parquet", "truth.parquet"):
        assert (tmp_path / "a" / file).read_bytes() == (tmp_path / "b" / file).read_bytes()
    assert (tmp_path / "a" / "gallery.parquet").read_bytes() != (
        tmp_path / "c" / "gallery.parquet"
    ).read_bytes()


def test_identities_are_the_same_whichever_way_they_are_asked_for() -> None:
    synth = TemplateSynth(dim=8, seed=2)
    persons = np.array([5, 262_150, 7, 5])
    direct = synth.identities_at(persons)
    np.testing.assert_array_equal(direct[0], synth.identities(5, 3)[0])
    np.testing.assert_array_equal(direct[1], synth.identities(262_150, 1)[0])
    np.testing.assert_array_equal(direct[0], direct[3])


def test_impossible_requests_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="more planted duplicates"):
        write_synthetic_set(tmp_path, n=10, dim=8, duplicates=20, probes=100)

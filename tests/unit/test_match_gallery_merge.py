"""The match job's add keeps a gallery's segment count bounded: eight small nightly segments
of one size tier are merged by the compaction the job runs when the merge policy plans one."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dedup.gallery.reader import open_gallery, verify_gallery
from dedup.settings import Settings
from pipelines.match import add_to_gallery


def unit(n: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, 32)).astype(np.float32)
    unit: np.ndarray = x / np.linalg.norm(x, axis=1, keepdims=True)
    return unit


def test_eight_small_nights_are_merged_into_one_segment(tmp_path: Path) -> None:
    settings = Settings().model_copy(update={"model": "m"})
    root = tmp_path / "gallery"
    add_to_gallery(settings, root, "n0", [f"a{i}" for i in range(600)], unit(600, 0))
    counts = []
    for night in range(1, 9):
        names = [f"n{night}-{i}" for i in range(10)]
        add_to_gallery(settings, root, f"n{night}", names, unit(10, night))
        counts.append(len(open_gallery(root).manifest.segments))
    assert counts == [2, 3, 4, 5, 6, 7, 8, 2]  # the eighth night's run of 8 became one
    manifest = verify_gallery(root)
    assert manifest.size == 680 and [s.rows for s in manifest.segments] == [600, 80]
    gallery = open_gallery(root)
    assert gallery.gallery_ids(["n1-0", "n8-9"]).tolist() == [600, 679]

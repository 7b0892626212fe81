"""A crash while publishing a gallery version leaves the previous one published, verified and
usable, and a retry repairs everything; a flipped byte in any file is caught on open.

Crashes are injected at the publish crash points (``dedup.crash_points``): raised in-process, and
once as a hard process exit (what an OOM kill does) from a separate Python process.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from dedup.crash_points import CRASH_AT_ENV, CRASH_MODE_ENV
from dedup.errors import GalleryError, InjectedCrash
from dedup.gallery.erasure import compact, erase
from dedup.gallery.layout import CURRENT_FILE, TMP_PREFIX, VERSIONS_DIR
from dedup.gallery.reader import open_gallery, verify_gallery
from dedup.gallery.writer import add_batch, build_gallery

N, DIM, MODEL = 2000, 32, "synthetic-v1"
AFTER_FILES = "gallery.publish.after_files"
AFTER_RENAME = "gallery.publish.after_rename"


def unit_vectors(n: int, seed: int) -> npt.NDArray[np.float32]:
    vectors = np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)
    unit: npt.NDArray[np.float32] = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    return unit


def new_names(n: int) -> list[str]:
    return [f"n{i:05d}" for i in range(n)]


def current(root: Path) -> str:
    return (root / CURRENT_FILE).read_text(encoding="utf-8").strip()


def leftovers(root: Path) -> list[str]:
    return sorted(p.name for p in (root / VERSIONS_DIR).iterdir() if p.name != current(root))


def assert_still_version_one(root: Path) -> None:
    gallery = open_gallery(root, verify=True)
    assert (gallery.manifest.version, gallery.size, current(root)) == (1, N, "v000001")
    assert verify_gallery(root).version == 1


pytestmark = pytest.mark.usefixtures("one_faiss_thread")


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "gallery"
    names = [f"e{i:05d}" for i in range(N)]
    build_gallery(
        root, names, unit_vectors(N, 1), model_id=MODEL, batch_id="night-1", factory="IVF8,PQ8"
    )
    return root


@pytest.mark.parametrize(("point", "left"), [(AFTER_FILES, TMP_PREFIX), (AFTER_RENAME, "v000002")])
def test_crash_while_adding_keeps_the_previous_version_then_a_retry_succeeds(
    root: Path, monkeypatch: pytest.MonkeyPatch, point: str, left: str
) -> None:
    new = unit_vectors(5, 2)
    monkeypatch.setenv(CRASH_AT_ENV, point)
    with pytest.raises(InjectedCrash):
        add_batch(root, "night-2", new_names(5), new, model_id=MODEL)
    assert_still_version_one(root)
    assert [name.startswith(left) for name in leftovers(root)] == [True]  # the crash was late

    monkeypatch.delenv(CRASH_AT_ENV)
    manifest = add_batch(root, "night-2", new_names(5), new, model_id=MODEL)
    assert (manifest.version, manifest.size) == (2, N + 5)
    assert open_gallery(root).gallery_ids(new_names(5)).tolist() == list(range(N, N + 5))
    assert verify_gallery(root) == manifest
    assert leftovers(root) == ["v000001"]  # the crash's folder was swept by the publish


@pytest.mark.parametrize("point", [AFTER_FILES, AFTER_RENAME])
def test_crash_while_compacting_keeps_the_erasure_then_a_retry_succeeds(
    root: Path, monkeypatch: pytest.MonkeyPatch, point: str
) -> None:
    erase(root, "e00003")
    monkeypatch.setenv(CRASH_AT_ENV, point)
    with pytest.raises(InjectedCrash):
        compact(root)
    gallery = open_gallery(root)
    assert (gallery.manifest.version, gallery.size, gallery.tombstones.tolist()) == (2, N - 1, [3])
    assert not gallery.is_live(np.array([3]))[0]

    monkeypatch.delenv(CRASH_AT_ENV)
    manifest = compact(root)
    assert (manifest.version, manifest.size) == (3, N - 1)
    assert sorted(p.name for p in (root / VERSIONS_DIR).iterdir()) == ["v000003"]
    assert verify_gallery(root) == manifest


@pytest.mark.parametrize("point", [AFTER_FILES, AFTER_RENAME])
def test_crash_while_building_leaves_no_gallery_then_a_retry_builds_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, point: str
) -> None:
    root, names, vectors = tmp_path / "gallery", new_names(N), unit_vectors(N, 1)
    monkeypatch.setenv(CRASH_AT_ENV, point)
    with pytest.raises(InjectedCrash):
        build_gallery(root, names, vectors, model_id=MODEL, batch_id="b", factory="IVF8,PQ8")
    with pytest.raises(GalleryError, match="CURRENT is missing"):
        open_gallery(root)
    monkeypatch.delenv(CRASH_AT_ENV)
    build_gallery(root, names, vectors, model_id=MODEL, batch_id="b", factory="IVF8,PQ8")
    assert_still_version_one(root)
    assert leftovers(root) == []


def test_process_killed_while_publishing_keeps_the_previous_version(root: Path) -> None:
    new = unit_vectors(5, 2)
    np.save(root.parent / "new.npy", new)
    script = textwrap.dedent(
        f"""
        import numpy as np
        from dedup.gallery.writer import add_batch
        add_batch({str(root)!r}, "night-2", {new_names(5)!r},
                  np.load({str(root.parent / "new.npy")!r}), model_id={MODEL!r})
        """
    )
    env = {**os.environ, CRASH_AT_ENV: AFTER_RENAME, CRASH_MODE_ENV: "exit", "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True)
    assert done.returncode == 137, done.stderr
    assert_still_version_one(root)

    manifest = add_batch(root, "night-2", new_names(5), new, model_id=MODEL)
    assert (manifest.version, manifest.size) == (2, N + 5) and leftovers(root) == ["v000001"]


@pytest.mark.parametrize("name", ["shard-00000.faiss", "vectors.npy", "ids.parquet"])
def test_a_flipped_byte_is_caught_on_open_naming_the_file(root: Path, name: str) -> None:
    path = root / VERSIONS_DIR / "v000001" / name
    path.chmod(0o644)  # published files are read-only; this is the disk going bad
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(GalleryError, match=f"{name} .* is corrupt"):
        open_gallery(root, verify=True)
    with pytest.raises(GalleryError, match=name):
        verify_gallery(root)
    if name == "vectors.npy":  # the checksum, not a failed parse, is what caught it
        assert open_gallery(root, verify=False).size == N
    # A writer refuses to build on a corrupt file rather than re-checksum it as good.
    with pytest.raises(GalleryError, match=name):
        add_batch(root, "night-2", [f"x{i}" for i in range(8)], unit_vectors(8, 3), model_id=MODEL)

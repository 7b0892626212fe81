"""A crash while publishing a gallery version leaves the previous one published, verified and
usable, and a retry repairs everything (orphan segments included); a flipped byte in any file
is caught on open. Each test runs on a gallery of one segment and on one of three.

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
from dedup.gallery.erasure import compact, erase, prune_versions
from dedup.gallery.layout import CURRENT_FILE, TMP_PREFIX, TRAINED_DIR, VERSIONS_DIR
from dedup.gallery.reader import open_gallery, verify_gallery
from dedup.gallery.segments import SEGMENTS_DIR
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


def segment_names(root: Path) -> list[str]:
    return sorted(p.name for p in (root / SEGMENTS_DIR).iterdir())


def current(root: Path) -> str:
    return (root / CURRENT_FILE).read_text(encoding="utf-8").strip()


def leftovers(root: Path) -> list[str]:
    return sorted(p.name for p in (root / VERSIONS_DIR).iterdir() if p.name != current(root))


def assert_still_the_first(root: Path, version: int, size: int) -> None:
    gallery = open_gallery(root, verify=True)
    assert (gallery.manifest.version, gallery.size) == (version, size)
    assert current(root) == f"v{version:06d}" and verify_gallery(root).version == version


pytestmark = pytest.mark.usefixtures("one_faiss_thread")


@pytest.fixture(params=[1, 3], ids=["one-segment", "three-segments"])
def root(tmp_path: Path, request: pytest.FixtureRequest) -> Path:
    """A gallery of N templates in ``request.param`` segments (the later ones 100 each)."""
    root, extra = tmp_path / "gallery", 100 * (request.param - 1)
    names = [f"e{i:05d}" for i in range(N + extra)]
    data = unit_vectors(N + extra, 1)
    build_gallery(root, names[:N], data[:N], model_id=MODEL, batch_id="night-1", factory="IVF8,PQ8")
    for start in range(N, N + extra, 100):
        add_batch(root, f"night-0-{start}", names[start : start + 100],
                  data[start : start + 100], model_id=MODEL)  # fmt: skip
    return root


def first_state(root: Path) -> tuple[int, int]:
    manifest = open_gallery(root).manifest
    return manifest.version, manifest.size


@pytest.mark.parametrize(("point", "left"), [(AFTER_FILES, TMP_PREFIX), (AFTER_RENAME, "v000002")])
def test_crash_while_adding_keeps_the_previous_version_then_a_retry_succeeds(
    root: Path, monkeypatch: pytest.MonkeyPatch, point: str, left: str
) -> None:
    version, size = first_state(root)
    prune_versions(root, keep=1)
    segments = segment_names(root)
    new = unit_vectors(5, 2)
    monkeypatch.setenv(CRASH_AT_ENV, point)
    with pytest.raises(InjectedCrash):
        add_batch(root, "night-2", new_names(5), new, model_id=MODEL)
    assert_still_the_first(root, version, size)
    if left == "v000002":
        left = f"v{version + 1:06d}"
    assert [name.startswith(left) for name in leftovers(root)] == [True]  # the crash was late
    assert len(segment_names(root)) == len(segments) + 1  # the crash's segment, not yet swept

    monkeypatch.delenv(CRASH_AT_ENV)
    manifest = add_batch(root, "night-2", new_names(5), new, model_id=MODEL)
    assert (manifest.version, manifest.size) == (version + 1, size + 5)
    assert open_gallery(root).gallery_ids(new_names(5)).tolist() == list(range(size, size + 5))
    assert verify_gallery(root) == manifest
    assert leftovers(root) == [f"v{version:06d}"]  # the crash's folder was swept by the publish
    named = {segment.name for segment in manifest.segments}
    assert set(segment_names(root)) == named and set(segments) < named  # orphan swept


@pytest.mark.parametrize("point", [AFTER_FILES, AFTER_RENAME])
def test_crash_while_compacting_keeps_the_erasure_then_a_retry_succeeds(
    root: Path, monkeypatch: pytest.MonkeyPatch, point: str
) -> None:
    version, size = first_state(root)
    erase(root, "e00003")
    last = f"e{size - 1:05d}"  # in the last segment
    erase(root, last)
    monkeypatch.setenv(CRASH_AT_ENV, point)
    with pytest.raises(InjectedCrash):
        compact(root)
    gallery = open_gallery(root)
    assert (gallery.manifest.version, gallery.size) == (version + 2, size - 2)
    assert gallery.tombstones.tolist() == [3, size - 1]
    assert not gallery.is_live(np.array([3, size - 1])).any()

    monkeypatch.delenv(CRASH_AT_ENV)
    manifest = compact(root)
    assert (manifest.version, manifest.size) == (version + 3, size - 2)
    assert sorted(p.name for p in (root / VERSIONS_DIR).iterdir()) == [f"v{version + 3:06d}"]
    assert set(segment_names(root)) == {s.name for s in manifest.segments}
    assert len(manifest.segments) == len(gallery.manifest.segments)  # rewritten, not merged
    assert verify_gallery(root) == manifest
    assert open_gallery(root).gallery_ids(["e00003", last, "e00004"]).tolist() == [-1, -1, 4]


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
    assert_still_the_first(root, 1, N)
    assert leftovers(root) == [] and len(segment_names(root)) == 1
    assert len(list((root / TRAINED_DIR).iterdir())) == 1  # the crash's trained index swept


def test_process_killed_while_publishing_keeps_the_previous_version(root: Path) -> None:
    version, size = first_state(root)
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
    assert_still_the_first(root, version, size)

    manifest = add_batch(root, "night-2", new_names(5), new, model_id=MODEL)
    assert (manifest.version, manifest.size) == (version + 1, size + 5)
    assert f"v{version + 1:06d}" not in leftovers(root)
    assert set(segment_names(root)) == {s.name for s in manifest.segments}


@pytest.mark.parametrize(
    "name",
    ["shard-00000.faiss", "vectors.npy", "ids.parquet", "id_keys.npy", "ledger.parquet", "trained"],
)
def test_a_flipped_byte_is_caught_on_open_naming_the_file(root: Path, name: str) -> None:
    manifest = open_gallery(root).manifest
    if name == "trained":
        name = manifest.trained.rpartition("/")[2]
        path = root / manifest.trained
    elif name == "ledger.parquet":
        path = root / VERSIONS_DIR / manifest.version_name / name
    else:
        path = root / manifest.segments[-1].key(name)
    path.chmod(0o644)  # published files are read-only; this is the disk going bad
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(GalleryError, match=f"{name} .* is corrupt"):
        open_gallery(root, verify=True)
    with pytest.raises(GalleryError, match=name):
        verify_gallery(root)
    if name == "vectors.npy":  # the checksum, not a failed parse, is what caught it
        assert open_gallery(root, verify=False).size == manifest.size
    batch = ([f"x{i}" for i in range(8)], unit_vectors(8, 3))
    if name in ("shard-00000.faiss", "vectors.npy", "ids.parquet", "id_keys.npy"):
        # An add never checksums these (it writes a new segment beside them, and reads an
        # old segment's ids only where its keys hold a key of the batch), so it cannot
        # re-checksum them as good: the next version names the same corrupt file.
        add_batch(root, "night-2", *batch, model_id=MODEL)
        with pytest.raises(GalleryError, match=name):
            verify_gallery(root)
        return
    # A writer refuses to build on a corrupt file rather than re-checksum it as good.
    with pytest.raises(GalleryError, match=name):
        add_batch(root, "night-2", *batch, model_id=MODEL)

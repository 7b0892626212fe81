"""Publishing a gallery version: the draft folder, the atomic publish, the one writer's lock.

Every change publishes a new immutable version folder (see ``dedup.gallery.layout``): files are
written into ``versions/.tmp-<random>/``, the folder is renamed to ``versions/vNNNNNN``, then
``CURRENT`` is replaced. A reader follows ``CURRENT``, so it sees the old version or the new one,
never half of one, and a crash anywhere leaves the previous version published and intact; the
next publish sweeps what the crash left. Files a change does not touch are hard-linked from the
previous version, so erasing one template costs a tombstone file, not a copy of the gallery.
One writer at a time holds ``LOCK``.

Example (what ``dedup.gallery.writer`` and ``dedup.gallery.erasure`` do)::

    with writer_lock(root):
        folder, manifest = current_version(root)
        draft = Draft(root, previous=folder, current_version=manifest.version)
        draft.link(TRAINED_FILE, manifest.files[TRAINED_FILE])
        ...
        draft.publish(next_version(manifest, draft, shards, size, added))
"""

from __future__ import annotations

import dataclasses
import fcntl
import os
import secrets
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import faiss
import pyarrow as pa
import pyarrow.parquet as pq

from dedup.atomic_files import sha256_file, write_atomically, write_bytes_atomically
from dedup.crash_points import crash_point
from dedup.gallery.layout import (
    CURRENT_FILE,
    LOCK_FILE,
    MANIFEST_FILE,
    TMP_PREFIX,
    VERSIONS_DIR,
    GalleryManifest,
    ShardEntry,
    parse_version_name,
    shard_file,
)


class Draft:
    """A version being written in ``versions/.tmp-<random>/``, invisible until ``publish``.

    Starting one first sweeps what a crashed publish left: ``.tmp-*`` folders and version
    folders newer than the published one (renamed, but never named by ``CURRENT``).
    """

    def __init__(self, root: Path, *, previous: Path | None, current_version: int) -> None:
        self.root = root
        self.previous = previous
        versions = root / VERSIONS_DIR
        versions.mkdir(parents=True, exist_ok=True)
        for entry in list(versions.iterdir()):
            number = parse_version_name(entry.name)
            if entry.name.startswith(TMP_PREFIX) or (number or 0) > current_version:
                remove_folder(entry)
        self.path = versions / f"{TMP_PREFIX}{secrets.token_hex(8)}"
        self.path.mkdir()
        self.files: dict[str, str] = {}

    def write(self, name: str, writer: Callable[[Path], object]) -> str:
        path = write_atomically(self.path / name, writer)
        path.chmod(0o444)  # published files are never opened for writing again
        self.files[name] = sha256_file(path)
        return self.files[name]

    def write_table(self, name: str, table: pa.Table) -> str:
        return self.write(name, lambda path: pq.write_table(table, path))

    def write_shard(self, shard_id: int, index: faiss.Index) -> ShardEntry:
        name = shard_file(shard_id)
        sha256 = self.write(name, lambda path: faiss.write_index(index, str(path)))
        del self.files[name]  # shards are listed apart, with their counts
        return ShardEntry(shard_id, name, int(index.ntotal), sha256)

    def link(self, name: str, sha256: str) -> None:
        assert self.previous is not None
        os.link(self.previous / name, self.path / name)
        self.files[name] = sha256

    def link_shard(self, entry: ShardEntry) -> ShardEntry:
        assert self.previous is not None
        os.link(self.previous / entry.file, self.path / entry.file)
        return entry

    def publish(self, manifest: GalleryManifest) -> GalleryManifest:
        manifest.check()
        write_bytes_atomically(self.path / MANIFEST_FILE, manifest.to_json().encode("utf-8"))
        (self.path / MANIFEST_FILE).chmod(0o444)
        _fsync_dir(self.path)
        crash_point("gallery.publish.after_files")
        final = self.root / VERSIONS_DIR / manifest.version_name
        os.rename(self.path, final)
        _fsync_dir(final.parent)
        crash_point("gallery.publish.after_rename")
        write_bytes_atomically(self.root / CURRENT_FILE, f"{manifest.version_name}\n".encode())
        _fsync_dir(self.root)
        return manifest


def next_version(
    manifest: GalleryManifest, draft: Draft, shards: list[ShardEntry], size: int, added: int
) -> GalleryManifest:
    """The manifest of the version a draft makes of ``manifest``'s: ``size`` live templates,
    ``added`` new ids, the draft's files and ``shards``."""
    return dataclasses.replace(
        manifest,
        version=manifest.version + 1,
        size=size,
        next_id=manifest.next_id + added,
        shards=tuple(shards),
        files=dict(draft.files),
        created_at=datetime.now(UTC),
    )


@contextmanager
def writer_lock(root: Path) -> Iterator[None]:
    """One writer per gallery: a second one waits (an erase request during the nightly add)."""
    root.mkdir(parents=True, exist_ok=True)
    with (root / LOCK_FILE).open("a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def remove_folder(path: Path) -> None:
    """Rename away first, so a crash mid-removal leaves a ``.tmp-*`` folder, not half a version."""
    doomed = path.parent / f"{TMP_PREFIX}removing-{secrets.token_hex(8)}"
    os.rename(path, doomed)
    shutil.rmtree(doomed)


def _fsync_dir(path: Path) -> None:
    """Make a rename or a new file in ``path`` durable: without it a power cut may undo it."""
    handle = os.open(path, os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)

"""Publishing a gallery version: the draft, the atomic publish, sweeping what nothing names.

Every change publishes a new immutable version (see ``dedup.gallery.layout``). Its new
segments are written whole first (``segments/.tmp-*`` renamed into place), then its small
files into ``versions/.tmp-<random>/``, which is renamed to ``versions/vNNNNNN``; then
``CURRENT`` is replaced. A reader follows ``CURRENT``, so it sees the old version or the new
one, never half of one, and a crash anywhere leaves the previous version published and
intact. What a crash leaves (staged folders, a renamed version ``CURRENT`` never named,
segments no version names) is swept by the next writer when it starts its draft. Segments and
the trained index are shared by name between versions, never copied. One writer at a time
holds the storage's lock. On S3 (``dedup.gallery.s3_storage``) there is no rename: segments
and versions are written under their final prefix, which nothing reads before ``CURRENT``
names it, so a crash leaves the same kinds of leftovers for the same sweep, and ``CURRENT``
is replaced by a conditional put that refuses a writer whose starting version was replaced.

Example (what ``dedup.gallery.writer`` and ``dedup.gallery.erasure`` do)::

    storage = storage_for(root)
    with storage.lock():
        manifest = current_manifest(storage)[1]
        draft = Draft(storage, current=manifest)
        segment = draft.add_segment(...)
        draft.write_table(LEDGER_FILE, ledger)
        ...
        draft.publish(next_version(manifest, draft, segments, size, added))
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

import faiss
import pyarrow as pa
import pyarrow.parquet as pq

from dedup.crash_points import crash_point
from dedup.errors import GalleryError
from dedup.gallery.layout import (
    MANIFEST_FILE,
    TRAINED_DIR,
    VERSIONS_DIR,
    GalleryManifest,
    parse_version_name,
    version_key,
    version_name,
)
from dedup.gallery.reader import Gallery, load_version
from dedup.gallery.segments import SEGMENTS_DIR, SegmentEntry
from dedup.gallery.storage import (
    TMP_PREFIX,
    GalleryLocation,
    GalleryRoot,
    GalleryStorage,
    storage_for,
)


class Draft:
    """A version being written, invisible until ``publish``.

    Starting one first sweeps what a crash or a prune left (``sweep``).
    """

    def __init__(self, storage: GalleryStorage, *, current: GalleryManifest | None) -> None:
        self.storage = storage
        self.current = current
        sweep(storage, current.version if current else 0)
        number = (current.version if current else 0) + 1
        self.prefix = storage.staging(version_key(version_name(number)))
        self.files: dict[str, str] = {}

    @property
    def location(self) -> GalleryLocation:
        """Where the draft version is written (an unpublished draft is opened there)."""
        return self.storage.location(self.prefix)

    def write_table(self, name: str, table: pa.Table) -> str:
        self.files[name] = self.storage.write(
            f"{self.prefix}/{name}", lambda path: pq.write_table(table, path)
        )
        return self.files[name]

    def write_trained(self, index: faiss.Index, token: str) -> tuple[str, str]:
        """The key and sha256 of a new trained index (a build, once per gallery)."""
        key = f"{TRAINED_DIR}/{token}.faiss"
        return key, self.storage.write(key, lambda path: faiss.write_index(index, str(path)))

    def gallery(self, manifest: GalleryManifest, *, mmap: bool = False) -> Gallery:
        """The draft opened for searching before it is published (to measure it, say)."""
        manifest.check()
        return load_version(self.storage, self.prefix, manifest, verify=False, mmap=mmap)

    def publish(self, manifest: GalleryManifest) -> GalleryManifest:
        manifest.check()
        self.storage.write_bytes(
            f"{self.prefix}/{MANIFEST_FILE}", manifest.to_json().encode("utf-8")
        )
        crash_point("gallery.publish.after_files")
        self.storage.commit(self.prefix, version_key(manifest.version_name))
        crash_point("gallery.publish.after_rename")
        expected = self.current.version_name if self.current else None
        self.storage.replace_current(manifest.version_name, expected=expected)
        return manifest


def next_version(
    manifest: GalleryManifest,
    draft: Draft,
    segments: tuple[SegmentEntry, ...],
    size: int,
    added: int,
) -> GalleryManifest:
    """The manifest of the version a draft makes of ``manifest``'s: ``size`` live templates,
    ``added`` new ids, the draft's files and ``segments``."""
    return dataclasses.replace(
        manifest,
        version=manifest.version + 1,
        size=size,
        next_id=manifest.next_id + added,
        segments=segments,
        files=dict(draft.files),
        created_at=datetime.now(UTC),
    )


def sweep(storage: GalleryStorage, current: int) -> list[str]:
    """Delete what no published version needs; returns the keys deleted.

    Staged folders, versions newer than ``current`` (renamed but never named by ``CURRENT``),
    and segments and trained indexes that no remaining version's manifest names. If some
    remaining manifest cannot be read, no segment is deleted: what it names is unknown.
    """
    deleted = []
    kept: list[str] = []
    for name in storage.list(VERSIONS_DIR):
        number = parse_version_name(name)
        if name.startswith(TMP_PREFIX) or (number or 0) > current:
            deleted.append(version_key(name))
        elif number is not None:
            kept.append(name)
    for key in deleted:
        storage.delete(key)
    named: set[str] = set()
    for name in kept:
        try:
            text = storage.read_bytes(version_key(name, MANIFEST_FILE)).decode("utf-8")
            manifest = GalleryManifest.from_json(text)
        except (FileNotFoundError, UnicodeDecodeError, GalleryError):
            return deleted + _staged_only(storage)
        named.add(manifest.trained)
        named.update(segment.prefix for segment in manifest.segments)
    for folder in (SEGMENTS_DIR, TRAINED_DIR):
        for name in storage.list(folder):
            if f"{folder}/{name}" not in named:
                storage.delete(f"{folder}/{name}")
                deleted.append(f"{folder}/{name}")
    return deleted


def _staged_only(storage: GalleryStorage) -> list[str]:
    staged = [
        f"{folder}/{name}"
        for folder in (SEGMENTS_DIR, TRAINED_DIR)
        for name in storage.list(folder)
        if name.startswith(TMP_PREFIX)
    ]
    for key in staged:
        storage.delete(key)
    return staged


def prune_locked(storage: GalleryStorage, current: GalleryManifest, keep: int) -> list[str]:
    """Delete published versions older than the newest ``keep``, then what only they named."""
    published = sorted(
        (number, name)
        for name in storage.list(VERSIONS_DIR)
        if (number := parse_version_name(name)) is not None and number <= current.version
    )
    doomed = [name for _, name in published[:-keep]]
    for name in doomed:
        storage.delete(version_key(name))
    sweep(storage, current.version)
    return doomed


@contextmanager
def writer_lock(root: GalleryRoot) -> Iterator[None]:
    """One writer per gallery: a second one waits (an erase request during the nightly add)."""
    with storage_for(root).lock():
        yield

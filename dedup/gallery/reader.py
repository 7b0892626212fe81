"""Reading a published gallery version: open, verify, resolve a version, load shards.

A reader follows ``CURRENT`` (see ``dedup.gallery.publish``), so it sees one whole version. A
file that is read is verified against its sha256 in the manifest first (``verify_key``): a
corrupt file is refused by name, and a writer that reads one to make a new file never launders
the corruption into a fresh, valid-looking checksum. A version's shards and vectors are read
from its segments (``dedup.gallery.segment_files``).

Every entry point takes a local folder, an ``s3://`` location or a ``GalleryLocation``
(``dedup.gallery.storage``); the files of an ``s3://`` gallery are read from a verified local
cache (``dedup.gallery.s3_storage``).

Example::

    gallery = open_gallery(root, mmap=True)  # then search gallery.shards, drop ~is_live hits
    shard = open_shard(root, 3)  # one shard and the erasure lists: a Ray shard actor's view
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from dedup.errors import GalleryError
from dedup.gallery.layout import (
    COMPACTED_FILE,
    COMPACTED_SCHEMA,
    IDS_SCHEMA,
    LEDGER_FILE,
    LEDGER_SCHEMA,
    MANIFEST_FILE,
    TOMBSTONES_FILE,
    TOMBSTONES_SCHEMA,
    VERSIONS_DIR,
    GalleryManifest,
    parse_version_name,
    version_key,
)
from dedup.gallery.recipes import parse_factory
from dedup.gallery.segment_files import (
    load_shard,
    open_vectors,
    read_keys,
    read_trained,
    verify_key,
)
from dedup.gallery.segments import SEGMENT_IDS, SegmentEntry, SegmentVectors, enrollment_keys
from dedup.gallery.storage import (
    GalleryLocation,
    GalleryRoot,
    GalleryStorage,
    LocalStorage,
    gallery_location,
    storage_for,
)

Ids = npt.NDArray[np.int64]
Vectors = np.ndarray[Any, Any] | SegmentVectors


class Gallery:
    """One version, opened for reading; a searcher holds it for the whole batch.

    ``shards`` are FAISS indexes whose ids are gallery ids; ``vectors`` are the full vectors
    (row g = gallery id g, memory-mapped: one segment's array, or ``SegmentVectors`` over
    several) for exact re-scoring. Erased ids stay in the shards until ``compact``, so every
    search must drop hits that ``is_live`` refuses.
    """

    def __init__(
        self,
        storage: GalleryStorage,
        prefix: str,
        manifest: GalleryManifest,
        shards: list[tuple[int, faiss.Index]],
        vectors: Vectors,
        pending: Ids,
        compacted: Ids,
    ) -> None:
        self.storage = storage
        self.prefix = prefix
        self.location = storage.location(prefix)
        self.manifest = manifest
        self.shards = shards
        self.vectors = vectors
        self._pending = pending
        self.tombstones: Ids = np.union1d(pending, compacted).astype(np.int64)

    @property
    def path(self) -> Path:
        """The version's folder, for a local gallery (``location`` names any version)."""
        if not isinstance(self.storage, LocalStorage):
            raise GalleryError(f"gallery version {self.location} is not in a local folder")
        return self.storage.local_path(self.prefix)

    @property
    def model_id(self) -> str:
        return self.manifest.model_id

    @property
    def dimension(self) -> int:
        return self.manifest.dimension

    @property
    def size(self) -> int:
        """Live templates: erased ones excluded, even before compaction."""
        return self.manifest.size

    @cached_property
    def _live_ids(self) -> pa.Table:
        table = read_ids(self.storage, self.manifest, verify=False)
        return live_rows(table, self._pending)

    def index_bytes(self) -> int:
        """Bytes the shards' inverted lists take (codes with their padding, and ids)."""
        spec = parse_factory(self.manifest.factory, self.dimension)
        total = 0
        for _, shard in self.shards:
            lists: Any = faiss.extract_index_ivf(shard).invlists
            total += sum(spec.list_bytes(int(lists.list_size(i))) for i in range(spec.nlist))
        return total

    def ids_table(self) -> pa.Table:
        """The live rows of ids.parquet (gallery_id, enrollment_id, shard, batch_id), by id."""
        return self._live_ids

    def is_live(self, ids: npt.ArrayLike) -> npt.NDArray[np.bool_]:
        """True where an id names a template that is in the gallery and not erased."""
        array = np.asarray(ids, dtype=np.int64)
        inside = (array >= 0) & (array < self.manifest.next_id)
        return inside & ~np.isin(array, self.tombstones)

    def enrollment_ids(self, ids: npt.NDArray[np.int64]) -> npt.NDArray[np.object_]:
        """enrollment_id of each gallery id (any shape), None where it is not live: looks up
        only the ids asked for, by binary search in the sorted id column."""
        column = self._live_ids["gallery_id"].to_numpy()
        flat = np.asarray(ids, dtype=np.int64).ravel()
        names = np.full(flat.shape, None, dtype=object)
        if len(column):
            at = np.minimum(np.searchsorted(column, flat), len(column) - 1)
            hit = column[at] == flat  # ids are >= 0, so -1 never hits
            taken = self._live_ids["enrollment_id"].take(pa.array(at[hit]))
            names[hit] = taken.to_numpy(zero_copy_only=False)
        return names.reshape(np.shape(ids))

    def enrollment_id(self, gallery_id: int) -> str:
        column = self._live_ids["gallery_id"].to_numpy()
        at = int(np.searchsorted(column, gallery_id))
        if at == len(column) or column[at] != gallery_id:
            raise GalleryError(f"gallery id {gallery_id} is not a live template of this gallery")
        return str(self._live_ids["enrollment_id"][at].as_py())

    def gallery_ids(self, enrollment_ids: Sequence[str]) -> Ids:
        """The live gallery id of each enrollment, -1 where it has none (never added, erased)."""
        live = self._live_ids
        wanted = pa.array(list(enrollment_ids), pa.string())
        found = live.filter(pc.is_in(live["enrollment_id"], value_set=wanted))
        known = dict(
            zip(found["enrollment_id"].to_pylist(), found["gallery_id"].to_pylist(), strict=True)
        )
        return np.array([known.get(e, -1) for e in enrollment_ids], dtype=np.int64)


def open_gallery(root: GalleryRoot, *, verify: bool = True, mmap: bool = False) -> Gallery:
    """Open the version ``CURRENT`` names; with ``verify``, prove every file's sha256 first.

    ``mmap=True`` memory-maps the shards' inverted lists (``IO_FLAG_MMAP``) where a shard lies
    in one segment (a compacted gallery) instead of reading them into memory: a node can then
    serve more shards than it has RAM for, read-only. A shard spread over several segments is
    merged in memory.
    """
    storage = storage_for(root)
    prefix, manifest = current_manifest(storage)
    try:
        return load_version(storage, prefix, manifest, verify=verify, mmap=mmap)
    except GalleryError:
        # A writer may have published a newer version and pruned this one while we read it.
        newer, newer_manifest = current_manifest(storage)
        if newer == prefix:
            raise
        return load_version(storage, newer, newer_manifest, verify=verify, mmap=mmap)


def verify_gallery(root: GalleryRoot) -> GalleryManifest:
    """Check every checksum and that the files agree with each other and with the manifest."""
    gallery = open_gallery(root, verify=True, mmap=True)
    manifest, storage = gallery.manifest, gallery.storage
    problems = []
    for segment in manifest.segments:
        rows = read_segment_ids(storage, segment, verify=False)
        ids = rows["gallery_id"].to_numpy()
        counts = np.bincount(rows["shard"].to_numpy(), minlength=manifest.shard_count)
        if np.any(np.diff(ids) <= 0) or (
            len(ids) and (ids[0] < segment.first_id or ids[-1] >= segment.end_id)
        ):
            problems.append(f"segment {segment.name}: gallery ids not unique, sorted, in range")
        if counts.tolist() != list(segment.shard_counts):
            problems.append(f"segment {segment.name}: ids disagree with its shard counts")
        keys = np.sort(enrollment_keys(rows["enrollment_id"].to_pylist()))
        if not np.array_equal(read_keys(storage, segment), keys):
            problems.append(f"segment {segment.name}: enrollment keys disagree with its ids")
    ids = read_ids(storage, manifest, verify=False)
    per_shard = np.bincount(ids["shard"].to_numpy(), minlength=manifest.shard_count)
    if per_shard.tolist() != [s.count for s in manifest.shards]:
        problems.append("the segments' ids disagree with the shard counts")
    if [index.ntotal for _, index in gallery.shards] != per_shard.tolist():
        problems.append("the shards hold other counts than the segments' ids")
    if ids.num_rows - len(gallery._pending) != manifest.size:
        problems.append("the segments' ids minus tombstones disagree with the live size")
    ledger = read_version_table(storage, gallery.prefix, manifest, LEDGER_FILE, LEDGER_SCHEMA)
    if sum(ledger["count"].to_pylist()) != manifest.next_id:
        problems.append("the ledger's batches do not add up to next_id")
    if problems:
        raise GalleryError(f"gallery {gallery.location} is inconsistent: " + "; ".join(problems))
    return manifest


def open_shard(gallery: GalleryRoot, shard_id: int, *, mmap: bool = False) -> Gallery:
    """One shard of a version as a ``Gallery`` (a Ray shard actor's view): ``gallery`` is a
    version folder, or a root whose published version is taken. Only the trained index, this
    shard's files in the segments and the erasure lists are read, each after its sha256
    matches the manifest; the vectors are memory-mapped."""
    storage, prefix, manifest = _resolve(gallery)
    if not 0 <= shard_id < manifest.shard_count:
        raise GalleryError(
            f"gallery version {storage.location(prefix)} has shards "
            f"0..{manifest.shard_count - 1}, not shard {shard_id}"
        )
    return load_version(storage, prefix, manifest, verify=False, mmap=mmap, only=shard_id)


def resolve_version(path: GalleryRoot) -> tuple[GalleryLocation, GalleryManifest]:
    """A version folder (it holds ``manifest.json``) as it is, or a root's published version."""
    storage, prefix, manifest = _resolve(path)
    return storage.location(prefix), manifest


def _resolve(path: GalleryRoot) -> tuple[GalleryStorage, str, GalleryManifest]:
    """The gallery's storage, the version's key and its manifest."""
    where = gallery_location(path)
    storage = storage_for(where)
    try:
        text = storage.read_bytes(MANIFEST_FILE).decode("utf-8")
    except (FileNotFoundError, IsADirectoryError):
        return (storage, *current_manifest(storage))
    manifest = GalleryManifest.from_json(text)
    if manifest.version_name != where.name:
        raise GalleryError(
            f"{where.join(MANIFEST_FILE)} describes version {manifest.version}, not {where.name}"
        )
    return storage_for(where.parent.parent), version_key(where.name), manifest


def gallery_exists(root: GalleryRoot) -> bool:
    """Whether a version is published there (``CURRENT`` exists)."""
    return storage_for(root).read_current() is not None


def load_version(
    storage: GalleryStorage,
    prefix: str,
    manifest: GalleryManifest,
    *,
    verify: bool,
    mmap: bool,
    only: int | None = None,
) -> Gallery:
    """The version whose small files are under ``prefix`` (published, or a draft's) as a
    ``Gallery``: every shard, or ``only`` that one (whose files are then verified)."""
    if verify:
        for key, expected in manifest.checksums().items():
            if not key.startswith(f"{VERSIONS_DIR}/"):
                verify_key(storage, key, expected)
        for name, expected in manifest.files.items():
            verify_key(storage, f"{prefix}/{name}", expected)
    if only is not None:
        for name in (TOMBSTONES_FILE, COMPACTED_FILE):
            verify_key(storage, f"{prefix}/{name}", manifest.files[name])
    trained = read_trained(storage, manifest, verify=only is not None)
    wanted = range(manifest.shard_count) if only is None else (only,)
    shards = [
        (s, load_shard(storage, manifest, trained, s, mmap=mmap, verify=only is not None))
        for s in wanted
    ]
    pending = read_version_table(storage, prefix, manifest, TOMBSTONES_FILE, TOMBSTONES_SCHEMA)
    compacted = read_version_table(storage, prefix, manifest, COMPACTED_FILE, COMPACTED_SCHEMA)
    storage.drop_cached([segment.prefix for segment in manifest.segments])
    return Gallery(
        storage,
        prefix,
        manifest,
        shards,
        open_vectors(storage, manifest, verify=False),
        np.sort(pending["gallery_id"].to_numpy()).astype(np.int64),
        np.sort(compacted["gallery_id"].to_numpy()).astype(np.int64),
    )


def current_manifest(storage: GalleryStorage) -> tuple[str, GalleryManifest]:
    """The key and manifest of the version ``CURRENT`` names (what a writer starts from)."""
    name = storage.read_current()
    if name is None:
        raise GalleryError(f"no gallery at {storage.location()}: CURRENT is missing")
    if parse_version_name(name) is None:
        raise GalleryError(f"CURRENT names {name!r}, which is not a version folder")
    prefix = version_key(name)
    try:
        text = storage.read_bytes(f"{prefix}/{MANIFEST_FILE}").decode("utf-8")
    except FileNotFoundError as error:
        raise GalleryError(f"gallery version {prefix} has no {MANIFEST_FILE}") from error
    manifest = GalleryManifest.from_json(text)
    if manifest.version_name != name:
        raise GalleryError(f"{prefix}/{MANIFEST_FILE} describes version {manifest.version}")
    return prefix, manifest


def current_version(root: GalleryRoot) -> tuple[GalleryLocation, GalleryManifest]:
    """The location and manifest of the published version of a gallery root."""
    storage = storage_for(root)
    prefix, manifest = current_manifest(storage)
    return storage.location(prefix), manifest


def read_version_table(
    storage: GalleryStorage,
    prefix: str,
    manifest: GalleryManifest,
    name: str,
    schema: pa.Schema,
    *,
    verify: bool = False,
) -> pa.Table:
    """A Parquet file of the version folder cast to its declared schema (verified if asked)."""
    if verify:
        verify_key(storage, f"{prefix}/{name}", manifest.files[name])
    return _read_parquet(storage, f"{prefix}/{name}", schema)


def read_segment_ids(storage: GalleryStorage, segment: SegmentEntry, *, verify: bool) -> pa.Table:
    key = segment.key(SEGMENT_IDS)
    if verify:
        verify_key(storage, key, segment.files[SEGMENT_IDS])
    return _read_parquet(storage, key, IDS_SCHEMA)


def read_ids(storage: GalleryStorage, manifest: GalleryManifest, *, verify: bool) -> pa.Table:
    """Every ids row of the version (tombstoned ones included), sorted by gallery id."""
    tables = [read_segment_ids(storage, s, verify=verify) for s in manifest.segments]
    return pa.concat_tables(tables) if tables else IDS_SCHEMA.empty_table()


def _read_parquet(storage: GalleryStorage, key: str, schema: pa.Schema) -> pa.Table:
    try:
        return pq.read_table(storage.local_path(key)).select(schema.names).cast(schema)
    except (OSError, KeyError, pa.ArrowException) as error:
        raise GalleryError(f"gallery file {key} is unreadable: {error}") from error


def live_rows(ids: pa.Table, pending: Ids) -> pa.Table:
    """The rows of ``ids`` whose gallery id is not tombstoned (``pending``)."""
    if not len(pending):
        return ids
    return ids.filter(pc.invert(pc.is_in(ids["gallery_id"], value_set=pa.array(pending))))


def live_ids(root: GalleryRoot) -> pa.Table:
    """The live ids rows (gallery_id, enrollment_id, shard, batch_id) of the published
    version, verified: what an eraser looks an enrollment up in."""
    storage = storage_for(root)
    prefix, manifest = current_manifest(storage)
    pending = read_version_table(
        storage, prefix, manifest, TOMBSTONES_FILE, TOMBSTONES_SCHEMA, verify=True
    )
    return live_rows(read_ids(storage, manifest, verify=True), pending["gallery_id"].to_numpy())

"""Reading a published gallery version: open, verify, resolve a version, load shards.

A reader follows ``CURRENT`` (see ``dedup.gallery.publish``), so it sees one whole version. A
file that is read is verified against its sha256 in the manifest first (``verify_file``): a
corrupt file is refused by name, and a writer that reads one to make a new file never launders
the corruption into a fresh, valid-looking checksum.

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

from dedup.atomic_files import sha256_file
from dedup.errors import GalleryError
from dedup.gallery.layout import (
    COMPACTED_FILE,
    COMPACTED_SCHEMA,
    CURRENT_FILE,
    IDS_FILE,
    IDS_SCHEMA,
    LEDGER_FILE,
    LEDGER_SCHEMA,
    MANIFEST_FILE,
    TOMBSTONES_FILE,
    TOMBSTONES_SCHEMA,
    VECTORS_FILE,
    VERSIONS_DIR,
    GalleryManifest,
    ShardEntry,
    parse_version_name,
)
from dedup.gallery.recipes import parse_factory

Ids = npt.NDArray[np.int64]


class Gallery:
    """One published version, opened for reading; a searcher holds it for the whole batch.

    ``shards`` are FAISS indexes whose ids are gallery ids; ``vectors`` is the memory-mapped
    ``vectors.npy`` (row g = gallery id g) for exact re-scoring. Erased ids stay in the shards
    until ``compact``, so every search must drop hits that ``is_live`` refuses.
    """

    def __init__(
        self,
        root: Path,
        path: Path,
        manifest: GalleryManifest,
        shards: list[tuple[int, faiss.Index]],
        vectors: np.ndarray[Any, Any],
        pending: Ids,
        compacted: Ids,
    ) -> None:
        self.root = root
        self.path = path
        self.manifest = manifest
        self.shards = shards
        self.vectors = vectors
        self._pending = pending
        self.tombstones: Ids = np.union1d(pending, compacted).astype(np.int64)

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
        table = read_table(self.path, self.manifest, IDS_FILE, IDS_SCHEMA, verify=False)
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


def open_gallery(root: Path, *, verify: bool = True, mmap: bool = False) -> Gallery:
    """Open the version ``CURRENT`` names; with ``verify``, prove every file's sha256 first.

    ``mmap=True`` memory-maps the shards' inverted lists (``IO_FLAG_MMAP``) instead of reading
    them into memory: a node can serve more shards than it has RAM for, read-only.
    """
    root = Path(root)
    folder, manifest = current_version(root)
    try:
        return _load(root, folder, manifest, verify=verify, mmap=mmap)
    except GalleryError:
        # A writer may have published a newer version and pruned this one while we read it.
        newer, newer_manifest = current_version(root)
        if newer == folder:
            raise
        return _load(root, newer, newer_manifest, verify=verify, mmap=mmap)


def verify_gallery(root: Path) -> GalleryManifest:
    """Check every checksum and that the files agree with each other and with the manifest."""
    gallery = open_gallery(root, verify=True, mmap=True)
    manifest = gallery.manifest
    ids = read_table(gallery.path, manifest, IDS_FILE, IDS_SCHEMA, verify=False)
    ledger = read_table(gallery.path, manifest, LEDGER_FILE, LEDGER_SCHEMA, verify=False)
    gallery_ids = ids["gallery_id"].to_numpy()
    per_shard = np.bincount(ids["shard"].to_numpy(), minlength=len(manifest.shards))
    problems = []
    if np.any(np.diff(gallery_ids) <= 0) or (
        len(gallery_ids) and gallery_ids[-1] >= manifest.next_id
    ):
        problems.append("ids.parquet gallery ids are not unique, sorted and below next_id")
    if per_shard.tolist() != [s.count for s in manifest.shards]:
        problems.append("ids.parquet disagrees with the shard counts")
    if ids.num_rows - len(gallery._pending) != manifest.size:
        problems.append("ids.parquet minus tombstones disagrees with the live size")
    if sum(ledger["count"].to_pylist()) != manifest.next_id:
        problems.append("the ledger's batches do not add up to next_id")
    if problems:
        raise GalleryError(f"gallery {gallery.path} is inconsistent: " + "; ".join(problems))
    return manifest


def open_shard(gallery: Path, shard_id: int, *, mmap: bool = False) -> Gallery:
    """One shard of a version as a ``Gallery`` (a Ray shard actor's view): ``gallery`` is a
    version folder, or a root whose published version is taken. Only this shard's file and the
    erasure lists are read, each after its sha256 matches the manifest."""
    folder, manifest = resolve_version(Path(gallery))
    entry = next((s for s in manifest.shards if s.id == shard_id), None)
    if entry is None:
        raise GalleryError(
            f"gallery version {folder} has shards 0..{len(manifest.shards) - 1}, "
            f"not shard {shard_id}"
        )
    verify_file(folder, entry.file, entry.sha256)
    for name in (TOMBSTONES_FILE, COMPACTED_FILE):
        verify_file(folder, name, manifest.files[name])
    return _load(folder.parent.parent, folder, manifest, verify=False, mmap=mmap, only=entry)


def open_draft(root: Path, folder: Path, manifest: GalleryManifest) -> Gallery:
    """A version being written (``Draft``), opened for searching before it is published: what
    the writer measures recall on. Its files were just written and checksummed by the writer."""
    return _load(Path(root), folder, manifest, verify=False, mmap=False)


def resolve_version(path: Path) -> tuple[Path, GalleryManifest]:
    """A version folder (it holds ``manifest.json``) as it is, or a root's published version."""
    path = Path(path)
    manifest_path = path / MANIFEST_FILE
    if not manifest_path.is_file():
        return current_version(path)
    manifest = GalleryManifest.from_json(manifest_path.read_text(encoding="utf-8"))
    if manifest.version_name != path.name:
        raise GalleryError(f"{manifest_path} describes version {manifest.version}, not {path.name}")
    return path, manifest


def _load(
    root: Path,
    folder: Path,
    manifest: GalleryManifest,
    *,
    verify: bool,
    mmap: bool,
    only: ShardEntry | None = None,
) -> Gallery:
    if verify:
        for name, expected in manifest.checksums().items():
            verify_file(folder, name, expected)
    entries = manifest.shards if only is None else (only,)
    shards = [(s.id, read_shard(folder, manifest, s, mmap=mmap)) for s in entries]
    pending = read_table(folder, manifest, TOMBSTONES_FILE, TOMBSTONES_SCHEMA, verify=False)
    compacted = read_table(folder, manifest, COMPACTED_FILE, COMPACTED_SCHEMA, verify=False)
    return Gallery(
        root,
        folder,
        manifest,
        shards,
        open_vectors(folder, manifest),
        np.sort(pending["gallery_id"].to_numpy()).astype(np.int64),
        np.sort(compacted["gallery_id"].to_numpy()).astype(np.int64),
    )


def current_version(root: Path) -> tuple[Path, GalleryManifest]:
    """The folder and manifest of the version ``CURRENT`` names (what a writer starts from)."""
    pointer = root / CURRENT_FILE
    try:
        name = pointer.read_text(encoding="utf-8").strip()
    except (FileNotFoundError, NotADirectoryError) as error:
        raise GalleryError(f"no gallery at {root}: {CURRENT_FILE} is missing") from error
    if parse_version_name(name) is None:
        raise GalleryError(f"{pointer} names {name!r}, which is not a version folder")
    folder = root / VERSIONS_DIR / name
    try:
        manifest = GalleryManifest.from_json((folder / MANIFEST_FILE).read_text(encoding="utf-8"))
    except FileNotFoundError as error:
        raise GalleryError(f"gallery version {folder} has no {MANIFEST_FILE}") from error
    if manifest.version_name != name:
        raise GalleryError(f"{folder / MANIFEST_FILE} describes version {manifest.version}")
    return folder, manifest


def verify_file(folder: Path, name: str, expected: str) -> Path:
    """The path of ``name`` in ``folder`` once its sha256 is ``expected``; corrupt or missing
    files are refused by name, with what to do."""
    path = folder / name
    try:
        actual = sha256_file(path)
    except FileNotFoundError as error:
        raise GalleryError(f"gallery file {name} is missing from {folder}") from error
    if actual != expected:
        raise GalleryError(
            f"gallery file {name} in {folder} is corrupt: sha256 {actual[:16]}..., the manifest "
            f"says {expected[:16]}...; restore it from a backup or rebuild the gallery"
        )
    return path


def read_table(
    folder: Path, manifest: GalleryManifest, name: str, schema: pa.Schema, *, verify: bool
) -> pa.Table:
    """A Parquet file of the version cast to its declared schema (verified first if asked)."""
    path = verify_file(folder, name, manifest.files[name]) if verify else folder / name
    try:
        return pq.read_table(path).select(schema.names).cast(schema)
    except (OSError, KeyError, pa.ArrowException) as error:
        raise GalleryError(f"gallery file {name} in {folder} is unreadable: {error}") from error


def read_shard(
    folder: Path, manifest: GalleryManifest, entry: ShardEntry, *, mmap: bool
) -> faiss.Index:
    """A shard's FAISS index (memory-mapped if asked), refused unless it holds what the manifest
    says: its dimension, template count and list count."""
    try:
        if mmap:
            index = faiss.read_index(str(folder / entry.file), faiss.IO_FLAG_MMAP)
        else:
            index = faiss.read_index(str(folder / entry.file))
    except RuntimeError as error:
        raise GalleryError(f"gallery shard {entry.file} in {folder} is unreadable") from error
    ivf = faiss.extract_index_ivf(index)
    if (index.d, index.ntotal, ivf.nlist) != (manifest.dimension, entry.count, manifest.nlist):
        raise GalleryError(
            f"gallery shard {entry.file} holds {index.ntotal} {index.d}-d templates in "
            f"{ivf.nlist} lists; the manifest says {entry.count}, {manifest.dimension}-d, "
            f"{manifest.nlist} lists"
        )
    return index


def open_vectors(folder: Path, manifest: GalleryManifest) -> np.ndarray[Any, Any]:
    """``vectors.npy`` memory-mapped read-only; refused unless its shape and dtype are the
    manifest's."""
    try:
        vectors: np.ndarray[Any, Any] = np.load(folder / VECTORS_FILE, mmap_mode="r")
    except (OSError, ValueError) as error:
        raise GalleryError(f"gallery file {VECTORS_FILE} in {folder} is unreadable") from error
    expected = (manifest.next_id, manifest.dimension)
    if vectors.shape != expected or vectors.dtype != np.dtype(manifest.vector_dtype):
        raise GalleryError(
            f"gallery file {VECTORS_FILE} is {vectors.dtype}{vectors.shape}, the manifest says "
            f"{manifest.vector_dtype}{expected}"
        )
    return vectors


def live_rows(ids: pa.Table, pending: Ids) -> pa.Table:
    """The rows of ``ids`` whose gallery id is not tombstoned (``pending``)."""
    if not len(pending):
        return ids
    return ids.filter(pc.invert(pc.is_in(ids["gallery_id"], value_set=pa.array(pending))))


def verified_vectors(folder: Path, manifest: GalleryManifest) -> np.ndarray[Any, Any]:
    """``open_vectors`` after the sha256 check: for a writer that copies them into a new version."""
    verify_file(folder, VECTORS_FILE, manifest.files[VECTORS_FILE])
    return open_vectors(folder, manifest)

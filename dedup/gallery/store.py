"""The gallery's storage: build, open, verify, add, erase and compact sharded IVF-PQ versions.

Every change publishes a new immutable version folder (see ``dedup.gallery.layout``): files are
written into ``versions/.tmp-<random>/``, the folder is renamed to ``versions/vNNNNNN``, then
``CURRENT`` is replaced. A reader follows ``CURRENT``, so it sees the old version or the new one,
never half of one, and a crash anywhere leaves the previous version published and intact; the
next publish sweeps what the crash left. Files a change does not touch are hard-linked from the
previous version, so erasing one template costs a tombstone file, not a copy of the gallery.

A file that is read to make a new file is verified against its checksum first, so corruption is
never laundered into a fresh, valid-looking checksum. One writer at a time holds ``LOCK``.

Example::

    build_gallery(root, enrollment_ids, templates, model_id="dlib-resnet-v1", batch_id="n-1")
    add_batch(root, "n-2", more_ids, more_templates, model_id="dlib-resnet-v1")
    gallery = open_gallery(root, mmap=True)  # then search gallery.shards, drop ~is_live hits
"""

from __future__ import annotations

import dataclasses
import fcntl
import os
import secrets
import shutil
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from dedup.atomic_files import sha256_file, write_atomically, write_bytes_atomically
from dedup.crash_points import crash_point
from dedup.errors import GalleryError
from dedup.gallery.layout import (
    COMPACTED_FILE,
    COMPACTED_SCHEMA,
    CURRENT_FILE,
    IDS_FILE,
    IDS_SCHEMA,
    LEDGER_FILE,
    LEDGER_SCHEMA,
    LOCK_FILE,
    MANIFEST_FILE,
    TMP_PREFIX,
    TOMBSTONES_FILE,
    TOMBSTONES_SCHEMA,
    TRAIN_POINTS_PER_CENTROID,
    TRAINED_FILE,
    VECTOR_DTYPES,
    VECTORS_FILE,
    VERSIONS_DIR,
    GalleryManifest,
    PqSpec,
    ShardEntry,
    default_factory,
    default_shards,
    default_train_size,
    parse_factory,
    parse_version_name,
    shard_file,
)
from dedup.gallery.training import jittered, train_index

UNIT_TOLERANCE = 1e-3
COPY_ROWS = 1 << 20  # rows of vectors.npy copied at a time, so a copy never holds the gallery

Ids = npt.NDArray[np.int64]
Vectors = npt.NDArray[np.float32]


# ---------------------------------------------------------------------------------- reading


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
        table = _read_table(self.path, self.manifest, IDS_FILE, IDS_SCHEMA, verify=False)
        return _live_rows(table, self._pending)

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
    folder, manifest = _current_version(root)
    try:
        return _load(root, folder, manifest, verify=verify, mmap=mmap)
    except GalleryError:
        # A writer may have published a newer version and pruned this one while we read it.
        newer, newer_manifest = _current_version(root)
        if newer == folder:
            raise
        return _load(root, newer, newer_manifest, verify=verify, mmap=mmap)


def verify_gallery(root: Path) -> GalleryManifest:
    """Check every checksum and that the files agree with each other and with the manifest."""
    gallery = open_gallery(root, verify=True, mmap=True)
    manifest = gallery.manifest
    ids = _read_table(gallery.path, manifest, IDS_FILE, IDS_SCHEMA, verify=False)
    ledger = _read_table(gallery.path, manifest, LEDGER_FILE, LEDGER_SCHEMA, verify=False)
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
    _verify_file(folder, entry.file, entry.sha256)
    for name in (TOMBSTONES_FILE, COMPACTED_FILE):
        _verify_file(folder, name, manifest.files[name])
    return _load(folder.parent.parent, folder, manifest, verify=False, mmap=mmap, only=entry)


def resolve_version(path: Path) -> tuple[Path, GalleryManifest]:
    """A version folder (it holds ``manifest.json``) as it is, or a root's published version."""
    path = Path(path)
    manifest_path = path / MANIFEST_FILE
    if not manifest_path.is_file():
        return _current_version(path)
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
            _verify_file(folder, name, expected)
    entries = manifest.shards if only is None else (only,)
    shards = [(s.id, _read_shard(folder, manifest, s, mmap=mmap)) for s in entries]
    pending = _read_table(folder, manifest, TOMBSTONES_FILE, TOMBSTONES_SCHEMA, verify=False)
    compacted = _read_table(folder, manifest, COMPACTED_FILE, COMPACTED_SCHEMA, verify=False)
    return Gallery(
        root,
        folder,
        manifest,
        shards,
        _open_vectors(folder, manifest),
        np.sort(pending["gallery_id"].to_numpy()).astype(np.int64),
        np.sort(compacted["gallery_id"].to_numpy()).astype(np.int64),
    )


def _current_version(root: Path) -> tuple[Path, GalleryManifest]:
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


def _verify_file(folder: Path, name: str, expected: str) -> Path:
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


def _read_table(
    folder: Path, manifest: GalleryManifest, name: str, schema: pa.Schema, *, verify: bool
) -> pa.Table:
    path = _verify_file(folder, name, manifest.files[name]) if verify else folder / name
    try:
        return pq.read_table(path).select(schema.names).cast(schema)
    except (OSError, KeyError, pa.ArrowException) as error:
        raise GalleryError(f"gallery file {name} in {folder} is unreadable: {error}") from error


def _read_shard(
    folder: Path, manifest: GalleryManifest, entry: ShardEntry, *, mmap: bool
) -> faiss.Index:
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


def _open_vectors(folder: Path, manifest: GalleryManifest) -> np.ndarray[Any, Any]:
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


def _live_rows(ids: pa.Table, pending: Ids) -> pa.Table:
    if not len(pending):
        return ids
    return ids.filter(pc.invert(pc.is_in(ids["gallery_id"], value_set=pa.array(pending))))


# ---------------------------------------------------------------------------------- writing


def build_gallery(
    root: Path,
    enrollment_ids: Sequence[str],
    vectors: np.ndarray[Any, Any],
    *,
    model_id: str,
    batch_id: str,
    shards: int | None = None,
    factory: str | None = None,
    vector_dtype: str = "float16",
    train_size: int | None = None,
    seed: int = 0,
) -> GalleryManifest:
    """Train the shared IVF-PQ on a seeded sample, split ids 0..N-1 over shards, publish v1.

    ``factory`` defaults to ``default_factory(N, d)``; ``train_size`` to 64 points per
    centroid of the larger k-means (coarse lists or PQ codebook), at most N.
    """
    root = Path(root)
    names = _checked_enrollment_ids(enrollment_ids)
    data = _checked_vectors(vectors, len(names))
    n, dimension = data.shape
    if n == 0:
        raise GalleryError("cannot build a gallery from no templates: the index trains on them")
    shards = shards or default_shards(n)
    if shards < 1 or vector_dtype not in VECTOR_DTYPES:
        raise GalleryError(f"need shards >= 1 and vector_dtype in {VECTOR_DTYPES}")
    recipe = factory or default_factory(n, dimension, shards)
    spec = parse_factory(recipe, dimension)
    sample = min(n, train_size or default_train_size(n, spec))
    needed = max(spec.nlist, (1 << spec.nbits))
    if sample < needed and factory is not None:
        raise GalleryError(
            f"{recipe} needs at least {max(spec.nlist, (1 << spec.nbits))} training templates, "
            f"got {sample}: choose a smaller factory"
        )
    with _writer_lock(root):
        if (root / CURRENT_FILE).exists():
            raise GalleryError(f"a gallery already exists at {root}; add batches to it instead")
        rows = np.sort(np.random.default_rng(seed).choice(n, size=sample, replace=False))
        training = np.ascontiguousarray(data[rows])
        if len(training) < needed:  # only the default recipe gets here: a tiny gallery
            training = jittered(training, TRAIN_POINTS_PER_CENTROID * needed, seed)
        trained = train_index(recipe, spec, training, seed)
        ids = np.arange(n, dtype=np.int64)
        assignment = _fill_smallest_first([0] * shards, n)
        draft = _Draft(root, previous=None, current_version=0)
        draft.write(TRAINED_FILE, lambda path: faiss.write_index(trained, str(path)))
        entries = []
        for shard in range(shards):
            chosen = assignment == shard
            index = faiss.clone_index(trained)
            index.add_with_ids(data[chosen], ids[chosen])
            entries.append(draft.write_shard(shard, index))
        draft.write(VECTORS_FILE, lambda path: _write_vectors(path, [data], vector_dtype))
        table = _ids_rows(ids, names, assignment, batch_id)
        draft.write_table(IDS_FILE, table)
        draft.write_table(TOMBSTONES_FILE, TOMBSTONES_SCHEMA.empty_table())
        draft.write_table(COMPACTED_FILE, COMPACTED_SCHEMA.empty_table())
        draft.write_table(LEDGER_FILE, _ledger_rows(batch_id, 0, n))
        manifest = GalleryManifest(
            version=1,
            model_id=model_id,
            dimension=dimension,
            factory=recipe,
            nlist=spec.nlist,
            pq=PqSpec(spec.m, spec.nbits),
            vector_dtype=vector_dtype,
            size=n,
            next_id=n,
            shards=tuple(entries),
            files=draft.files,
            created_at=datetime.now(UTC),
        )
        return draft.publish(manifest)


def add_batch(
    root: Path,
    batch_id: str,
    enrollment_ids: Sequence[str],
    vectors: np.ndarray[Any, Any],
    *,
    model_id: str,
) -> GalleryManifest:
    """Add one batch under new ids; a batch already in the ledger changes nothing at all.

    New templates fill the smallest shards first; only the shards that receive some are
    rewritten, the others are hard-linked from the previous version.
    """
    root = Path(root)
    names = _checked_enrollment_ids(enrollment_ids)
    data = _checked_vectors(vectors, len(names))
    with _writer_lock(root):
        folder, manifest = _current_version(root)
        if model_id != manifest.model_id:
            raise GalleryError(
                f"batch {batch_id!r} holds {model_id!r} templates but the gallery holds "
                f"{manifest.model_id!r} ones: a gallery never mixes models"
            )
        ledger = _read_table(folder, manifest, LEDGER_FILE, LEDGER_SCHEMA, verify=True)
        if batch_id in ledger["batch_id"].to_pylist():
            return manifest
        if data.shape[1] != manifest.dimension:
            raise GalleryError(
                f"templates are {data.shape[1]}-d, the gallery {manifest.dimension}-d"
            )
        ids = _read_table(folder, manifest, IDS_FILE, IDS_SCHEMA, verify=True)
        pending = _read_table(folder, manifest, TOMBSTONES_FILE, TOMBSTONES_SCHEMA, verify=True)
        live = _live_rows(ids, pending["gallery_id"].to_numpy())
        clash = live.filter(pc.is_in(live["enrollment_id"], value_set=pa.array(names, pa.string())))
        if clash.num_rows:
            raise GalleryError(
                f"{clash.num_rows} enrollments of batch {batch_id!r} are already in the gallery "
                f"(e.g. {clash['enrollment_id'][0].as_py()!r})"
            )
        new_ids = np.arange(manifest.next_id, manifest.next_id + len(names), dtype=np.int64)
        assignment = _fill_smallest_first([s.count for s in manifest.shards], len(names))
        draft = _Draft(root, previous=folder, current_version=manifest.version)
        draft.link(TRAINED_FILE, manifest.files[TRAINED_FILE])
        entries = []
        for entry in manifest.shards:
            chosen = assignment == entry.id
            if not chosen.any():
                entries.append(draft.link_shard(entry))
                continue
            _verify_file(folder, entry.file, entry.sha256)
            index = _read_shard(folder, manifest, entry, mmap=False)
            index.add_with_ids(data[chosen], new_ids[chosen])
            entries.append(draft.write_shard(entry.id, index))
        old = _verified_vectors(folder, manifest)
        draft.write(VECTORS_FILE, lambda path: _write_vectors(path, [old, data], old.dtype))
        draft.write_table(
            IDS_FILE, pa.concat_tables([ids, _ids_rows(new_ids, names, assignment, batch_id)])
        )
        draft.link(TOMBSTONES_FILE, manifest.files[TOMBSTONES_FILE])
        draft.link(COMPACTED_FILE, manifest.files[COMPACTED_FILE])
        added = _ledger_rows(batch_id, manifest.next_id, len(names))
        draft.write_table(LEDGER_FILE, pa.concat_tables([ledger, added]))
        return draft.publish(
            _next(manifest, draft, entries, manifest.size + len(names), new_ids.size)
        )


def erase(root: Path, enrollment_id: str) -> GalleryManifest:
    """Tombstone an enrollment's template: searches drop it at once, ``compact`` removes it.

    Erasing an already-erased enrollment changes nothing. Once compacted away, the gallery no
    longer knows the enrollment id at all, so it is then reported unknown.
    """
    root = Path(root)
    with _writer_lock(root):
        folder, manifest = _current_version(root)
        ids = _read_table(folder, manifest, IDS_FILE, IDS_SCHEMA, verify=True)
        pending = _read_table(folder, manifest, TOMBSTONES_FILE, TOMBSTONES_SCHEMA, verify=True)
        rows = ids.filter(pc.equal(ids["enrollment_id"], enrollment_id))
        if not rows.num_rows:
            raise GalleryError(f"enrollment {enrollment_id!r} is not in the gallery")
        erased = np.setdiff1d(rows["gallery_id"].to_numpy(), pending["gallery_id"].to_numpy())
        if not erased.size:
            return manifest
        draft = _Draft(root, previous=folder, current_version=manifest.version)
        for name in (TRAINED_FILE, VECTORS_FILE, IDS_FILE, COMPACTED_FILE, LEDGER_FILE):
            draft.link(name, manifest.files[name])
        entries = [draft.link_shard(entry) for entry in manifest.shards]
        now = datetime.now(UTC)
        added = pa.table(
            {"gallery_id": erased, "erased_at": [now] * erased.size}, schema=TOMBSTONES_SCHEMA
        )
        draft.write_table(TOMBSTONES_FILE, pa.concat_tables([pending, added]))
        return draft.publish(_next(manifest, draft, entries, manifest.size - erased.size, 0))


def compact(root: Path) -> GalleryManifest:
    """Remove tombstoned templates physically: from their shards, vectors.npy and ids.parquet.

    Gallery ids of the others do not change; the compacted ids are kept in compacted.parquet
    so they are never reused and stay reported dead. Older versions still hold the erased
    templates, so compaction then removes every version but the one it published.
    """
    root = Path(root)
    with _writer_lock(root):
        folder, manifest = _current_version(root)
        pending = _read_table(folder, manifest, TOMBSTONES_FILE, TOMBSTONES_SCHEMA, verify=True)
        if pending.num_rows:
            manifest = _compact_locked(root, folder, manifest, pending)
        _prune_locked(root, keep=1)
        return manifest


def prune_versions(root: Path, *, keep: int = 2) -> list[str]:
    """Remove published versions older than the newest ``keep``; returns their names.

    Every add writes a new vectors.npy, so old versions cost disk until pruned. A reader that
    already opened a pruned version keeps working (its files stay open); one that reads
    ``CURRENT`` at that very moment retries once in ``open_gallery``.
    """
    if keep < 1:
        raise GalleryError("keep at least the published version")
    with _writer_lock(Path(root)):
        return _prune_locked(Path(root), keep)


def _compact_locked(
    root: Path, folder: Path, manifest: GalleryManifest, pending: pa.Table
) -> GalleryManifest:
    ids = _read_table(folder, manifest, IDS_FILE, IDS_SCHEMA, verify=True)
    erased = pending["gallery_id"].to_numpy().astype(np.int64)
    doomed = pc.is_in(ids["gallery_id"], value_set=pa.array(erased))
    doomed_rows = ids.filter(doomed)
    draft = _Draft(root, previous=folder, current_version=manifest.version)
    draft.link(TRAINED_FILE, manifest.files[TRAINED_FILE])
    draft.link(LEDGER_FILE, manifest.files[LEDGER_FILE])
    entries = []
    for entry in manifest.shards:
        in_shard = doomed_rows.filter(pc.equal(doomed_rows["shard"], entry.id))
        if not in_shard.num_rows:
            entries.append(draft.link_shard(entry))
            continue
        _verify_file(folder, entry.file, entry.sha256)
        index = _read_shard(folder, manifest, entry, mmap=False)
        removed = index.remove_ids(in_shard["gallery_id"].to_numpy().astype(np.int64))
        if removed != in_shard.num_rows:
            raise GalleryError(f"shard {entry.file} held {removed} of {in_shard.num_rows} ids")
        entries.append(draft.write_shard(entry.id, index))
    old = _verified_vectors(folder, manifest)
    draft.write(VECTORS_FILE, lambda path: _write_vectors(path, [old], old.dtype, zero=erased))
    draft.write_table(IDS_FILE, ids.filter(pc.invert(doomed)))
    draft.write_table(TOMBSTONES_FILE, TOMBSTONES_SCHEMA.empty_table())
    compacted = _read_table(folder, manifest, COMPACTED_FILE, COMPACTED_SCHEMA, verify=True)
    now = pa.array(
        [datetime.now(UTC)] * pending.num_rows, COMPACTED_SCHEMA.field("compacted_at").type
    )
    done = pending.append_column(COMPACTED_SCHEMA.field("compacted_at"), now)
    draft.write_table(COMPACTED_FILE, pa.concat_tables([compacted, done.cast(COMPACTED_SCHEMA)]))
    return draft.publish(_next(manifest, draft, entries, manifest.size, 0))


def _prune_locked(root: Path, keep: int) -> list[str]:
    _, manifest = _current_version(root)
    versions = root / VERSIONS_DIR
    published = sorted(
        (number, entry)
        for entry in versions.iterdir()
        if (number := parse_version_name(entry.name)) is not None and number <= manifest.version
    )
    doomed = [entry for _, entry in published[:-keep]]
    for entry in doomed:
        _remove_folder(entry)
    return [entry.name for entry in doomed]


# ---------------------------------------------------------------------------------- publishing


class _Draft:
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
                _remove_folder(entry)
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


def _next(
    manifest: GalleryManifest, draft: _Draft, shards: list[ShardEntry], size: int, added: int
) -> GalleryManifest:
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
def _writer_lock(root: Path) -> Iterator[None]:
    """One writer per gallery: a second one waits (an erase request during the nightly add)."""
    root.mkdir(parents=True, exist_ok=True)
    with (root / LOCK_FILE).open("a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _remove_folder(path: Path) -> None:
    """Rename away first, so a crash mid-removal leaves a ``.tmp-*`` folder, not half a version."""
    doomed = path.parent / f"{TMP_PREFIX}removing-{secrets.token_hex(8)}"
    os.rename(path, doomed)
    shutil.rmtree(doomed)


def _fsync_dir(path: Path) -> None:
    handle = os.open(path, os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


# ---------------------------------------------------------------------------------- helpers


def _checked_enrollment_ids(enrollment_ids: Sequence[str]) -> list[str]:
    names = list(enrollment_ids)
    if not all(isinstance(name, str) and name for name in names):
        raise GalleryError("enrollment ids must be non-empty strings")
    if len(set(names)) != len(names):
        twice = next(name for name, n in Counter(names).items() if n > 1)
        raise GalleryError(f"enrollment id {twice!r} appears more than once in the batch")
    return names


def _checked_vectors(vectors: np.ndarray[Any, Any], count: int) -> Vectors:
    """Only ``count`` finite, L2-normalised rows: inner product is cosine only for those."""
    array = np.asarray(vectors)
    if array.ndim != 2 or array.shape[0] != count or array.shape[1] < 1:
        raise GalleryError(
            f"expected {count} template vectors, got an array of shape {array.shape}"
        )
    data = np.ascontiguousarray(array, dtype=np.float32)
    if not np.isfinite(data).all():
        raise GalleryError("template vectors hold NaN or infinite values")
    norms = np.linalg.norm(data, axis=1)
    bad = np.flatnonzero(np.abs(norms - 1.0) > UNIT_TOLERANCE)
    if bad.size:
        raise GalleryError(
            f"{bad.size} template vectors are not unit-length (row {bad[0]} has norm "
            f"{norms[bad[0]]:.4f}); templates must be L2-normalised"
        )
    return data


def _fill_smallest_first(counts: Sequence[int], new: int) -> npt.NDArray[np.int32]:
    """The shard of each of ``new`` templates: water-fill the emptiest shards first.

    >>> _fill_smallest_first([3, 1, 1], 3).tolist()
    [1, 1, 2]
    """
    before = np.asarray(counts, dtype=np.int64)
    after = before.copy()
    remaining = new
    while remaining:
        low = after.min()
        at_low = np.flatnonzero(after == low)
        higher = after[after > low]
        room = (int(higher.min()) - low) * at_low.size if higher.size else remaining
        if room >= remaining:
            share, extra = divmod(remaining, at_low.size)
            after[at_low] += share
            after[at_low[:extra]] += 1
            remaining = 0
        else:
            after[at_low] = higher.min()
            remaining -= room
    return np.repeat(np.arange(len(before), dtype=np.int32), after - before)


def _verified_vectors(folder: Path, manifest: GalleryManifest) -> np.ndarray[Any, Any]:
    _verify_file(folder, VECTORS_FILE, manifest.files[VECTORS_FILE])
    return _open_vectors(folder, manifest)


def _write_vectors(
    path: Path, parts: Sequence[np.ndarray[Any, Any]], dtype: Any, *, zero: Ids | None = None
) -> None:
    """Concatenate ``parts`` into one .npy, a slice at a time, zeroing the ``zero`` rows."""
    rows = sum(len(part) for part in parts)
    out = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=(rows, parts[0].shape[1]))
    start = 0
    for part in parts:
        for at in range(0, len(part), COPY_ROWS):
            chunk = part[at : at + COPY_ROWS]
            out[start + at : start + at + len(chunk)] = chunk
        start += len(part)
    if zero is not None and len(zero):
        out[np.sort(zero)] = 0
    out.flush()
    del out


def _ids_rows(
    ids: Ids, names: Sequence[str], shards: npt.NDArray[np.int32], batch_id: str
) -> pa.Table:
    return pa.table(
        {
            "gallery_id": ids,
            "enrollment_id": pa.array(names, pa.string()),
            "shard": shards,
            "batch_id": pa.array([batch_id] * len(names), pa.string()),
        },
        schema=IDS_SCHEMA,
    )


def _ledger_rows(batch_id: str, first_id: int, count: int) -> pa.Table:
    return pa.table(
        {"batch_id": [batch_id], "first_id": [first_id], "count": [count]}, schema=LEDGER_SCHEMA
    )

"""Erasing templates from a gallery: tombstone at once, compact later, prune old versions.

An erasure takes effect at search time as soon as it is published: every engine drops
tombstoned ids. Compaction then removes the templates physically, and every older version
that still holds them; ``prune_versions`` reclaims the disk that older versions hold.

Example::

    erase(root, "E-0042")  # never returned by a search from now on
    compact(root)  # gone from the shards, vectors.npy, ids.parquet and older versions
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from dedup.errors import GalleryError
from dedup.gallery.layout import (
    COMPACTED_FILE,
    COMPACTED_SCHEMA,
    IDS_FILE,
    IDS_SCHEMA,
    LEDGER_FILE,
    TOMBSTONES_FILE,
    TOMBSTONES_SCHEMA,
    TRAINED_FILE,
    VECTORS_FILE,
    VERSIONS_DIR,
    GalleryManifest,
    parse_version_name,
)
from dedup.gallery.publish import Draft, next_version, remove_folder, writer_lock
from dedup.gallery.reader import (
    current_version,
    read_shard,
    read_table,
    verified_vectors,
    verify_file,
)
from dedup.gallery.writer import write_vectors


def erase(root: Path, enrollment_id: str) -> GalleryManifest:
    """Tombstone an enrollment's template: searches drop it at once, ``compact`` removes it.

    Erasing an already-erased enrollment changes nothing. Once compacted away, the gallery no
    longer knows the enrollment id at all, so it is then reported unknown.
    """
    root = Path(root)
    with writer_lock(root):
        folder, manifest = current_version(root)
        ids = read_table(folder, manifest, IDS_FILE, IDS_SCHEMA, verify=True)
        pending = read_table(folder, manifest, TOMBSTONES_FILE, TOMBSTONES_SCHEMA, verify=True)
        rows = ids.filter(pc.equal(ids["enrollment_id"], enrollment_id))
        if not rows.num_rows:
            raise GalleryError(f"enrollment {enrollment_id!r} is not in the gallery")
        erased = np.setdiff1d(rows["gallery_id"].to_numpy(), pending["gallery_id"].to_numpy())
        if not erased.size:
            return manifest
        draft = Draft(root, previous=folder, current_version=manifest.version)
        for name in (TRAINED_FILE, VECTORS_FILE, IDS_FILE, COMPACTED_FILE, LEDGER_FILE):
            draft.link(name, manifest.files[name])
        entries = [draft.link_shard(entry) for entry in manifest.shards]
        now = datetime.now(UTC)
        added = pa.table(
            {"gallery_id": erased, "erased_at": [now] * erased.size}, schema=TOMBSTONES_SCHEMA
        )
        draft.write_table(TOMBSTONES_FILE, pa.concat_tables([pending, added]))
        return draft.publish(next_version(manifest, draft, entries, manifest.size - erased.size, 0))


def compact(root: Path) -> GalleryManifest:
    """Remove tombstoned templates physically: from their shards, vectors.npy and ids.parquet.

    Gallery ids of the others do not change; the compacted ids are kept in compacted.parquet
    so they are never reused and stay reported dead. Older versions still hold the erased
    templates, so compaction then removes every version but the one it published.
    """
    root = Path(root)
    with writer_lock(root):
        folder, manifest = current_version(root)
        pending = read_table(folder, manifest, TOMBSTONES_FILE, TOMBSTONES_SCHEMA, verify=True)
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
    with writer_lock(Path(root)):
        return _prune_locked(Path(root), keep)


def _compact_locked(
    root: Path, folder: Path, manifest: GalleryManifest, pending: pa.Table
) -> GalleryManifest:
    ids = read_table(folder, manifest, IDS_FILE, IDS_SCHEMA, verify=True)
    erased = pending["gallery_id"].to_numpy().astype(np.int64)
    doomed = pc.is_in(ids["gallery_id"], value_set=pa.array(erased))
    doomed_rows = ids.filter(doomed)
    draft = Draft(root, previous=folder, current_version=manifest.version)
    draft.link(TRAINED_FILE, manifest.files[TRAINED_FILE])
    draft.link(LEDGER_FILE, manifest.files[LEDGER_FILE])
    entries = []
    for entry in manifest.shards:
        in_shard = doomed_rows.filter(pc.equal(doomed_rows["shard"], entry.id))
        if not in_shard.num_rows:
            entries.append(draft.link_shard(entry))
            continue
        verify_file(folder, entry.file, entry.sha256)
        index = read_shard(folder, manifest, entry, mmap=False)
        removed = index.remove_ids(in_shard["gallery_id"].to_numpy().astype(np.int64))
        if removed != in_shard.num_rows:
            raise GalleryError(f"shard {entry.file} held {removed} of {in_shard.num_rows} ids")
        entries.append(draft.write_shard(entry.id, index))
    old = verified_vectors(folder, manifest)
    draft.write(VECTORS_FILE, lambda path: write_vectors(path, [old], old.dtype, zero=erased))
    draft.write_table(IDS_FILE, ids.filter(pc.invert(doomed)))
    draft.write_table(TOMBSTONES_FILE, TOMBSTONES_SCHEMA.empty_table())
    compacted = read_table(folder, manifest, COMPACTED_FILE, COMPACTED_SCHEMA, verify=True)
    now = pa.array(
        [datetime.now(UTC)] * pending.num_rows, COMPACTED_SCHEMA.field("compacted_at").type
    )
    done = pending.append_column(COMPACTED_SCHEMA.field("compacted_at"), now)
    draft.write_table(COMPACTED_FILE, pa.concat_tables([compacted, done.cast(COMPACTED_SCHEMA)]))
    return draft.publish(next_version(manifest, draft, entries, manifest.size, 0))


def _prune_locked(root: Path, keep: int) -> list[str]:
    _, manifest = current_version(root)
    versions = root / VERSIONS_DIR
    published = sorted(
        (number, entry)
        for entry in versions.iterdir()
        if (number := parse_version_name(entry.name)) is not None and number <= manifest.version
    )
    doomed = [entry for _, entry in published[:-keep]]
    for entry in doomed:
        remove_folder(entry)
    return [entry.name for entry in doomed]

"""Erasing templates from a gallery: tombstone at once, compact later, prune old versions.

An erasure takes effect at search time as soon as it is published: every engine drops
tombstoned ids. Compaction then removes the templates physically: every segment holding one
is rewritten without it (its vector row zeroed, its ids row and codes gone), and every older
version, with the segments only it named, is deleted. Compaction also merges segments by the
tiered policy of ``dedup.gallery.segments.plan_merges``, so the count stays bounded.

Example::

    erase(root, "E-0042")  # never returned by a search from now on
    compact(root)  # gone from every segment and every older version
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, cast

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from dedup.errors import GalleryError
from dedup.gallery.layout import (
    COMPACTED_FILE,
    COMPACTED_SCHEMA,
    LEDGER_FILE,
    LEDGER_SCHEMA,
    TOMBSTONES_FILE,
    TOMBSTONES_SCHEMA,
    GalleryManifest,
)
from dedup.gallery.lookup import enrollments_among
from dedup.gallery.publish import Draft, next_version, prune_locked
from dedup.gallery.reader import (
    Ids,
    current_manifest,
    read_ids,
    read_version_table,
)
from dedup.gallery.segment_files import load_shard, open_vectors, read_trained, write_segment
from dedup.gallery.segments import SegmentEntry, plan_merges
from dedup.gallery.storage import GalleryRoot, GalleryStorage, storage_for


def erase(root: GalleryRoot, enrollment_id: str) -> GalleryManifest:
    """Tombstone an enrollment's template: searches drop it at once, ``compact`` removes it.

    Erasing an already-erased enrollment changes nothing. Once compacted away, the gallery no
    longer knows the enrollment id at all, so it is then reported unknown.
    """
    storage = storage_for(root)
    with storage.lock():
        prefix, manifest = current_manifest(storage)
        pending, compacted, ledger = _version_tables(storage, prefix, manifest)
        rows = enrollments_among(storage, manifest, [enrollment_id])
        if not rows.num_rows:
            raise GalleryError(f"enrollment {enrollment_id!r} is not in the gallery")
        erased = np.setdiff1d(rows["gallery_id"].to_numpy(), pending["gallery_id"].to_numpy())
        if not erased.size:
            return manifest
        draft = Draft(storage, current=manifest)
        now = datetime.now(UTC)
        added = pa.table(
            {"gallery_id": erased, "erased_at": [now] * erased.size}, schema=TOMBSTONES_SCHEMA
        )
        draft.write_table(TOMBSTONES_FILE, pa.concat_tables([pending, added]))
        draft.write_table(COMPACTED_FILE, compacted)
        draft.write_table(LEDGER_FILE, ledger)
        size = manifest.size - erased.size
        return draft.publish(next_version(manifest, draft, manifest.segments, size, 0))


def compact(root: GalleryRoot, *, full: bool = False) -> GalleryManifest:
    """Remove tombstoned templates physically and merge segments; keep only this version.

    Every segment holding a tombstoned id is rewritten without it, and runs of segments are
    merged by the tiered policy (``plan_merges``; ``full`` merges them all into one). Gallery
    ids of the others do not change; the compacted ids are kept in compacted.parquet so they
    are never reused and stay reported dead. Older versions still hold the erased templates,
    so compaction then removes every version but the one it published, and the segments that
    only they named.
    """
    storage = storage_for(root)
    with storage.lock():
        prefix, manifest = current_manifest(storage)
        pending, compacted, ledger = _version_tables(storage, prefix, manifest)
        erased = np.sort(pending["gallery_id"].to_numpy()).astype(np.int64)
        groups = _groups(manifest.segments, erased, full=full)
        if groups:
            manifest = _rewrite(storage, manifest, groups, erased, pending, compacted, ledger)
        prune_locked(storage, manifest, keep=1)
        return manifest


def prune_versions(root: GalleryRoot, *, keep: int = 2) -> list[str]:
    """Remove published versions older than the newest ``keep``; returns their names.

    Segments that no remaining version names are deleted with them. A reader that already
    opened a pruned version keeps working (its files stay open); one that reads ``CURRENT``
    at that very moment retries once in ``open_gallery``.
    """
    if keep < 1:
        raise GalleryError("keep at least the published version")
    storage = storage_for(root)
    with storage.lock():
        _, manifest = current_manifest(storage)
        return prune_locked(storage, manifest, keep)


def _version_tables(
    storage: GalleryStorage, prefix: str, manifest: GalleryManifest
) -> tuple[pa.Table, pa.Table, pa.Table]:
    """(tombstones, compacted, ledger) of a version, verified: a writer copies them."""
    return (
        read_version_table(storage, prefix, manifest, name, schema, verify=True)
        for name, schema in (
            (TOMBSTONES_FILE, TOMBSTONES_SCHEMA),
            (COMPACTED_FILE, COMPACTED_SCHEMA),
            (LEDGER_FILE, LEDGER_SCHEMA),
        )
    )  # type: ignore[return-value]


def _groups(segments: Sequence[SegmentEntry], erased: Ids, *, full: bool) -> list[range]:
    """Runs of adjacent segments to rewrite as one each: the merge plan, widened to cover
    every segment that holds a tombstoned id."""
    if full:
        planned = [range(len(segments))] if len(segments) > 1 else []
    else:
        planned = plan_merges([s.rows for s in segments])
    covered = {i for group in planned for i in group}
    for number, segment in enumerate(segments):
        inside = np.searchsorted(erased, [segment.first_id, segment.end_id])
        if inside[1] > inside[0] and number not in covered:
            planned.append(range(number, number + 1))
    return sorted(planned, key=lambda group: group.start)


def _rewrite(
    storage: GalleryStorage,
    manifest: GalleryManifest,
    groups: list[range],
    erased: Ids,
    pending: pa.Table,
    compacted: pa.Table,
    ledger: pa.Table,
) -> GalleryManifest:
    draft = Draft(storage, current=manifest)
    trained = read_trained(storage, manifest, verify=True)
    kept: list[SegmentEntry] = []
    at = 0
    for group in groups:
        kept.extend(manifest.segments[at : group.start])
        part = manifest.segments[group.start : group.stop]
        kept.append(_merged_segment(storage, manifest, trained, part, erased))
        at = group.stop
    kept.extend(manifest.segments[at:])
    draft.write_table(TOMBSTONES_FILE, TOMBSTONES_SCHEMA.empty_table())
    now = pa.array(
        [datetime.now(UTC)] * pending.num_rows, COMPACTED_SCHEMA.field("compacted_at").type
    )
    done = pending.append_column(COMPACTED_SCHEMA.field("compacted_at"), now)
    draft.write_table(COMPACTED_FILE, pa.concat_tables([compacted, done.cast(COMPACTED_SCHEMA)]))
    draft.write_table(LEDGER_FILE, ledger)
    return draft.publish(next_version(manifest, draft, tuple(kept), manifest.size, 0))


def _merged_segment(
    storage: GalleryStorage,
    manifest: GalleryManifest,
    trained: Any,
    segments: Sequence[SegmentEntry],
    erased: Ids,
) -> SegmentEntry:
    """One segment made of adjacent ``segments``, without the ``erased`` ids."""
    part = dataclasses.replace(manifest, segments=tuple(segments))
    first, end = segments[0].first_id, segments[-1].end_id
    doomed = erased[(erased >= first) & (erased < end)]
    ids = read_ids(storage, part, verify=True)
    gone = pc.is_in(ids["gallery_id"], value_set=pa.array(doomed, pa.int64()))
    doomed_rows = ids.filter(gone)
    indexes = {}
    for shard in range(manifest.shard_count):
        if not any(s.shard_counts[shard] for s in segments):
            continue
        index = load_shard(storage, part, trained, shard, mmap=False, verify=True)
        in_shard = doomed_rows.filter(pc.equal(doomed_rows["shard"], shard))
        if in_shard.num_rows:
            removed = index.remove_ids(in_shard["gallery_id"].to_numpy().astype(np.int64))
            if removed != in_shard.num_rows:
                raise GalleryError(
                    f"shard {shard} of segments {segments[0].name}.. held {removed} of "
                    f"{in_shard.num_rows} erased ids"
                )
        indexes[shard] = index
    return write_segment(
        storage,
        first_id=first,
        # One memory map per segment: the segments' own rows, whatever their first ids.
        parts=[
            cast(
                "np.ndarray[Any, Any]",  # one segment: its memory map itself
                open_vectors(storage, dataclasses.replace(manifest, segments=(s,)), verify=True),
            )
            for s in segments
        ],
        dtype=manifest.vector_dtype,
        ids=ids.filter(pc.invert(gone)).combine_chunks(),
        shards=indexes,
        shard_count=manifest.shard_count,
        zero=doomed,
    )

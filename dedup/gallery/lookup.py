"""Finding enrollments in a gallery version without reading every id it holds.

Each segment keeps the sorted 64-bit keys of its enrollment ids (``segments.SEGMENT_KEYS``):
a lookup binary-searches every segment's keys and reads (and verifies) only the ids rows of a
segment that holds one of the keys asked for, so an add's clash check and an erasure cost
O(names * segments * log N) page reads, whatever the gallery's size.
"""

from __future__ import annotations

from collections.abc import Sequence

import pyarrow as pa
import pyarrow.compute as pc

from dedup.gallery.layout import IDS_SCHEMA, GalleryManifest
from dedup.gallery.reader import Ids, live_rows, read_segment_ids
from dedup.gallery.segment_files import read_keys
from dedup.gallery.segments import enrollment_keys, holds_any, is_utf8
from dedup.gallery.storage import GalleryStorage


def enrollments_among(
    storage: GalleryStorage, manifest: GalleryManifest, names: Sequence[str]
) -> pa.Table:
    """The ids rows (tombstoned ones included) whose enrollment id is one of ``names``. Each
    segment's sorted keys are binary-searched first, and only a segment holding one of the
    keys of ``names`` has its ids rows read (verified), so a lookup costs
    O(len(names) * segments * log N) page reads, not a read of every id the gallery holds."""
    wanted = enrollment_keys(names)
    suspects = [s for s in manifest.segments if holds_any(read_keys(storage, s), wanted)]
    if not suspects:
        return IDS_SCHEMA.empty_table()
    rows = pa.concat_tables([read_segment_ids(storage, s, verify=True) for s in suspects])
    storable = pa.array([name for name in names if is_utf8(name)], pa.string())
    return rows.filter(pc.is_in(rows["enrollment_id"], value_set=storable))


def live_enrollments_among(
    storage: GalleryStorage, manifest: GalleryManifest, names: Sequence[str], pending: Ids
) -> pa.Table:
    """The live rows of ``enrollments_among``: what an add checks its batch against."""
    return live_rows(enrollments_among(storage, manifest, names), pending)

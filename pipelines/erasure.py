"""Erasing an enrollment from the lake and the gallery: the records' part of an erasure.

``LakeEraser`` is the ``dedup.adjudication.erasure.RecordEraser`` that ``dedup erase`` and
``dedup serve`` hand to the one erasure operation (``operations.erase``). In order, each step
idempotent, so a crash anywhere is finished by erasing again:

1. the gallery: the template is tombstoned (searches drop it at once);
2. identities: the links naming the enrollment go, bridge links (``erasure:<id>``) keep the
   enrollments it joined one identity, and an identity it founded takes the own id of its
   earliest remaining member (an ``identity_events`` row of kind ``renamed``);
3. rows: ``faces``, ``templates``, ``candidates`` (probe or candidate), ``rejects`` and
   ``outcome_events`` rows are deleted; the ``enrollments`` rows keep their key, the id,
   status ``erased`` and ``staged_at``, the ``outcomes`` row its id, batch, status ``erased``
   and the time, and one ``erased`` event is recorded;
4. history: every table is vacuumed with the retention overridden and its log cut at a new
   checkpoint (``DeltaRsTables.vacuum``, ``purge_history``), so no version keeps the rows;
5. work folders: every Parquet file under ``<lake>/_work`` naming the enrollment is rewritten
   without its rows (the stage's manifest and results, the match's candidates);
6. the gallery again: compaction removes the template physically and prunes every older
   version.

Every value is matched as Arrow data (MERGE against a table of ids, or compute filters),
never spliced into a predicate, so an id with quotes or any other byte erases only itself.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from dedup.adjudication.erasure import RecordErasure
from dedup.contracts.schemas import (
    ENROLLMENTS,
    IDENTITIES,
    IDENTITY_EVENTS,
    LINKS,
    OUTCOME_EVENTS,
    OUTCOMES,
    TABLES,
    OutcomeStatus,
)
from dedup.crash_points import crash_point
from dedup.gallery.erasure import compact
from dedup.gallery.erasure import erase as tombstone
from dedup.gallery.layout import VERSIONS_DIR
from dedup.gallery.reader import gallery_exists, live_ids
from dedup.gallery.storage import GalleryLocation, GalleryRoot, storage_for
from dedup.matching.identities import (
    Link,
    assign,
    bridge,
    erasure_cause,
    links_after_erasure,
    renamed_by_erasure,
)
from dedup.settings import Settings
from pipelines.lake.delta_rs import DeltaRsTables
from pipelines.lake.location import Lake
from pipelines.lake.readers import staging_order
from pipelines.lake.work_files import WorkFolder

ERASED = OutcomeStatus.ERASED.value
# Columns of a work file that name an enrollment.
ID_COLUMNS = ("enrollment_id", "probe_id", "candidate_id")


def naming(column: str, value: str) -> pc.Expression:
    """Rows whose ``column`` is ``value``, as a dataset filter: the column is cast first,
    since delta-rs writes strings as string_view in some files and plain in others, and the
    comparison has no kernel across the two."""
    return pc.field(column).cast(pa.string()) == value


def renamed_event_id(enrollment_id: str) -> str:
    return f"{erasure_cause(enrollment_id)}/renamed"


def erased_event_id(enrollment_id: str) -> str:
    return f"{erasure_cause(enrollment_id)}/outcome"


@dataclass(frozen=True)
class LakeEraser:
    """The lake at ``lake`` and the gallery at ``gallery`` (``from_settings``: the configured
    ones), erased from as the module says."""

    lake: str | Lake
    gallery: GalleryRoot

    @classmethod
    def from_settings(cls, settings: Settings) -> LakeEraser:
        return cls(Lake.of(settings), GalleryLocation.of(settings))

    @property
    def tables(self) -> DeltaRsTables:
        return DeltaRsTables(self.lake)

    def knows(self, enrollment_id: str) -> bool:
        wanted = naming("enrollment_id", enrollment_id)
        return any(self.tables.count(name, wanted) for name in ("enrollments", "faces"))

    def erase(self, enrollment_id: str) -> RecordErasure:
        x = enrollment_id
        now = dt.datetime.now(dt.UTC)
        removed: dict[str, int] = {"gallery templates tombstoned": self._tombstone(x)}
        crash_point("erasure.after_tombstone")
        renamed, identity_figures = self._identities(x, now)
        removed.update(identity_figures)
        removed.update(self._rows(x, renamed, now))
        crash_point("erasure.after_rows")
        reclaimed = self._history()
        crash_point("erasure.after_history")
        removed["work files rewritten"] = self._work_files(x)
        reclaimed["gallery versions pruned"] = self._compact()
        return RecordErasure(removed, reclaimed, renamed)

    # ------------------------------------------------------------ the gallery

    def _tombstone(self, x: str) -> int:
        if not gallery_exists(self.gallery):
            return 0
        live = live_ids(self.gallery)
        found = int(pc.sum(pc.equal(live["enrollment_id"], x)).as_py() or 0)
        if found:
            tombstone(self.gallery, x)
        return found

    def _compact(self) -> int:
        if not gallery_exists(self.gallery):
            return 0
        storage = storage_for(self.gallery)
        before = {n for n in storage.list(VERSIONS_DIR) if n.startswith("v")}
        compact(self.gallery)
        return len(before - set(storage.list(VERSIONS_DIR)))

    # ------------------------------------------------------------ identities and links

    def _identities(self, x: str, now: dt.datetime) -> tuple[str | None, dict[str, int]]:
        tables = self.tables
        order = [e for e in staging_order(self.lake) if e != x]
        rows = tables.read("links", ["link_id", "probe_id", "duplicate_of"])
        links = [] if rows is None else [Link(*r.values()) for r in rows.to_pylist()]
        bridges = bridge(links, x, order)
        tables.insert_new("links", _link_rows(bridges, now))
        listed = tables.read("identities", IDENTITIES.names)
        before = {} if listed is None else {r["enrollment_id"]: r for r in listed.to_pylist()}
        known = set(order)
        in_force = [
            link
            for link in links_after_erasure(links, x, order)
            if link.probe in known and link.duplicate_of in known
        ]
        after = assign(order, in_force)
        names = {e: r["identity_id"] for e, r in before.items()}
        renamed = renamed_by_erasure(names, after, x) if x in names else None
        moved = 0
        if renamed is not None:
            event = {
                "event_id": renamed_event_id(x), "kind": "renamed", "identity_id": renamed,
                "others": [x], "cause": erasure_cause(x), "at": now,
            }  # fmt: skip
            tables.insert_new("identity_events", pa.Table.from_pylist([event], IDENTITY_EVENTS))
            members = [
                {**r, "identity_id": renamed, "since": now}
                for e, r in before.items()
                if r["identity_id"] == x and e != x
            ]
            tables.upsert("identities", pa.Table.from_pylist(members, IDENTITIES))
            moved = len(members)
        else:
            renamed = _renamed_before(tables, x)
        figures = {
            "identities rows": tables.delete_rows("identities", "enrollment_id", [x]),
            "links removed": tables.delete_rows("links", "probe_id", [x])
            + tables.delete_rows("links", "duplicate_of", [x]),
            "bridge links made": len(bridges),
            "identity rows renamed": moved,
        }
        return renamed, figures

    # ------------------------------------------------------------ rows

    def _rows(self, x: str, renamed: str | None, now: dt.datetime) -> dict[str, int]:
        tables = self.tables
        mine = naming("enrollment_id", x)
        enrollments = tables.read("enrollments", ENROLLMENTS.names, mine)
        live = [] if enrollments is None else [
            r for r in enrollments.to_pylist() if r["status"] != ERASED
        ]  # fmt: skip
        batch = next((r["batch_id"] for r in live), None)
        figures = {
            "faces rows": tables.delete_rows("faces", "enrollment_id", [x]),
            "templates rows": tables.delete_rows("templates", "enrollment_id", [x]),
            "candidates rows": tables.delete_rows("candidates", "probe_id", [x])
            + tables.delete_rows("candidates", "candidate_id", [x]),
            "rejects rows": tables.delete_rows("rejects", "enrollment_id", [x]),
            "outcomes rows": self._outcomes(x, batch, renamed, now),
            "outcome events": self._outcome_events(x, now),
        }
        if live:
            kept = {"batch_id", "row_index", "enrollment_id", "staged_at"}
            erased = [
                {k: (v if k in kept else None) for k, v in r.items()} | {"status": ERASED}
                for r in live
            ]
            tables.upsert("enrollments", pa.Table.from_pylist(erased, ENROLLMENTS))
        figures["enrollments rows erased"] = len(live)
        return figures

    def _outcomes(self, x: str, batch: str | None, renamed: str | None, now: dt.datetime) -> int:
        """X's outcome becomes ``erased``; the others' that named X as their identity (or
        as the earliest of it) name the identity's new id."""
        tables = self.tables
        names_x = naming("enrollment_id", x) | naming("identity_id", x) | naming("duplicate_of", x)
        found = tables.read("outcomes", OUTCOMES.names, names_x)
        rows = [] if found is None else found.to_pylist()
        own = next((r for r in rows if r["enrollment_id"] == x), None)
        changed = []
        if (own is None and batch is not None) or (own is not None and own["status"] != ERASED):
            base = dict.fromkeys(OUTCOMES.names) | {
                "enrollment_id": x, "batch_id": batch if own is None else own["batch_id"],
                "status": ERASED, "changed_at": now,
            }  # fmt: skip
            changed.append(base)
        for row in rows:
            if row["enrollment_id"] == x:
                continue
            duplicate_of = row["duplicate_of"]
            if duplicate_of == x:  # the new earliest member is no one's duplicate of itself
                duplicate_of = None if row["enrollment_id"] == renamed else renamed
            identity = renamed if row["identity_id"] == x else row["identity_id"]
            changed.append(row | {"duplicate_of": duplicate_of, "identity_id": identity})
        if changed:
            tables.upsert("outcomes", pa.Table.from_pylist(changed, OUTCOMES))
        return int(any(r["enrollment_id"] == x for r in changed))

    def _outcome_events(self, x: str, now: dt.datetime) -> int:
        tables = self.tables
        events = tables.read("outcome_events", ["event_id"], naming("enrollment_id", x))
        ids = [] if events is None else events["event_id"].to_pylist()
        earlier = [e for e in ids if e != erased_event_id(x)]
        if earlier:
            tables.delete_rows("outcome_events", "enrollment_id", [x])
        if earlier or not ids:
            outcome = tables.read("outcomes", ["batch_id"], naming("enrollment_id", x))
            if outcome is not None and outcome.num_rows:
                event = dict.fromkeys(OUTCOME_EVENTS.names) | {
                    "event_id": erased_event_id(x), "enrollment_id": x, "status": ERASED,
                    "batch_id": outcome["batch_id"][0].as_py(), "changed_at": now,
                }  # fmt: skip
                tables.insert_new("outcome_events", pa.Table.from_pylist([event], OUTCOME_EVENTS))
        return len(earlier)

    # ------------------------------------------------------------ history and work files

    def _history(self) -> dict[str, int]:
        tables = self.tables
        vacuumed = purged = 0
        for name in TABLES:
            vacuumed += len(tables.vacuum(name))
            purged += tables.purge_history(name)
        return {"old data files deleted": vacuumed, "log files cut": purged}

    def _work_files(self, x: str) -> int:
        lake = self.lake if isinstance(self.lake, Lake) else Lake(self.lake)
        work = WorkFolder(lake, "_work")
        named = [n for n in work.files() if n.endswith(".parquet")]
        return sum(_rewrite_without(work, name, x) for name in named)


def _renamed_before(tables: DeltaRsTables, x: str) -> str | None:
    """The id a re-run finds recorded for X's identity (the earlier run renamed it)."""
    found = tables.read("identity_events", ["identity_id"], naming("event_id", renamed_event_id(x)))
    return None if found is None or not found.num_rows else str(found["identity_id"][0])


def _link_rows(links: Iterable[Link], now: dt.datetime) -> pa.Table:
    rows = [
        {
            "link_id": f"{link.decision}/{link.probe}",
            "probe_id": link.probe,
            "duplicate_of": link.duplicate_of,
            "cause": link.decision,
            "made_at": now,
        }
        for link in links
    ]
    return pa.Table.from_pylist(rows, LINKS)


def _rewrite_without(work: WorkFolder, name: str, x: str) -> int:
    """Rewrite one work file without the rows naming X (atomically); 1 if it held some."""
    folder, _, file = name.rpartition("/")
    if file.startswith("."):
        return 0
    table = work.read_parquet(name)
    columns = [c for c in ID_COLUMNS if c in table.column_names]
    if not columns:
        return 0
    hit: Any = None
    for column in columns:
        named = pc.fill_null(pc.equal(pc.cast(table[column], pa.string()), x), False)
        hit = named if hit is None else pc.or_(hit, named)
    if not pc.any(hit).as_py():
        return 0
    work.write_parquet(name, table.filter(pc.invert(hit)))
    # Spark's checksum of the file (a local lake's), now wrong: Spark would refuse the file.
    work.delete(f"{folder}/.{file}.crc" if folder else f".{file}.crc")
    return 1

"""The lake through delta-rs, for the jobs that run without Spark (embed, match, review feed)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa
import pyarrow.compute as pc

from dedup.contracts.schemas import NATURAL_KEYS, TABLES
from dedup.errors import LakeError
from pipelines.lake.location import Lake
from pipelines.lake.tables import key_match
from pipelines.lake.work_files import WorkFolder


def plain_strings(table: pa.Table) -> pa.Table:
    """delta-rs may hand back string_view columns; the jobs use plain strings."""
    return table.cast(
        pa.schema(
            pa.field(f.name, pa.string()) if pa.types.is_string_view(f.type) else f
            for f in table.schema
        )
    )


def _fields_of(where: pc.Expression, names: list[str]) -> list[str]:
    """The columns an expression names (by their names appearing in its text)."""
    text = str(where)
    return [name for name in names if name in text]


class DeltaRsTables:
    """Read and insert-only write the lake's Delta tables with delta-rs.

    ``lake`` is a root (a local folder) or a ``Lake``, which carries the object-store
    settings an ``s3://`` root needs (``Lake.of(settings)``).
    """

    def __init__(self, lake: str | Lake) -> None:
        self.where = lake if isinstance(lake, Lake) else Lake(lake)
        self.lake = self.where.root
        self.storage_options = self.where.storage_options()
        self.where.check_reachable()

    def _path(self, name: str) -> str:
        return self.where.table(name)

    def open(self, name: str) -> Any:
        """The Delta table, or None where it has never been written."""
        from deltalake import DeltaTable
        from deltalake.exceptions import TableNotFoundError

        try:
            return DeltaTable(self._path(name), storage_options=self.storage_options)
        except TableNotFoundError:
            return None
        except OSError as error:
            raise LakeError(
                f"table {name!r} could not be opened ({self.where.describe()}): {error}"
            ) from None

    def _write(self, name: str, rows: pa.Table, mode: Literal["append", "overwrite"]) -> None:
        from deltalake import write_deltalake

        if mode == "append":
            write_deltalake(
                self._path(name), rows, mode="append", storage_options=self.storage_options
            )
        else:
            write_deltalake(
                self._path(name), rows, mode="overwrite", storage_options=self.storage_options
            )

    def read(
        self, name: str, columns: list[str], where: pc.Expression | None = None
    ) -> pa.Table | None:
        """The columns of the rows matching ``where``; None where the table does not exist."""
        table = self.open(name)
        if table is None:
            return None
        dataset = table.to_pyarrow_dataset()
        try:
            return plain_strings(dataset.to_table(columns=columns, filter=where))
        except pa.ArrowNotImplementedError:
            # Files a delta-rs MERGE wrote hold string_view columns, whose statistics the
            # scanner cannot compare with a string filter: filter after reading instead.
            if where is None:
                raise
            wanted = list(dict.fromkeys([*columns, *_fields_of(where, dataset.schema.names)]))
            read = plain_strings(dataset.to_table(columns=wanted)).filter(where)
            return read.select(columns)

    def count(self, name: str, where: pc.Expression) -> int:
        table = self.open(name)
        if table is None:
            return 0
        dataset = table.to_pyarrow_dataset()
        try:
            return int(dataset.count_rows(filter=where))
        except pa.ArrowNotImplementedError:  # string_view files: see ``read``
            names = _fields_of(where, dataset.schema.names)
            return int(plain_strings(dataset.to_table(columns=names)).filter(where).num_rows)

    def replace(self, name: str, rows: pa.Table) -> None:
        """One commit making ``rows`` the whole table (its declared schema): for the tables
        that hold a latest state (``outcomes``, ``identities``, ``links``); the state before
        stays readable as the table's earlier Delta version until a vacuum."""
        declared = TABLES[name]
        self._write(name, rows.select(declared.names).cast(declared), "overwrite")

    def insert_new(self, name: str, rows: pa.Table) -> None:
        table = self.open(name)
        if table is None:
            self._write(name, TABLES[name].empty_table(), "append")
            table = self.open(name)
        if rows.num_rows == 0:  # the table exists now, and nothing is to be inserted
            return
        (
            table.merge(source=rows, predicate=key_match(name), source_alias="s", target_alias="t")
            .when_not_matched_insert_all()
            .execute()
        )

    # ------------------------------------------------------------ erasure (pipelines.erasure)

    def delete_rows(self, name: str, column: str, values: list[str]) -> int:
        """Delete every row whose ``column`` holds one of ``values``, in one commit; how many.

        The values are matched in Arrow (``is_in`` on the column), never spliced into a SQL
        predicate, so no id (quotes, backslashes, any byte) can change what is deleted. The
        table is rewritten whole (an overwrite commit): a MERGE would rewrite only the files
        concerned, but delta-rs writes the rows it copies as string_view, which the lake's
        readers cannot filter. The old files stay in the table's history until ``vacuum``.
        """
        wanted = pa.array(sorted(set(values)), pa.string())
        rows = self._current(name)
        if rows is None or not len(wanted):
            return 0
        hit = pc.fill_null(pc.is_in(rows[column], value_set=wanted), False)
        found = int(pc.sum(hit).as_py() or 0)
        if found:
            self._overwrite(name, rows.filter(pc.invert(hit)))
        return found

    def upsert(self, name: str, rows: pa.Table) -> None:
        """One commit writing ``rows`` over the rows of the same natural key (adding those the
        table lacks); values travel as Arrow data, never as SQL text. The table is rewritten
        whole, as ``delete_rows`` says why."""
        current = self._current(name)
        if current is None:
            self._write(name, TABLES[name].empty_table(), "append")
            current = self._current(name)
            assert current is not None
        if rows.num_rows == 0:
            return
        keys = NATURAL_KEYS[name]
        replaced = pc.is_in(_key_column(current, keys), value_set=_key_column(rows, keys))
        kept = current.filter(pc.invert(pc.fill_null(replaced, False)))
        self._overwrite(
            name, pa.concat_tables([kept, rows.select(kept.column_names).cast(kept.schema)])
        )

    def _current(self, name: str) -> pa.Table | None:
        table = self.open(name)
        if table is None:
            return None
        return plain_strings(table.to_pyarrow_dataset().to_table())

    def _overwrite(self, name: str, rows: pa.Table) -> None:
        self._write(name, rows, "overwrite")

    def vacuum(self, name: str) -> list[str]:
        """Delete, now, every data file no longer in the table's current version; their names.

        Delta keeps removed rows in old versions' files for time travel (7 days by default).
        An erasure cannot wait for that, so this overrides the retention, as delta-rs
        documents: ``retention_hours=0, enforce_retention_duration=False``. Not ``full``: a
        file another writer has written but not yet committed is not in the log either, and
        must not be deleted under it. A reader still scanning a version older than the
        erasure may then find a file gone: it fails and reads again.
        """
        table = self.open(name)
        if table is None:
            return []
        removed: list[str] = table.vacuum(
            retention_hours=0, enforce_retention_duration=False, dry_run=False
        )
        if not self.where.is_s3:  # no checksum files on an object store
            _drop_orphan_checksums(Path(self._path(name)))
        return removed

    def purge_history(self, name: str) -> int:
        """Cut the table's log at a new checkpoint; how many log files were deleted.

        Old commits describe files that ``vacuum`` has deleted, and their column statistics
        (the minimum and maximum of each column per file) can still name an erased row's
        values. The checkpoint holds the current version whole, so the commits before it are
        deleted, as Delta's own log clean-up does once they are older than its retention.
        """
        table = self.open(name)
        if table is None:
            return 0
        table.create_checkpoint()
        checkpoint = int(table.version())
        log = WorkFolder(self.where, f"{name}/_delta_log")
        deleted = 0
        for entry in log.files():
            version = _log_version(entry)
            if "/" not in entry and version is not None and version < checkpoint:
                log.delete(entry)
                deleted += 1
        if not self.where.is_s3:
            _drop_orphan_checksums(Path(log.location))
        return deleted


def _key_column(table: pa.Table, keys: tuple[str, ...]) -> pa.Array:
    """One text per row naming its natural key (the key's values as a JSON list)."""
    rows = table.select(list(keys)).to_pylist()
    return pa.array([json.dumps(list(r.values()), default=str) for r in rows], pa.string())


def _log_version(name: str) -> int | None:
    """The version a file of ``_delta_log`` belongs to (commit, checkpoint, checksum)."""
    head = name.lstrip(".").split(".", 1)[0]
    return int(head) if len(head) == 20 and head.isdigit() else None


def _drop_orphan_checksums(folder: Path) -> None:
    """Hadoop's local file system (Spark) writes ``.<file>.crc`` beside each file; delta-rs
    deletes the file and leaves the checksum. Remove those whose file is gone."""
    for crc in folder.glob(".*.crc"):
        if not (folder / crc.name[1 : -len(".crc")]).exists():
            crc.unlink()

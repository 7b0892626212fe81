"""The lake through delta-rs, for the jobs that run without Spark (embed, match, review feed)."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from dedup.contracts.schemas import TABLES
from pipelines.lake.tables import key_match, table_path


def plain_strings(table: pa.Table) -> pa.Table:
    """delta-rs may hand back string_view columns; the jobs use plain strings."""
    return table.cast(
        pa.schema(
            pa.field(f.name, pa.string()) if pa.types.is_string_view(f.type) else f
            for f in table.schema
        )
    )


class DeltaRsTables:
    """Read and insert-only write the lake's Delta tables with delta-rs."""

    def __init__(self, lake: str) -> None:
        self.lake = lake

    def open(self, name: str) -> Any:
        """The Delta table, or None where it has never been written."""
        from deltalake import DeltaTable
        from deltalake.exceptions import TableNotFoundError

        try:
            return DeltaTable(table_path(self.lake, name))
        except TableNotFoundError:
            return None

    def read(
        self, name: str, columns: list[str], where: pc.Expression | None = None
    ) -> pa.Table | None:
        """The columns of the rows matching ``where``; None where the table does not exist."""
        table = self.open(name)
        if table is None:
            return None
        return plain_strings(table.to_pyarrow_dataset().to_table(columns=columns, filter=where))

    def count(self, name: str, where: pc.Expression) -> int:
        table = self.open(name)
        return 0 if table is None else int(table.to_pyarrow_dataset().count_rows(filter=where))

    def replace(self, name: str, rows: pa.Table) -> None:
        """One commit making ``rows`` the whole table (its declared schema): for the tables
        that hold a latest state (``outcomes``, ``identities``, ``links``); the state before
        stays readable as the table's earlier Delta version until a vacuum."""
        from deltalake import write_deltalake

        declared = TABLES[name]
        rows = rows.select(declared.names).cast(declared)
        write_deltalake(table_path(self.lake, name), rows, mode="overwrite")

    def insert_new(self, name: str, rows: pa.Table) -> None:
        from deltalake import DeltaTable, write_deltalake

        path = table_path(self.lake, name)
        if self.open(name) is None:
            write_deltalake(path, TABLES[name].empty_table(), mode="append")
        if rows.num_rows == 0:  # the table exists now, and nothing is to be inserted
            return
        (
            DeltaTable(path)
            .merge(source=rows, predicate=key_match(name), source_alias="s", target_alias="t")
            .when_not_matched_insert_all()
            .execute()
        )

"""The lake through delta-rs, for jobs that run without Spark (embed, match).

Every write is an insert-only MERGE on the table's natural key (``NATURAL_KEYS``): a re-run
inserts nothing it inserted before, and never overwrites a row.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from dedup.contracts.schemas import NATURAL_KEYS, TABLES


def table_path(lake: str, name: str) -> str:
    return f"{lake.rstrip('/')}/{name}"


def open_table(lake: str, name: str) -> Any:
    """The Delta table, or None where it has never been written."""
    from deltalake import DeltaTable
    from deltalake.exceptions import TableNotFoundError

    try:
        return DeltaTable(table_path(lake, name))
    except TableNotFoundError:
        return None


def plain_strings(table: pa.Table) -> pa.Table:
    """delta-rs may hand back string_view columns; the jobs use plain strings."""
    return table.cast(
        pa.schema(
            pa.field(f.name, pa.string()) if pa.types.is_string_view(f.type) else f
            for f in table.schema
        )
    )


def insert_new(lake: str, name: str, rows: pa.Table) -> None:
    """One Delta commit inserting the rows whose natural key the table lacks (creating the
    table, with its declared schema, if needed)."""
    from deltalake import DeltaTable, write_deltalake

    path = table_path(lake, name)
    if open_table(lake, name) is None:
        write_deltalake(path, TABLES[name].empty_table(), mode="append")
    predicate = " AND ".join(f"t.{key} = s.{key}" for key in NATURAL_KEYS[name])
    (
        DeltaTable(path)
        .merge(source=rows, predicate=predicate, source_alias="s", target_alias="t")
        .when_not_matched_insert_all()
        .execute()
    )

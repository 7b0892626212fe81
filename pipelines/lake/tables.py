"""The lake's one write rule, whichever engine writes: insert-only on the natural key.

Every table is declared once in Arrow (``dedup.contracts.schemas.TABLES``) and created from
that declaration on its first write. A write inserts only the rows whose natural key
(``NATURAL_KEYS``) the table lacks, in one Delta commit: re-running a batch, or finishing one
after a crash, adds exactly the missing rows, and never overwrites a row already written.

Two engines implement it: ``SparkTables`` (the stage job) and ``DeltaRsTables`` (the jobs
that run without a JVM). The same tests run over both (``tests/integration/test_lake_tables.py``).
"""

from __future__ import annotations

from typing import Protocol, TypeVar

from dedup.contracts.schemas import NATURAL_KEYS

Rows = TypeVar("Rows", contravariant=True)


def table_path(lake: str, name: str) -> str:
    """Where table ``name`` lives under the lake root (a folder or an object-store prefix)."""
    return f"{lake.rstrip('/')}/{name}"


def key_match(name: str, target: str = "t", source: str = "s") -> str:
    """The MERGE condition matching a source row to a target row of table ``name`` by key."""
    return " AND ".join(f"{target}.{k} = {source}.{k}" for k in NATURAL_KEYS[name])


class InsertOnlyTables(Protocol[Rows]):
    """The lake's tables as one engine writes them."""

    lake: str

    def insert_new(self, name: str, rows: Rows) -> None:
        """One commit inserting the rows whose natural key table ``name`` lacks (creating
        the table with its declared schema first, where it does not exist)."""
        ...

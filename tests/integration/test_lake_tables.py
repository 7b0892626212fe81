"""The lake's write rule, held once over both writers (Spark and delta-rs): a table is created
from its declared schema on its first write, and every write inserts only the rows whose
natural key is absent, never overwriting one already written."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from dedup.contracts.schemas import REJECTS
from pipelines.lake.delta_rs import DeltaRsTables

pytestmark = [pytest.mark.spark, pytest.mark.slow]

AT = dt.datetime(2026, 12, 1, 3, 0, tzinfo=dt.UTC)
Write = Callable[[str, pa.Table], None]


def rejects(rows: list[tuple[str, int, str]]) -> pa.Table:
    """Rows of ``rejects``: (batch id, row index, detail)."""
    return pa.Table.from_pylist(
        [
            {
                "batch_id": batch,
                "row_index": index,
                "enrollment_id": f"E{index}",
                "reason_code": "invalid_row",
                "detail": detail,
                "rejected_at": AT,
            }
            for batch, index, detail in rows
        ],
        schema=REJECTS,
    )


@pytest.fixture(params=["spark", "delta-rs"])
def write(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, Write]:
    """(lake, a function writing Arrow rows into one of its tables) for each writer."""
    lake = str(tmp_path / "lake")
    if request.param == "delta-rs":
        return lake, DeltaRsTables(lake).insert_new
    from pipelines.lake.spark_delta import SparkTables
    from pipelines.spark.arrow_types import spark_schema

    spark: Any = request.getfixturevalue("spark")
    tables = SparkTables(spark, lake)

    def through_spark(name: str, rows: pa.Table) -> None:
        frame = spark.createDataFrame(rows.to_pylist(), schema=spark_schema(rows.schema))
        tables.insert_new(name, frame)

    return lake, through_spark


def stored(lake: str) -> list[tuple[str, int, str]]:
    table = DeltaRsTables(lake).read("rejects", ["batch_id", "row_index", "detail"])
    assert table is not None
    return sorted((r["batch_id"], r["row_index"], r["detail"]) for r in table.to_pylist())


def test_the_first_write_creates_the_table_with_its_declared_schema(
    write: tuple[str, Write],
) -> None:
    lake, insert = write
    assert DeltaRsTables(lake).open("rejects") is None
    insert("rejects", rejects([("b1", 0, "first")]))
    schema = DeltaRsTables(lake).open("rejects").schema().to_arrow()
    assert [f.name for f in schema] == REJECTS.names
    assert stored(lake) == [("b1", 0, "first")]


def test_a_repeated_write_adds_nothing_and_overwrites_nothing(write: tuple[str, Write]) -> None:
    lake, insert = write
    insert("rejects", rejects([("b1", 0, "first"), ("b1", 1, "first")]))
    insert("rejects", rejects([("b1", 0, "second"), ("b1", 1, "second")]))
    assert stored(lake) == [("b1", 0, "first"), ("b1", 1, "first")]


def test_an_overlapping_write_inserts_exactly_the_missing_keys(write: tuple[str, Write]) -> None:
    lake, insert = write
    insert("rejects", rejects([("b1", 0, "first")]))
    insert("rejects", rejects([("b1", 0, "again"), ("b1", 1, "new"), ("b2", 0, "other batch")]))
    assert stored(lake) == [("b1", 0, "first"), ("b1", 1, "new"), ("b2", 0, "other batch")]

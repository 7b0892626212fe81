"""Helpers shared by the Spark tests: staging a batch and snapshotting the lake's tables (with
Spark, or with delta-rs)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from dedup.contracts.schemas import NATURAL_KEYS, STAGE_TABLES, TABLES
from dedup.settings import Settings

if TYPE_CHECKING:
    from pipelines.lake.location import Lake

# Wall-clock columns: the only ones allowed to differ between two runs of the same batch.
RUN_TIME_COLUMNS = {
    "staged_at",
    "rejected_at",
    "matched_at",
    "created_at",
    "changed_at",
    "since",
    "at",
    "made_at",
    "started_at",
    "finished_at",
}


def stage(spark: Any, settings: Settings, batch_id: str, manifest: Path) -> Any:
    from pipelines.lake.batch_run import BatchRun
    from pipelines.spark.stage import run_stage

    return run_stage(BatchRun(batch_id, settings), manifest, spark)


def _by_key(name: str, rows: list[dict[str, Any]], keep_times: bool) -> list[dict[str, Any]]:
    """A table's rows sorted by natural key; run times dropped unless asked."""
    columns = [f.name for f in TABLES[name] if keep_times or f.name not in RUN_TIME_COLUMNS]
    keys = NATURAL_KEYS[name]
    return sorted(
        ({c: row[c] for c in columns} for row in rows), key=lambda r: tuple(r[k] for k in keys)
    )


def table_rows(spark: Any, settings: Settings, name: str, *, keep_times: bool = False) -> list[Any]:
    """Every row of a table as a dict, sorted by natural key; run times dropped unless asked."""
    from pipelines.lake.spark_delta import SparkTables

    rows = [
        r.asDict(recursive=True) for r in SparkTables(spark, settings.lake).read(name).collect()
    ]
    return _by_key(name, rows, keep_times)


def snapshot(spark: Any, settings: Settings, *, keep_times: bool = False) -> dict[str, list[Any]]:
    """The stage job's tables (the ones Spark writes), read with Spark."""
    return {name: table_rows(spark, settings, name, keep_times=keep_times) for name in STAGE_TABLES}


def delta_snapshot(
    lake: str | Lake, *, keep_times: bool = False
) -> dict[str, list[dict[str, Any]]]:
    """``snapshot`` read with delta-rs, without Spark: a table never written is empty."""
    from pipelines.lake.delta_rs import DeltaRsTables

    tables = DeltaRsTables(lake)
    found = {name: tables.open(name) for name in TABLES}
    return {
        name: []
        if table is None
        else _by_key(name, table.to_pyarrow_table().to_pylist(), keep_times)
        for name, table in found.items()
    }

"""Delta tables of the lake: created from the declared schemas, written by idempotent MERGE.

Every write inserts only rows whose natural key (``NATURAL_KEYS``) is absent. Re-running a
batch, or finishing one after a crash, therefore adds exactly the missing rows: nothing is
duplicated, and nothing already written is overwritten.
"""

from __future__ import annotations

from delta.tables import DeltaTable
from pyspark.sql import DataFrame, SparkSession

from dedup.contracts.schemas import NATURAL_KEYS, TABLES
from dedup.errors import LakeError
from pipelines.deltars import table_path
from pipelines.spark.arrow_types import spark_schema


def ensure_table(spark: SparkSession, lake: str, name: str) -> DeltaTable:
    """The Delta table ``name``, created empty with its declared schema if it does not exist."""
    path = table_path(lake, name)
    declared = spark_schema(TABLES[name])
    table = DeltaTable.createIfNotExists(spark).location(path).addColumns(declared).execute()
    actual = table.toDF().schema
    if [(f.name, f.dataType) for f in actual] != [(f.name, f.dataType) for f in declared]:
        raise LakeError(
            f"Delta table {path} does not have the declared schema of {name!r}: "
            f"found {actual.simpleString()}, expected {declared.simpleString()}"
        )
    return table


def read_table(spark: SparkSession, lake: str, name: str) -> DataFrame:
    return ensure_table(spark, lake, name).toDF()


def insert_new(spark: SparkSession, lake: str, name: str, rows: DataFrame) -> None:
    """MERGE ``rows`` into table ``name``, inserting only keys the table does not hold yet."""
    table = ensure_table(spark, lake, name)
    keys = NATURAL_KEYS[name]
    condition = " AND ".join(f"t.{k} = s.{k}" for k in keys)
    columns = [f.name for f in TABLES[name]]
    (
        table.alias("t")
        .merge(rows.select(*columns).alias("s"), condition)
        .whenNotMatchedInsertAll()
        .execute()
    )

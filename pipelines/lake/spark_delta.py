"""The lake through Spark, for the stage job."""

from __future__ import annotations

from delta.tables import DeltaTable
from pyspark.sql import DataFrame, SparkSession

from dedup.contracts.schemas import TABLES
from dedup.errors import LakeError
from pipelines.lake.location import Lake
from pipelines.lake.tables import key_match
from pipelines.spark.arrow_types import spark_schema


class SparkTables:
    """Read and insert-only write the lake's Delta tables with a Spark session."""

    def __init__(self, spark: SparkSession, lake: str | Lake) -> None:
        self.spark = spark
        self.where = lake if isinstance(lake, Lake) else Lake(lake)
        self.lake = self.where.root

    def ensure(self, name: str) -> DeltaTable:
        """Table ``name``, created empty with its declared schema if it does not exist; a
        table whose schema differs from the declaration is refused."""
        path = self.where.spark_table(name)
        declared = spark_schema(TABLES[name])
        table = (
            DeltaTable.createIfNotExists(self.spark).location(path).addColumns(declared).execute()
        )
        actual = table.toDF().schema
        if [(f.name, f.dataType) for f in actual] != [(f.name, f.dataType) for f in declared]:
            raise LakeError(
                f"Delta table {path} does not have the declared schema of {name!r}: "
                f"found {actual.simpleString()}, expected {declared.simpleString()}"
            )
        return table

    def read(self, name: str) -> DataFrame:
        return self.ensure(name).toDF()

    def insert_new(self, name: str, rows: DataFrame) -> None:
        columns = [f.name for f in TABLES[name]]
        (
            self.ensure(name)
            .alias("t")
            .merge(rows.select(*columns).alias("s"), key_match(name))
            .whenNotMatchedInsertAll()
            .execute()
        )

"""The Spark session every job uses: Delta Lake enabled, UTC, sized by the settings."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from pyspark.sql import SparkSession

from dedup.settings import Settings
from pipelines.spark.jars import delta_jars

LOG_CONFIG = Path(__file__).with_name("log4j2.properties")


def spark_session(
    settings: Settings, app_name: str = "dedup", log_file: Path | None = None
) -> SparkSession:
    """Get or create the session. Local by default (``local[*]``), a cluster by ``spark.master``.

    Spark's own logs go to ``log_file`` (nowhere without one); only its errors reach the
    console. The logging of a JVM is fixed when it starts, so a second session of the same
    process keeps the first one's file.
    """
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
    java_options = (
        f"-Dlog4j2.configurationFile={LOG_CONFIG.as_uri()} "
        f"-Ddedup.spark.log={log_file or os.devnull}"
    )
    # Python workers must run the interpreter that has dedup installed.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    if settings.spark.master.startswith("local"):
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    jars = ",".join(str(p) for p in delta_jars(settings.spark))
    spark = settings.spark
    builder = (
        SparkSession.builder.master(spark.master)
        .appName(app_name)
        .config("spark.jars", jars)
        .config("spark.driver.extraJavaOptions", java_options)
        .config("spark.sql.extensions", "io.delta.sql.DeltaSparkSessionExtension")
        .config(
            "spark.sql.catalog.spark_catalog", "org.apache.spark.sql.delta.catalog.DeltaCatalog"
        )
        .config("spark.sql.session.timeZone", "UTC")
        # Timestamps as INT64 microseconds, never INT96: delta-rs and Arrow read INT96 as
        # nanoseconds, which hold only the years 1677 to 2262, and then refuse the whole table.
        # Dates and times are written as they are (proleptic Gregorian, as Arrow reads them).
        .config("spark.sql.parquet.outputTimestampType", "TIMESTAMP_MICROS")
        .config("spark.sql.parquet.datetimeRebaseModeInWrite", "CORRECTED")
        .config("spark.sql.parquet.datetimeRebaseModeInRead", "CORRECTED")
        .config("spark.sql.parquet.int96RebaseModeInRead", "CORRECTED")
        .config("spark.sql.shuffle.partitions", str(spark.shuffle_partitions))
        .config("spark.driver.memory", spark.driver_memory)
        # Spark makes its warehouse folder where it is started; keep it in the lake's work area
        # instead of wherever the operator ran the command (a batch folder, say).
        .config("spark.sql.warehouse.dir", f"{settings.lake.rstrip('/')}/_work/spark-warehouse")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.execution.arrow.maxRecordsPerBatch", str(spark.photos_per_arrow_batch))
        .config("spark.databricks.delta.snapshotPartitions", "2")
    )
    for key, value in spark.extra_conf.items():
        builder = builder.config(key, value)
    return builder.getOrCreate()

"""The Spark session every job uses: Delta Lake enabled, UTC, sized by the settings; with
Spark's s3a file system where the lake is on S3 (``configure_s3a``)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from pyspark.sql import SparkSession

from dedup.errors import DependencyError, LakeError
from dedup.settings import Settings
from pipelines.lake.location import S3A_LOG_STORE, Lake, is_s3, spark_uri
from pipelines.spark.jars import delta_jars, uses_s3a

WAREHOUSE = "_work/spark-warehouse"
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
        f"-Ddedup.spark.log={log_file or os.devnull} {settings.spark.java_options}"
    ).strip()
    # Python workers must run the interpreter that has dedup installed.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    if settings.spark.master.startswith("local"):
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    jars = ",".join(str(p) for p in delta_jars(settings.spark, s3a=uses_s3a(settings)))
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
        .config("spark.sql.warehouse.dir", spark_uri(Lake.of(settings).join(WAREHOUSE)))
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.execution.arrow.maxRecordsPerBatch", str(spark.photos_per_arrow_batch))
        .config("spark.databricks.delta.snapshotPartitions", "2")
        # Delta's own default for s3a, said here: one Spark driver writes a table at a time
        # (pipelines.lake.location says why that holds and what production may use instead).
        .config("spark.delta.logStore.s3a.impl", S3A_LOG_STORE)
    )
    if is_s3(settings.lake):  # for a new context; configure_s3a also sets a running one
        for key, value in s3a_conf(settings).items():
            builder = builder.config(f"spark.hadoop.{key}", value)
    for key, value in spark.extra_conf.items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    configure_s3a(session, settings)
    return session


def s3a_conf(settings: Settings) -> dict[str, str]:
    """Hadoop's s3a options from the ``s3`` settings. Credentials come from the standard AWS
    chain (environment variables, system properties, web identity, profile, container or
    instance role), never from a setting."""
    s3 = settings.s3
    conf = {
        "fs.s3a.impl": "org.apache.hadoop.fs.s3a.S3AFileSystem",
        "fs.s3a.aws.credentials.provider": "com.amazonaws.auth.DefaultAWSCredentialsProviderChain",
        "fs.s3a.endpoint.region": s3.region,
        "fs.s3a.path.style.access": str(s3.path_style).lower(),
        "fs.s3a.connection.ssl.enabled": str(not s3.allows_http).lower(),
        # A wrong endpoint fails in seconds, not after the SDK's minutes of retries.
        "fs.s3a.attempts.maximum": "3",
        "fs.s3a.retry.limit": "3",
        "fs.s3a.connection.establish.timeout": "5000",
    }
    if s3.endpoint is not None:
        conf["fs.s3a.endpoint"] = s3.endpoint
    return conf


def configure_s3a(spark: SparkSession, settings: Settings) -> None:
    """Point the session's s3a file system at the lake's store (an s3:// lake only).

    Set on the running context's Hadoop configuration, so a session made earlier (with the
    s3a jars) serves an s3 lake too. Hadoop caches one file system per bucket, made with the
    options of its first use: a process uses one store per bucket.
    """
    if not is_s3(settings.lake):
        return
    if "hadoop-aws-" not in spark.sparkContext.getConf().get("spark.jars", ""):
        raise DependencyError(
            f"the lake {settings.lake} is on S3 but this Spark session was started without "
            "the s3a jars (hadoop-aws): set spark.s3a_jars to true before the session starts"
        )
    hadoop = spark.sparkContext._jsc.hadoopConfiguration()
    for key, value in s3a_conf(settings).items():
        hadoop.set(key, value)
    _check_s3a(spark, hadoop, Lake.of(settings))


def _check_s3a(spark: SparkSession, hadoop: Any, lake: Lake) -> None:
    """Reach the lake through s3a once, so that a store the JVM cannot reach (no credentials
    in its environment, a wrong endpoint) is one line naming the settings, not a stack."""
    from py4j.protocol import Py4JJavaError

    jvm = spark._jvm
    assert jvm is not None  # a running session has its JVM
    root = jvm.org.apache.hadoop.fs.Path(spark_uri(lake.root))
    try:
        root.getFileSystem(hadoop).exists(root)
    except Py4JJavaError as error:
        cause = str(error.java_exception.toString()).splitlines()[0]
        raise LakeError(
            f"Spark cannot reach the lake through s3a ({lake.describe()}; credentials come "
            f"from the AWS chain of the Spark driver's environment): {cause}"
        ) from None

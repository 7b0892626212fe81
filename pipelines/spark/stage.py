"""The stage job: a batch manifest and its photos into the Delta tables enrollments, faces, rejects.

Steps, each re-runnable:

1. read the manifest on the driver into ``_work/stage/<batch>/manifest.parquet`` (the text as
   written, with row positions), beside the settings the run used and the time of the batch's
   first run (``first_run``), which fixes the window ``captured_at`` must fall in for every
   re-run of the batch;
2. validate every row's fields (``mapInArrow``), then the batch-level checks: an id on several
   rows, an id staged by an earlier batch;
3. stage every surviving photo on the executors (decode, one face, chip, quality), with dlib's
   weights loaded once per Python worker;
4. write all verdicts to ``_work/stage/<batch>/results`` (named after the batch: a retry
   overwrites it), then MERGE them into faces, rejects and enrollments, inserting only keys
   not yet present. A crash between any two steps is repaired by running the batch again.
"""

from __future__ import annotations

import datetime as dt
import functools
import time
from dataclasses import dataclass, field
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from rich.console import RenderableType
from rich.table import Table
from rich.text import Text

from dedup.contracts.reasons import RejectReason
from dedup.contracts.schemas import STATUS_REJECTED, STATUS_STAGED, OutcomeStatus
from dedup.crash_points import crash_point
from dedup.intake.manifest_reader import read_manifest
from dedup.intake.manifest_rules import CaptureWindow
from dedup.intake.partition_steps import PHOTO_RESULT, VALIDATED, stage_photos, validate_rows
from dedup.observability.job_metrics import job_metrics
from dedup.settings import Settings
from pipelines.job_report import Figures, JobReport
from pipelines.lake.batch_run import BatchRun
from pipelines.lake.location import Lake
from pipelines.lake.spark_delta import SparkTables
from pipelines.lake.work_files import WorkFolder
from pipelines.spark.arrow_types import spark_schema
from pipelines.spark.session import configure_s3a


@dataclass(frozen=True, kw_only=True)
class StageReport(JobReport):
    rows: int
    staged: int
    rejected_by_reason: dict[str, int] = field(default_factory=dict)
    photos_processed: int = 0

    @property
    def rejected(self) -> int:
        return sum(self.rejected_by_reason.values())

    def summary(self) -> list[RenderableType]:
        table = Table(title=f"batch {self.batch_id}: {self.rows} rows in {self.seconds:.1f} s")
        table.add_column("outcome")
        table.add_column("rows", justify="right")
        table.add_row(Text("staged", style="green"), str(self.staged))
        for reason, count in self.rejected_by_reason.items():
            table.add_row(Text.assemble(("rejected", "red"), f": {reason}"), str(count))
        return [table]

    def figures(self) -> Figures:
        """Rows in: the manifest's; out: those staged; each reject reason's count as
        ``rejected.<CODE>``."""
        by_reason: Figures = {f"rejected.{r}": n for r, n in self.rejected_by_reason.items()}
        return {
            **self.timing(self.rows, self.staged),
            "rows": self.rows,
            "staged": self.staged,
            "rejected": self.rejected,
            "photos_processed": self.photos_processed,
            **by_reason,
        }


def first_run(work: WorkFolder) -> dt.datetime:
    """When this batch was first staged: recorded by the first run, read by every re-run."""
    marker = "first_run"
    if not work.exists(marker):
        now = dt.datetime.now(dt.UTC).isoformat()
        work.write_bytes(marker, now.encode("ascii"))
    return dt.datetime.fromisoformat(work.read_text(marker).strip())


def _claimed_elsewhere(enrollments: DataFrame, faces: DataFrame, batch_id: str) -> DataFrame:
    """Ids another batch has staged, or has begun to stage (faces are written first, so a
    batch that crashed before its enrollments still holds its ids until it is re-run), and
    ids erased on request, in any batch, this one included: an erased person's photo is
    never read, staged or searched again, whether the batch is re-run or the id re-sent."""
    others = F.col("batch_id") != batch_id
    erased = enrollments.where(F.col("status") == OutcomeStatus.ERASED.value)
    staged = enrollments.where((F.col("status") == STATUS_STAGED) & others)
    return (
        staged.select("enrollment_id", "batch_id", F.lit(False).alias("erased"))
        .unionByName(erased.select("enrollment_id", "batch_id", F.lit(True).alias("erased")))
        .unionByName(
            faces.where(others).select("enrollment_id", "batch_id", F.lit(False).alias("erased"))
        )
        .groupBy("enrollment_id")
        .agg(F.min("batch_id").alias("earlier_batch"), F.max("erased").alias("was_erased"))
    )


def _with_batch_reasons(validated: DataFrame, claimed: DataFrame) -> DataFrame:
    """Add the checks that need the whole batch or the lake, in reason-code order."""
    valid_id = F.col("id_valid")
    repeats = F.count(F.lit(1)).over(Window.partitionBy("enrollment_id"))
    earlier = claimed
    flagged = validated.withColumn("repeats", F.when(valid_id, repeats).otherwise(F.lit(1))).join(
        earlier, on="enrollment_id", how="left"
    )
    pending = F.col("reason_code").isNull()
    duplicate = pending & (F.col("repeats") > 1)
    already = pending & ~duplicate & F.col("earlier_batch").isNotNull()
    return flagged.select(
        *[c for c in VALIDATED.names if c not in ("reason_code", "detail", "id_valid")],
        F.when(duplicate, F.lit(RejectReason.DUPLICATE_IN_BATCH.value))
        .when(already, F.lit(RejectReason.ALREADY_ENROLLED.value))
        .otherwise(F.col("reason_code"))
        .alias("reason_code"),
        F.when(
            duplicate,
            F.concat(
                F.lit("enrollment_id is on "),
                F.col("repeats").cast("string"),
                F.lit(" rows of this batch"),
            ),
        )
        .when(already & F.col("was_erased"), F.lit("enrollment_id was erased on request"))
        .when(
            already, F.concat(F.lit("enrollment_id was staged by batch "), F.col("earlier_batch"))
        )
        .otherwise(F.col("detail"))
        .alias("detail"),
    )


PHOTOS_PER_PARTITION = 64


def _photo_partitions(spark: SparkSession, rows: int) -> int:
    """Several partitions per core, so a slow photo does not hold up a whole core's share, and
    at most ``PHOTOS_PER_PARTITION`` photos each, so a retried task redoes little work."""
    return max(spark.sparkContext.defaultParallelism * 4, -(-rows // PHOTOS_PER_PARTITION))


def stage_results(
    spark: SparkSession,
    batch_id: str,
    manifest_parquet: str,
    batch_dir: Path,
    settings: Settings,
    rows: int,
    window: CaptureWindow,
) -> DataFrame:
    """Every manifest row with its verdict and, for staged rows, its face columns."""
    raw = spark.read.parquet(manifest_parquet)
    validated = raw.mapInArrow(
        functools.partial(validate_rows, window=window), spark_schema(VALIDATED)
    )
    tables = SparkTables(spark, Lake.of(settings))
    claimed = _claimed_elsewhere(tables.read("enrollments"), tables.read("faces"), batch_id)
    checked = _with_batch_reasons(validated, claimed)
    survivors = checked.where(F.col("reason_code").isNull())
    photos = survivors.repartition(_photo_partitions(spark, rows), "row_index").mapInArrow(
        functools.partial(stage_photos, batch_dir=batch_dir, settings=settings),
        spark_schema(PHOTO_RESULT),
    )
    face_columns = [
        c for c in PHOTO_RESULT.names if c not in ("row_index", "reason_code", "detail")
    ]
    joined = checked.join(
        photos.withColumnRenamed("reason_code", "photo_reason").withColumnRenamed(
            "detail", "photo_detail"
        ),
        on="row_index",
        how="left",
    )
    reason = F.coalesce(F.col("reason_code"), F.col("photo_reason"))
    return joined.select(
        F.lit(batch_id).alias("batch_id"),
        *[c for c in checked.columns if c not in ("reason_code", "detail")],
        F.when(reason.isNull(), F.lit(STATUS_STAGED))
        .otherwise(F.lit(STATUS_REJECTED))
        .alias("status"),
        reason.alias("reason_code"),
        F.coalesce(F.col("detail"), F.col("photo_detail")).alias("detail"),
        *face_columns,
    )


def run_stage(run: BatchRun, manifest: Path, spark: SparkSession) -> StageReport:
    """Stage one batch into the lake. Safe to run again for the same batch at any time."""
    with job_metrics(run.settings.metrics, "stage", run.batch_id) as metrics:
        report = metrics.done(_stage(run, manifest, spark))
    return report


def _stage(run: BatchRun, manifest: Path, spark: SparkSession) -> StageReport:
    started = time.perf_counter()
    batch_id, settings = run.batch_id, run.settings
    manifest = manifest.resolve()
    raw = read_manifest(manifest)
    configure_s3a(spark, settings)
    work = run.begin("stage")
    work.write_parquet("manifest.parquet", raw)
    window = CaptureWindow.for_batch(settings.manifest, first_run(work))
    crash_point("stage.after_manifest")

    staged_at = dt.datetime.now(dt.UTC)
    results_path = work.spark_path("results")
    stage_results(
        spark,
        batch_id,
        work.spark_path("manifest.parquet"),
        manifest.parent,
        settings,
        raw.num_rows,
        window,
    ).write.mode("overwrite").parquet(results_path)
    crash_point("stage.after_results")

    results = spark.read.parquet(results_path).withColumn(
        "staged_at", F.lit(staged_at).cast("timestamp")
    )
    staged = results.where(F.col("status") == STATUS_STAGED)
    tables = SparkTables(spark, Lake.of(settings))
    tables.insert_new("faces", staged)
    crash_point("stage.after_faces")
    rejected = results.where(F.col("status") == STATUS_REJECTED).withColumn(
        "rejected_at", F.col("staged_at")
    )
    tables.insert_new("rejects", rejected)
    crash_point("stage.after_rejects")
    tables.insert_new("enrollments", results)
    crash_point("stage.after_enrollments")

    counts = {
        (row["status"], row["reason_code"]): int(row["count"])
        for row in results.groupBy("status", "reason_code").count().collect()
    }
    rejected_by_reason = {
        str(reason): n for (status, reason), n in counts.items() if status == STATUS_REJECTED
    }
    before_photos = sum(n for r, n in rejected_by_reason.items() if r in _BEFORE_PHOTOS)
    return StageReport(
        batch_id=batch_id,
        rows=raw.num_rows,
        staged=counts.get((STATUS_STAGED, None), 0),
        rejected_by_reason=dict(sorted(rejected_by_reason.items())),
        photos_processed=raw.num_rows - before_photos,
        seconds=time.perf_counter() - started,
    )


_BEFORE_PHOTOS = {
    RejectReason.INVALID_ROW.value,
    RejectReason.CONSENT_MISSING.value,
    RejectReason.DUPLICATE_IN_BATCH.value,
    RejectReason.ALREADY_ENROLLED.value,
}

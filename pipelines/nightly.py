"""The order of a night, in one place: stage, embed, match, enqueue.

Each step is one job that can be run on its own (``dedup stage``, ``dedup embed``, ...) and
again at any time: it finds what an earlier run wrote and adds only what is missing. So is
the night: after a crash anywhere, running it again finishes it, with the same tables, the
same gallery and the same review queue as a night that never stopped.

The night prints nothing itself. Whoever runs it (the command line, a test) passes a
``NightWatcher`` that shows each step while it runs and each report once it is done.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from pipelines.job_report import JobReport
from pipelines.lake.batch_run import BatchRun
from pipelines.match import MatchReport, run_match
from pipelines.ray.embed import EmbedReport, run_embed
from pipelines.review_feed import EnqueueReport, enqueue_report
from pipelines.spark.stage import StageReport


@dataclass(frozen=True)
class Night:
    """What a night needs besides its batch: where the manifest and the gallery are."""

    manifest: Path
    gallery: Path
    # IVF-PQ on one Ray actor per shard; False searches in-process.
    ray: bool = True


@dataclass(frozen=True)
class NightReport:
    stage: StageReport
    embed: EmbedReport
    match: MatchReport
    enqueue: EnqueueReport


class NightWatcher(Protocol):
    def running(self, step: str, batch_id: str) -> contextlib.AbstractContextManager[None]:
        """Shown while a step runs (the stage job shows Spark's own progress)."""
        ...

    def done(self, report: JobReport) -> None:
        """Called with each step's report as soon as the step has finished."""
        ...


class Unwatched:
    """A watcher that shows nothing."""

    @contextlib.contextmanager
    def running(self, step: str, batch_id: str) -> Iterator[None]:
        yield

    def done(self, report: JobReport) -> None:
        return None


def stage_batch(run: BatchRun, manifest: Path) -> StageReport:
    """The stage job on a Spark session of the run's settings, with Spark's task progress."""
    from pipelines.spark.progress import spark_progress
    from pipelines.spark.session import spark_session
    from pipelines.spark.stage import run_stage

    spark = spark_session(
        run.settings,
        app_name=f"dedup-stage-{run.batch_id}",
        log_file=run.work("stage") / "spark.log",
    )
    with spark_progress(spark, f"staging {run.batch_id}"):
        return run_stage(run, manifest, spark)


def run_night(run: BatchRun, night: Night, watcher: NightWatcher | None = None) -> NightReport:
    """Run every step of the night for one batch, in order; stop at the first that fails."""
    watch = watcher or Unwatched()
    manifest = night.manifest.resolve()
    stage = stage_batch(run, manifest)
    watch.done(stage)
    with watch.running("embed", run.batch_id):
        embed = run_embed(run)
    watch.done(embed)
    with watch.running("match", run.batch_id):
        match = run_match(run, night.gallery, ray=night.ray)
    watch.done(match)
    with watch.running("enqueue", run.batch_id):
        # The manifest's folder holds the batch's photos, which adjudicators see.
        enqueue = enqueue_report(run, manifest.parent)
    watch.done(enqueue)
    return NightReport(stage=stage, embed=embed, match=match, enqueue=enqueue)

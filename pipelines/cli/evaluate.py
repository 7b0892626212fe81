"""``dedup evaluate``: open-set 1:N metrics and demographic differentials of a labelled
evaluation set (``dedup.evaluation.report``), and ``dedup evaluate-synth`` to make one."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from dedup.errors import EvaluationError
from pipelines.cli.output import console

evaluate_app = typer.Typer()


def _sizes(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError as exc:
        raise EvaluationError(
            f"--gallery-sizes must be integers separated by commas: {text!r}"
        ) from exc
    if not sizes or min(sizes) < 1:
        raise EvaluationError(f"--gallery-sizes must be positive integers: {text!r}")
    return sizes


@evaluate_app.command("evaluate")
def evaluate(
    templates: Annotated[Path, typer.Option("--templates", help="Parquet: enrollment_id, vector.")],
    labels: Annotated[
        Path, typer.Option("--labels", help="Parquet: enrollment_id, subject_id, group columns.")
    ],
    out: Annotated[Path, typer.Option("--out", help="Folder for report.json and report.html.")],
    gallery_sizes: Annotated[str, typer.Option("--gallery-sizes")] = "1000,10000,100000",
    rank: Annotated[int, typer.Option("--rank", help="Candidate-list length.")] = 1,
    bootstrap: Annotated[int, typer.Option("--bootstrap", help="Subject replicates.")] = 200,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    fmr_factor: Annotated[
        float, typer.Option("--fmr-factor", help="Flag a group's FMR above this x the best's.")
    ] = 2.0,
) -> None:
    """FNIR at FPIR, DET and CMC curves with bootstrap bands, growth with N, and per-group
    FMR / FNMR (docs/evaluation.md says how to read them)."""
    from dedup.evaluation.report import EvaluationOptions, write_evaluation

    if rank < 1 or bootstrap < 1 or fmr_factor <= 1.0:
        raise EvaluationError("--rank and --bootstrap must be at least 1, --fmr-factor above 1")
    options = EvaluationOptions(_sizes(gallery_sizes), rank, 0.5, bootstrap, seed, fmr_factor)
    with console.status("searching and bootstrapping"):
        written = write_evaluation(templates, labels, out, options)
    for line in summary(written.report, written.json, written.html):
        # Column names come from the labels file: printed as text, never as rich markup.
        console.print(line, highlight=False)


def summary(r: dict[str, Any], report: Path, page: Path) -> list[str]:
    """The few lines the console shows: the searches, the three operating points, each group
    column's FMR ratio, the flags and the two files."""
    c = r["counts"]
    lines = [
        f"{c['mated_searches']} mated and {c['nonmated_searches']} non-mated searches against "
        f"a gallery of {c['gallery']}; rank 1 {r['rank1']:.4f}"
    ]
    for p in r["fnir_at_fpir"]:
        t = "–" if p["threshold"] is None else f"{p['threshold']:.4f}"
        lines.append(
            f"FPIR {p['fpir']}: threshold {t}, FNIR {p['fnir']:.4f} "
            f"[{p['fnir_ci'][0]:.4f}, {p['fnir_ci'][1]:.4f}]"
            + (" (few errors)" if p["few_errors"] else "")
        )
    for column, d in r["differentials"].items():
        ratio = d["fmr_max_over_geomean"]
        lines.append(
            f"{column}: FMR max/geomean {'–' if ratio is None else f'{ratio:.2f}'} at threshold "
            f"{r['group_threshold']['threshold']:.4f}, {len(d['flagged'])} groups flagged"
        )
    lines.append(f"{len(r['flags'])} flags; report: {report}; page: {page}")
    return lines


@evaluate_app.command("evaluate-synth")
def evaluate_synth(
    out: Annotated[Path, typer.Option("--out", help="Folder for templates/labels.parquet.")],
    subjects: Annotated[int, typer.Option("--subjects")] = 3000,
    captures: Annotated[int, typer.Option("--captures")] = 2,
    seed: Annotated[int, typer.Option("--seed")] = 0,
) -> None:
    """A labelled synthetic set with a planted FMR differential (group C)."""
    from dedup.evaluation.synthetic_groups import write_labelled_set

    synth = write_labelled_set(out, subjects, captures, seed=seed)
    console.print(
        f"{subjects * captures} templates of {subjects} subjects in groups "
        f"{', '.join(f'{g} (w {w:g})' for g, w in synth.groups.items())} in {out}"
    )

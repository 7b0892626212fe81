"""``dedup evaluate`` end to end: an evaluation set in, ``report.json`` and ``report.html`` out.

The order: read and check the set (``labelled``); split it by subject (``open_set.split``);
search every probe against nested galleries in one pass (``search``, vectors only); the DET
curve, operating points with Clopper-Pearson intervals, CMC, growth; the subject bootstrap's
bands; then, at the threshold for FPIR 0.003, the differentials of every group column.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dedup.atomic_files import write_atomically
from dedup.evaluation import open_set
from dedup.evaluation.bands import bootstrap_bands
from dedup.evaluation.differentials import column_differentials, score_pairs
from dedup.evaluation.intervals import MIN_ERRORS, clopper_pearson
from dedup.evaluation.labelled import EvaluationSet, read_evaluation_set
from dedup.evaluation.search import search

FPIR_TARGETS = (0.001, 0.003, 0.01)
GROUP_FPIR = 0.003  # the operating point the group rates and growth are taken at


@dataclass(frozen=True)
class EvaluationOptions:
    gallery_sizes: tuple[int, ...] = (1_000, 10_000, 100_000)
    rank: int = 1  # candidate-list length of identification at a threshold
    held_out: float = 0.5  # share of subjects giving non-mated searches
    bootstrap: int = 200
    seed: int = 0
    fmr_factor: float = 2.0
    max_rank: int = 20
    notes: list[str] = field(default_factory=list)


def _finite(value: float) -> float | None:
    return None if not math.isfinite(value) else value


def evaluate(data: EvaluationSet, options: EvaluationOptions) -> dict[str, Any]:
    """The report's content as plain JSON values."""
    flags: list[str] = []
    parts = open_set.split(data.subjects, options.held_out, options.seed)
    full = len(parts.gallery)
    sizes = sorted({n for n in options.gallery_sizes if 0 < n < full} | {full})
    if any(n > full for n in options.gallery_sizes):
        flags.append(f"gallery sizes above {full} (the set's gallery) were left out")
    probes = np.r_[parts.mated, parts.nonmated]
    mates = open_set.mates_of(parts, len(probes))
    result = search(data.vectors[probes], data.vectors[parts.gallery], mates, sizes)
    whole = len(sizes) - 1
    nonmated = np.r_[np.zeros(len(parts.mated), bool), np.ones(len(parts.nonmated), bool)]
    top = result.top_nonmate[whole, nonmated]
    rank = result.mate_rank[whole, ~nonmated]
    returned = open_set.returned_scores(result.mate_score[~nonmated], rank, options.rank)
    points = []
    for target in FPIR_TARGETS:
        p = open_set.operating_point(target, top, returned)
        supported = min(p.false_positives, p.misses)
        if supported < MIN_ERRORS:
            flags.append(
                f"FPIR {target}: {p.false_positives} false positives and {p.misses} misses; "
                f"fewer than {MIN_ERRORS} errors support a rate"
            )
        points.append(
            {
                "fpir": target,
                "threshold": _finite(p.threshold),
                "fpir_observed": p.fpir,
                "fpir_ci": list(clopper_pearson(p.false_positives, len(top))),
                "fnir": p.fnir,
                "fnir_ci": list(clopper_pearson(p.misses, len(returned))),
                "false_positives": p.false_positives,
                "misses": p.misses,
                "few_errors": supported < MIN_ERRORS,
            }
        )
    bands = bootstrap_bands(
        top,
        data.subjects[parts.nonmated],
        returned,
        rank,
        data.subjects[parts.mated],
        options.bootstrap,
        options.seed,
        options.max_rank,
    )
    growth = open_set.growth(
        tuple(sizes),
        result.top_nonmate,
        result.mate_rank,
        result.mate_score,
        nonmated,
        GROUP_FPIR,
        options.rank,
    )
    group_point = open_set.operating_point(GROUP_FPIR, top, returned)
    group_threshold = _finite(group_point.threshold)
    groups: dict[str, list[dict[str, Any]]] = {}
    differentials: dict[str, dict[str, Any]] = {}
    if data.groups and group_threshold is not None:
        pairs = score_pairs(data.vectors, data.subjects, group_threshold)
        for column, labels in data.groups.items():
            d = column_differentials(
                column,
                labels,
                pairs,
                group_threshold,
                options.fmr_factor,
                options.bootstrap,
                options.seed,
            )
            groups[column] = [
                asdict(g)
                | {"few_errors": g.false_matches < MIN_ERRORS or g.false_non_matches < MIN_ERRORS}
                for g in d.groups
            ]
            differentials[column] = {
                "fmr_max_over_geomean": d.fmr_max_over_geomean,
                "fnmr_max_over_geomean": d.fnmr_max_over_geomean,
                "cross_fmr": {"groups": [g.group for g in d.groups], "fmr": d.cross_fmr},
                "flagged": d.flagged,
                "factor": d.factor,
            }
            flags += [
                f"{column}={g!r}: FMR more than {d.factor:g}x the best group's" for g in d.flagged
            ]
    cmc = open_set.cmc(rank, options.max_rank)
    return {
        "seed": options.seed,
        "rank": options.rank,
        "counts": {
            "enrollments": len(data.enrollment_ids),
            "subjects": len(data.subject_ids),
            "gallery": full,
            "mated_searches": len(parts.mated),
            "nonmated_searches": len(parts.nonmated),
        },
        "fnir_at_fpir": points,
        "det": open_set.det_curve(top, returned),
        "det_band": {"fpir": bands.fpir, "fnir_low": bands.fnir_low, "fnir_high": bands.fnir_high},
        "rank1": float(cmc[0]),
        "cmc": {
            "rank": list(range(1, options.max_rank + 1)),
            "rate": cmc.tolist(),
            "low": bands.cmc_low,
            "high": bands.cmc_high,
        },
        "growth": {"fpir_target": GROUP_FPIR, "rows": [asdict(r) for r in growth]},
        "group_threshold": {"fpir": GROUP_FPIR, "threshold": group_threshold},
        "groups": groups,
        "differentials": differentials,
        "bootstrap": {"replicates": bands.replicates, "seed": bands.seed, "unit": "subject"},
        "flags": flags + options.notes,
    }


@dataclass(frozen=True)
class EvaluationWritten:
    report: dict[str, Any]
    json: Path
    html: Path


def write_evaluation(
    templates: Path, labels: Path, out: Path, options: EvaluationOptions
) -> EvaluationWritten:
    """Evaluate the set and write ``out/report.json`` and ``out/report.html`` atomically."""
    from dedup.evaluation.page import render_evaluation_page

    report = evaluate(read_evaluation_set(templates, labels), options)
    out.mkdir(parents=True, exist_ok=True)
    text = json.dumps(_plain(report), indent=2, allow_nan=False)
    write_atomically(out / "report.json", lambda p: p.write_text(text, encoding="utf-8"))
    page = render_evaluation_page(json.loads(text))
    write_atomically(out / "report.html", lambda p: p.write_text(page, encoding="utf-8"))
    return EvaluationWritten(report, out / "report.json", out / "report.html")


def _plain(value: Any) -> Any:
    """JSON values: numpy scalars as Python ones, tuples as lists, NaN and infinities as null."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value

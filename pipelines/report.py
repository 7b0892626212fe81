"""The batch report on the lake: read a batch's rows, write ``reports/<batch>/report.json``
and ``report.html`` under the lake (atomically; a re-run replaces them).

Reads (delta-rs): the batch's ``enrollments`` verdicts, ``batch_runs`` (every night's, for
the steps and the predicted false candidates across nights), ``candidates`` of those nights,
``outcomes`` (absent until decisions are first applied: the report says "not applied yet"),
and catch-trial accuracy from the review database where it exists. A batch whose match step
is not in ``batch_runs`` yet (a night run step by step) takes its threshold and prediction
from what its match job left in ``_work/match/<batch>/search.json``. The figures themselves
are computed in ``dedup.reporting``.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from dedup.atomic_files import write_bytes_atomically
from dedup.contracts.schemas import CandidateSource
from dedup.errors import DedupError, LakeError
from dedup.observability.job_metrics import job_metrics, observed_registry, publish
from dedup.observability.retention import prune_published
from dedup.reporting import REPORT_HTML, REPORT_JSON, report_folder, reports_root
from dedup.reporting.batch_report import (
    BatchReport,
    CatchTrials,
    Figure,
    ReportInputs,
    ReviewHabits,
    StepRun,
    build_report,
    decided_scores,
)
from dedup.reporting.nights import Candidate, Night, Outcome, published_nights
from dedup.reporting.page import render_page
from dedup.reporting.plots import decided_histogram, nights_plot, score_histogram
from dedup.settings import Settings
from pipelines.lake.batch_run import BatchRun
from pipelines.lake.delta_rs import DeltaRsTables
from pipelines.lake.location import Lake
from pipelines.match import JOB as SEARCH_JOB
from pipelines.match import SEARCH_FILE
from pipelines.steps import STEPS

LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReportPaths:
    json: Path
    html: Path
    report: BatchReport


def _figures(text: str | None) -> dict[str, Figure]:
    try:
        loaded = json.loads(text or "{}")
    except json.JSONDecodeError:
        return {}
    return dict(loaded) if isinstance(loaded, dict) else {}


def _batch_runs(tables: DeltaRsTables) -> list[dict[str, Any]]:
    rows = tables.read("batch_runs", ["batch_id", "step", "started_at", "finished_at", "figures"])
    return [] if rows is None else rows.to_pylist()


def _candidates(
    tables: DeltaRsTables, batches: list[str], model: str
) -> dict[str, list[Candidate]]:
    wanted = pc.field("batch_id").isin(pa.array(batches, pa.string())) & (
        pc.field("model_id") == model
    )
    rows = tables.read(
        "candidates", ["batch_id", "probe_id", "candidate_id", "score", "source"], wanted
    )
    out: dict[str, list[Candidate]] = {batch: [] for batch in batches}
    for r in [] if rows is None else rows.to_pylist():
        out[r["batch_id"]].append(
            Candidate(r["probe_id"], r["candidate_id"], float(r["score"]), r["source"])
        )
    return out


def _outcomes(tables: DeltaRsTables) -> dict[str, Outcome] | None:
    rows = tables.read(
        "outcomes", ["enrollment_id", "batch_id", "status", "identity_id", "duplicate_of"]
    )
    if rows is None:
        return None
    return {r["enrollment_id"]: Outcome(**r) for r in rows.to_pylist()}


def _review_database_exists(settings: Settings) -> bool:
    """A configured database always counts; the default SQLite file only where it is."""
    if settings.adjudication.database_url is not None:
        return True
    return Path(settings.adjudication_database_url().removeprefix("sqlite:///")).is_file()


def review_figures(settings: Settings) -> tuple[CatchTrials | None, ReviewHabits | None]:
    """All adjudicators' catch-trial accuracy and review habits together (no one's name);
    None without a review database (reading a report does not create one)."""
    if not _review_database_exists(settings):
        return None, None
    from dedup.adjudication import operations
    from dedup.adjudication.context import opened

    with opened(settings) as context:
        rows = operations.accuracy(context)
        habits = operations.review_habits(context)
    trials = CatchTrials(
        adjudicators=len(rows),
        trials=sum(r.trials for r in rows),
        correct=sum(r.correct for r in rows),
        changed_after_scores=sum(r.changed_after_scores for r in rows),
    )
    bias, times = habits.overall_influence, habits.overall_times
    return trials, ReviewHabits(
        blind=bias.blind,
        changed=bias.changed,
        towards=bias.towards,
        away=bias.away,
        timed=times.judgements,
        median_seconds=times.median_seconds,
        p90_seconds=times.p90_seconds,
    )


def report_inputs(settings: Settings, batch_id: str) -> ReportInputs:
    """The batch's rows as the report needs them; refuses a batch the lake does not know."""
    run = BatchRun(batch_id, settings)
    tables = DeltaRsTables(Lake.of(settings))
    enrollments = tables.read(
        "enrollments", ["status", "reason_code"], pc.field("batch_id") == batch_id
    )
    verdicts = Counter(
        r["reason_code"] for r in ([] if enrollments is None else enrollments.to_pylist())
    )
    runs = _batch_runs(tables)
    steps = [
        StepRun(r["step"], r["started_at"], r["finished_at"], _figures(r["figures"]))
        for r in runs
        if r["batch_id"] == batch_id
    ]
    if not verdicts and not steps:
        raise LakeError(f"batch {batch_id!r} is not in the lake: it has never been staged")
    matched = sorted((r for r in runs if r["step"] == "match"), key=lambda r: r["finished_at"])
    match_figures = {r["batch_id"]: _figures(r["figures"]) for r in matched}
    matched_at = {r["batch_id"]: r["finished_at"] for r in matched}
    left = run.work("match")
    if batch_id not in match_figures and left.exists(SEARCH_FILE):
        match_figures[batch_id] = _figures(left.read_text(SEARCH_FILE))
    trials, habits = review_figures(settings)
    return ReportInputs(
        batch_id=batch_id,
        verdicts=dict(verdicts),
        steps=steps,
        candidates=_candidates(tables, sorted({batch_id, *match_figures}), settings.model),
        outcomes=_outcomes(tables),
        catch_trials=trials,
        habits=habits,
        match_figures=match_figures,
        matched_at=matched_at,
    )


def render(inputs: ReportInputs, now: dt.datetime) -> tuple[BatchReport, str]:
    """The report and its page (plots embedded)."""
    report = build_report(inputs, now)
    rows = inputs.candidates.get(inputs.batch_id, [])
    duplicate, not_duplicate = decided_scores(rows, inputs.outcomes or {})
    plots = {
        "scores": score_histogram(
            [r.score for r in rows if r.source == CandidateSource.GALLERY],
            [r.score for r in rows if r.source == CandidateSource.BATCH],
            report.threshold,
        ),
        "decided": decided_histogram(duplicate, not_duplicate, report.threshold),
        "nights": nights_plot(report.nights, report.cumulative),
    }
    return report, render_page(report, plots)


def write_report(settings: Settings, batch_id: str, now: dt.datetime | None = None) -> ReportPaths:
    """Write the batch's report under ``<lake>/reports/<batch>/``; its paths and figures."""
    now = now or dt.datetime.now(dt.UTC)
    with job_metrics(settings.metrics, "report", batch_id) as metrics:
        folder = report_folder(reports_root(settings), batch_id)
        inputs = report_inputs(settings, batch_id)
        report, page = render(inputs, now)
        document = json.dumps(report.to_json(), indent=2, sort_keys=True)
        json_path = write_bytes_atomically(folder / REPORT_JSON, document.encode("utf-8"))
        html_path = write_bytes_atomically(folder / REPORT_HTML, page.encode("utf-8"))
        days = settings.metrics.retention_days
        publish_observed(
            settings, published_nights(report.nights, inputs.matched_at, now, days, batch_id)
        )
        prune_quietly(settings, now)
        metrics.record({"rows_in": report.rows, "rows_out": 2})
    return ReportPaths(json_path, html_path, report)


def publish_observed(settings: Settings, nights: list[Night]) -> None:
    """Each night's observed false candidates, grouped under the report job and that night's
    batch: decisions on an earlier night's cases arrive on later nights, so every report
    brings the figure of every decided night matched within ``metrics.retention_days`` up
    to date (older nights' groups are pruned, ``prune_quietly``). A monitoring outage is
    logged, not fatal, as for the jobs' own figures."""
    for night in nights:
        if night.observed_false is None or night.undecided is None:
            continue  # decisions never applied
        registry = observed_registry(night.observed_false, night.undecided)
        try:
            publish(registry, settings.metrics, "report", night.batch_id)
        except DedupError as error:
            LOG.warning("observed false candidates of %s not published: %s", night.batch_id, error)
            return


# Every job whose figures job_metrics or the match job publishes under {job, batch}.
PUBLISHED_JOBS = frozenset({*STEPS, "nightly", SEARCH_JOB})


def prune_quietly(settings: Settings, now: dt.datetime) -> None:
    """Remove the published groups of batches past ``metrics.retention_days``
    (``dedup.observability.retention``); a monitoring outage is logged, not fatal."""
    try:
        pruned = prune_published(settings.metrics, PUBLISHED_JOBS, now.timestamp())
    except DedupError as error:
        LOG.warning("old batches' metrics not pruned: %s", error)
        return
    if pruned.groups or pruned.files:
        LOG.info(pruned.sentence())

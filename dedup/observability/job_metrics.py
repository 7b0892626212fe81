"""What a batch job reports to Prometheus, and how it gets there.

Batch jobs do not live long enough to be scraped, so a job builds its metrics in a registry of
its own and, at its end (failed or not), publishes it:

- to a Prometheus Pushgateway (``metrics.pushgateway``), grouped by job and batch, so that a
  re-run of a batch replaces its figures instead of adding a second series;
- and/or as a text file for node_exporter's textfile collector (``metrics.textfile_dir``),
  written atomically as ``<job>-<batch>.prom``.

With neither set, nothing is published. Only figures go out: counts, rates, scores. No
template, image or enrollment id is ever a label or a value.

Every job (stage, embed, match, enqueue, apply, nightly) runs inside ``job_metrics``::

    with job_metrics(settings.metrics, "embed", batch_id) as metrics:
        report = metrics.done(embed(...))

A push replaces the whole group it is pushed to, so each run pushes two groups:

- ``{job, batch}``: the run's duration, rows in and out, its figures and whether it failed,
  pushed at its end whatever happened (a re-run of the batch replaces them);
- ``{job}``: ``dedup_job_last_success_timestamp_seconds``, pushed only when the run
  succeeded: a failed run never touches it, so "no success for a day" is one alert.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, TypeVar

from prometheus_client import CollectorRegistry, Gauge, generate_latest, push_to_gateway

from dedup.atomic_files import write_bytes_atomically
from dedup.errors import DedupError
from dedup.settings import MetricsSettings


@dataclass(frozen=True)
class SearchFigures:
    """One batch's search, as the metrics see it (the audit fields are None for exact)."""

    engine: str
    probes: int
    gallery_size: int
    candidates: int
    threshold: float
    expected_false: float | None
    seconds: float
    audit_sampled: int | None = None
    audit_exact_candidates: int | None = None
    audit_found: int | None = None
    audit_floor: float | None = None
    audit_band_floor: float | None = None
    audit_band_pairs: int | None = None
    audit_band_found: int | None = None
    # How the batch was searched again after a failed audit ("exact", "nprobe N"), or None.
    fallback: str | None = None


def search_registry(figures: SearchFigures) -> CollectorRegistry:
    """The gallery search metrics of one batch, in a registry of their own."""
    registry = CollectorRegistry()

    def gauge(name: str, text: str, value: float, labels: dict[str, str] | None = None) -> None:
        metric = Gauge(name, text, list(labels or {}), registry=registry)
        (metric.labels(**labels) if labels else metric).set(value)

    gauge(
        "dedup_search_info",
        "The engine the cost model chose for the batch (value 1)",
        1,
        {"engine": figures.engine},
    )
    gauge("dedup_search_probes", "Probes searched", figures.probes)
    gauge(
        "dedup_search_gallery_size", "Live templates in the gallery searched", figures.gallery_size
    )
    gauge("dedup_search_candidates", "Candidate rows at the review threshold", figures.candidates)
    gauge("dedup_search_review_threshold", "Review threshold (cosine)", figures.threshold)
    gauge("dedup_search_seconds", "Wall time of the search", figures.seconds)
    if figures.expected_false is not None:
        gauge(
            "dedup_search_expected_false_candidates",
            "False candidates predicted from the fitted impostor tail",
            figures.expected_false,
        )
    if figures.audit_exact_candidates is not None:
        found = figures.audit_found or 0
        exact = figures.audit_exact_candidates
        gauge(
            "dedup_search_audit_probes", "Probes also searched exactly", figures.audit_sampled or 0
        )
        gauge("dedup_search_audit_exact_candidates", "Exact candidates of the sample", exact)
        gauge("dedup_search_audit_found", "Of those, found by the approximate search", found)
        gauge(
            "dedup_search_candidate_recall",
            "Measured candidate recall of the approximate search at the review threshold",
            found / exact if exact else 1.0,
        )
        gauge(
            "dedup_search_recall_floor",
            "Genuine-band recall below which the batch is searched again",
            figures.audit_floor or 0,
        )
        pairs, band_found = figures.audit_band_pairs or 0, figures.audit_band_found or 0
        gauge(
            "dedup_search_audit_band_pairs", "Exact pairs of the sample in the genuine band", pairs
        )
        gauge(
            "dedup_search_audit_band_recall",
            "Recall of the approximate search in the genuine band (1 with no pair there)",
            band_found / pairs if pairs else 1.0,
        )
        gauge(
            "dedup_search_audit_band_floor",
            "The genuine band's floor score the audit applied",
            figures.audit_band_floor or 0,
        )
    if figures.engine != "exact":
        gauge(
            "dedup_search_recall_fallback",
            "1 when the audit fell below its floor and the batch was searched again",
            1 if figures.fallback else 0,
            {"fallback": figures.fallback or "none"},
        )
    return registry


def observed_registry(observed_false: int, undecided: int) -> CollectorRegistry:
    """A night's false candidates as the adjudicators' applied decisions show them (the
    batch report's figures), to set against the search's prediction for the same batch."""
    registry = CollectorRegistry()
    Gauge(
        "dedup_report_observed_false_candidates",
        "Candidate pairs of the batch decided not of one identity",
        registry=registry,
    ).set(observed_false)
    Gauge(
        "dedup_report_undecided_candidate_pairs",
        "Candidate pairs of the batch with an end not decided yet",
        registry=registry,
    ).set(undecided)
    return registry


def publish(
    registry: CollectorRegistry,
    settings: MetricsSettings,
    job: str,
    batch_id: str | None,
    textfile_registry: CollectorRegistry | None = None,
) -> list[str]:
    """Send the registry where the settings say (grouped by job, and by batch unless
    ``batch_id`` is None); where it went. The text file holds ``textfile_registry`` where one
    is given (the same figures labelled with what the Pushgateway's grouping would add)."""
    sent = []
    if settings.pushgateway:
        try:
            push_to_gateway(
                settings.pushgateway,
                job=job,
                registry=registry,
                grouping_key={} if batch_id is None else {"batch": batch_id},
                timeout=settings.push_timeout_s,
            )
        except OSError as error:
            raise DedupError(
                f"could not push metrics to the Pushgateway at {settings.pushgateway}: {error}"
            ) from error
        sent.append(settings.pushgateway)
    if settings.textfile_dir is not None:
        folder = Path(settings.textfile_dir)
        folder.mkdir(parents=True, exist_ok=True)
        # "@" is outside the batch-id alphabet: no batch's file can be the last-success one.
        name = f"{job}@last-success" if batch_id is None else f"{job}-{batch_id}"
        path = folder / f"{name}.prom"
        write_bytes_atomically(path, generate_latest(textfile_registry or registry))
        sent.append(str(path))
    return sent


Figure = float | int | str | None
LOG = logging.getLogger(__name__)


class HasFigures(Protocol):
    def figures(self) -> Mapping[str, Figure]: ...


Report = TypeVar("Report", bound=HasFigures)


@dataclass
class JobMetrics:
    """One run of a job as its metrics see it: what it reported, and where that went."""

    job: str
    batch_id: str
    figures: dict[str, Figure] = field(default_factory=dict)
    # Where the metrics went, or why they did not ("not published: ...").
    sent: list[str] = field(default_factory=list)

    def done(self, report: Report) -> Report:
        """Record the job's report (its ``figures()``) and hand it back."""
        self.record(report.figures())
        return report

    def record(self, figures: Mapping[str, Figure]) -> None:
        """Record a job's figures directly (for a job without a report object)."""
        self.figures = dict(figures)


def run_registry(
    figures: Mapping[str, Figure],
    seconds: float,
    failed: bool,
    finished_at: float,
    labels: Mapping[str, str] | None = None,
) -> CollectorRegistry:
    """A run's group: duration, rows in and out, failed, and its other numeric figures as
    ``dedup_job_figure{figure=...}`` (text figures stay in ``batch_runs``)."""
    registry = CollectorRegistry()
    constant = dict(labels or {})

    def gauge(name: str, text: str, value: float, extra: dict[str, str] | None = None) -> None:
        names = {**constant, **(extra or {})}
        metric = Gauge(name, text, list(names), registry=registry)
        (metric.labels(**names) if names else metric).set(value)

    gauge("dedup_job_duration_seconds", "Wall time of the job's last run", seconds)
    gauge("dedup_job_failed", "1 if the job's last run failed, else 0", int(failed))
    gauge("dedup_job_finished_timestamp_seconds", "When the last run ended", finished_at)
    numbers = {
        k: float(v)
        for k, v in figures.items()
        if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
    }
    for key, text in (("rows_in", "Rows the job took in"), ("rows_out", "Rows it gave out")):
        if key in numbers:
            gauge(f"dedup_job_{key}", text, numbers.pop(key))
    numbers.pop("seconds", None)
    if numbers:
        metric = Gauge(
            "dedup_job_figure",
            "The job's figures (batch_runs.figures), by name",
            [*constant, "figure"],
            registry=registry,
        )
        for key, value in sorted(numbers.items()):
            metric.labels(**constant, figure=key).set(value)
    return registry


def last_success_registry(
    finished_at: float, labels: Mapping[str, str] | None = None
) -> CollectorRegistry:
    registry = CollectorRegistry()
    names = dict(labels or {})
    metric = Gauge(
        "dedup_job_last_success_timestamp_seconds",
        "When the job last finished without an error",
        list(names),
        registry=registry,
    )
    (metric.labels(**names) if names else metric).set(finished_at)
    return registry


def _publish_quietly(
    registry: CollectorRegistry,
    settings: MetricsSettings,
    job: str,
    batch_id: str | None,
    textfile: CollectorRegistry,
) -> list[str]:
    """A monitoring outage is reported, never fatal: it must not fail a good run nor hide
    the error of a failed one."""
    try:
        return publish(registry, settings, job, batch_id, textfile)
    except DedupError as error:
        LOG.warning("job metrics of %s not published: %s", job, error)
        return [f"not published: {error}"]


@contextmanager
def job_metrics(settings: MetricsSettings, job: str, batch_id: str) -> Iterator[JobMetrics]:
    """Run a job's body and publish its metrics at the end, failed or not (module docstring)."""
    metrics = JobMetrics(job, batch_id)
    started = time.perf_counter()
    failed = True
    try:
        yield metrics
        failed = False
    finally:
        seconds, now = time.perf_counter() - started, time.time()
        labels = {"job": job, "batch": batch_id}
        figures = {} if failed else metrics.figures
        metrics.sent += _publish_quietly(
            run_registry(figures, seconds, failed, now),
            settings,
            job,
            batch_id,
            run_registry(figures, seconds, failed, now, labels),
        )
        if not failed:
            metrics.sent += _publish_quietly(
                last_success_registry(now),
                settings,
                job,
                None,
                last_success_registry(now, {"job": job}),
            )

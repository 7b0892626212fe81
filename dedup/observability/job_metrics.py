"""What a batch job reports to Prometheus, and how it gets there.

Batch jobs do not live long enough to be scraped, so a job builds its metrics in a registry of
its own and, at its end (failed or not), publishes it:

- to a Prometheus Pushgateway (``metrics.pushgateway``), grouped by job and batch, so that a
  re-run of a batch replaces its figures instead of adding a second series;
- and/or as a text file for node_exporter's textfile collector (``metrics.textfile_dir``),
  written atomically as ``<job>-<batch>.prom``.

With neither set, nothing is published. Only figures go out: counts, rates, scores. No
template, image or enrollment id is ever a label or a value.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

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
            "Recall below which the run fails",
            figures.audit_floor or 0,
        )
    return registry


def publish(
    registry: CollectorRegistry, settings: MetricsSettings, job: str, batch_id: str
) -> list[str]:
    """Send the registry where the settings say; where it went."""
    sent = []
    if settings.pushgateway:
        try:
            push_to_gateway(
                settings.pushgateway,
                job=job,
                registry=registry,
                grouping_key={"batch": batch_id},
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
        path = folder / f"{job}-{batch_id}.prom"
        write_bytes_atomically(path, generate_latest(registry))
        sent.append(str(path))
    return sent

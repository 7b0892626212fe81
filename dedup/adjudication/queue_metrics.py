"""``/metrics`` of the review service: the queue as the database holds it, read at scrape time,
and how long claims take in this process."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select

from dedup.adjudication import queue
from dedup.adjudication.context import Context
from dedup.adjudication.tables import JudgementRow

CLAIM_SECONDS = Histogram(
    "dedup_review_claim_seconds",
    "Time to claim the next case (lock, lease, audit), in this process.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
    registry=None,
)


class QueueCollector(Collector):
    def __init__(self, context: Context) -> None:
        self.context = context

    def collect(self) -> Iterator[Metric]:
        now = self.context.now()
        with self.context.sessions() as db:
            depth = queue.queue_depth(db, now)
            judged = db.execute(
                select(JudgementRow.stage, JudgementRow.outcome, func.count()).group_by(
                    JudgementRow.stage, JudgementRow.outcome
                )
            ).all()
        cases = GaugeMetricFamily("dedup_review_cases", "Review cases by state.", labels=["state"])
        for state, count in sorted(depth.by_state.items()):
            cases.add_metric([state], count)
        yield cases
        age = 0.0 if depth.oldest_open is None else (now - depth.oldest_open).total_seconds()
        yield GaugeMetricFamily(
            "dedup_review_oldest_open_case_age_seconds",
            "Age of the oldest case still open (0 when none is).",
            value=age,
        )
        decisions = CounterMetricFamily(
            "dedup_review_judgements",
            "Judgements recorded, by review stage and outcome.",
            labels=["stage", "outcome"],
        )
        for stage, outcome, count in judged:
            decisions.add_metric([stage, outcome], count)
        yield decisions


def service_registry(context: Context) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(QueueCollector(context))
    registry.register(CLAIM_SECONDS)
    return registry

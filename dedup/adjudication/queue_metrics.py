"""``/metrics`` of the review service: the queue as the database holds it, read at scrape time,
and how long claims take in this process."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select

from dedup.adjudication import catch_trials, queue
from dedup.adjudication.context import Context
from dedup.adjudication.tables import JudgementRow

CLAIM_SECONDS = Histogram(
    "dedup_review_claim_seconds",
    "Time to claim the next case (lock, lease, audit), in this process.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
    registry=None,
)

CASE_SECONDS = Histogram(
    "dedup_review_case_seconds",
    "Time from claiming a case to judging it, judgements made in this process.",
    buckets=(10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0),
    registry=None,
)

HTTP_RESPONSES = Counter(
    "dedup_review_http_responses",
    "Responses of this process, by route (its template, never an id) and status class.",
    ["route", "code"],
    registry=None,
)


def count_response(route: str, status: int) -> None:
    HTTP_RESPONSES.labels(route, f"{status // 100}xx").inc()


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
            trials = catch_trials.accuracy(db)
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
        catch = CounterMetricFamily(
            "dedup_review_catch_trial_judgements",
            "Judgements on catch trials (known pairs), by whether they matched the truth.",
            labels=["result"],
        )
        right = sum(a.correct for a in trials)
        catch.add_metric(["correct"], right)
        catch.add_metric(["wrong"], sum(a.trials for a in trials) - right)
        yield catch


def service_registry(context: Context) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(QueueCollector(context))
    registry.register(CLAIM_SECONDS)
    registry.register(CASE_SECONDS)
    registry.register(HTTP_RESPONSES)
    return registry

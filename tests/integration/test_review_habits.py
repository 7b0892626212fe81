"""How adjudicators decide, on SQLite and PostgreSQL: a decision changed after the scores is
counted towards the top-scored candidate or away from it, per adjudicator and overall; time
per case runs from the claim to the judgement (the API, the page and ``/metrics``)."""

from __future__ import annotations

from datetime import timedelta

from prometheus_client import generate_latest
from sqlalchemy import Engine

from dedup.adjudication import database, queue, review_stats
from dedup.adjudication.cases import Judgement, Outcome
from dedup.adjudication.context import Context
from dedup.adjudication.queue_metrics import service_registry
from dedup.settings import AdjudicationSettings
from tests.integration.test_review_queue import T0, claim, imported, run
from tests.review_support import ReviewWorld, batch_payload

NOT = Outcome.NOT_DUPLICATE


def _decide(engine: Engine, who: str, blind: str, final: str, took: int) -> None:
    """Claim at T0, judge blind then final ("not", "top" or "second": duplicate of the case's
    top-scored or second candidate), ``took`` seconds after the claim."""
    got = claim(engine, who)
    assert got is not None and got.case.lease is not None
    case_id, token, ranked = got.case_id, got.case.lease.token, got.case.candidates

    def judgement(what: str) -> Judgement:
        if what == "not":
            return Judgement(who, NOT)
        return Judgement(who, Outcome.DUPLICATE, ranked[0 if what == "top" else 1])

    run(engine, lambda db: queue.record_blind(db, case_id, who, token, judgement(blind), T0))
    at = T0 + timedelta(seconds=took)
    run(engine, lambda db: queue.judge_case(db, case_id, token, judgement(final), at))


def test_changes_after_the_scores_and_time_per_case(review_engine: Engine) -> None:
    imported(review_engine, 4)
    _decide(review_engine, "ann", "not", "top", 60)  # towards the machine
    _decide(review_engine, "ann", "top", "not", 120)  # away from it
    _decide(review_engine, "bob", "not", "second", 30)  # changed, neither
    _decide(review_engine, "bob", "not", "not", 300)  # unchanged
    per, overall = run(review_engine, review_stats.score_influence)
    got = {i.adjudicator: (i.blind, i.changed, i.towards, i.away, i.other) for i in per}
    assert got == {"ann": (2, 2, 1, 1, 0), "bob": (2, 1, 0, 0, 1)}
    assert (overall.blind, overall.changed, overall.towards, overall.away) == (4, 3, 1, 1)
    assert overall.changed_rate == 0.75
    times, every = run(review_engine, review_stats.case_times)
    assert [(t.adjudicator, t.median_seconds, t.p90_seconds) for t in times] == [
        ("ann", 90.0, 120.0),
        ("bob", 165.0, 300.0),
    ]
    assert (every.judgements, every.median_seconds, every.p90_seconds) == (4, 90.0, 300.0)


def test_the_supervisor_sees_the_habits_and_metrics_time_the_cases(world: ReviewWorld) -> None:
    operator = world.client("operator")
    assert operator.post("/api/v1/batches/b1/candidates", json=batch_payload(1)).is_success
    ann = world.client("ann")
    case = ann.post("/api/v1/cases/claim").json()
    body = {"lease_token": case["lease_token"], "outcome": "not_duplicate"}
    assert ann.post(f"/api/v1/cases/{case['case_id']}/blind", json=body).is_success
    world.clock.now += timedelta(seconds=42)
    top = case["candidates"][0]["candidate_id"]
    final = {**body, "outcome": "duplicate", "duplicate_of": top}
    assert ann.post(f"/api/v1/cases/{case['case_id']}/judgement", json=final).is_success
    sue = world.client("sue")
    habits = sue.get("/api/v1/review-habits").json()
    [ann_row] = habits["score_influence"]
    assert (ann_row["adjudicator"], ann_row["changed"], ann_row["towards"]) == ("ann", 1, 1)
    assert habits["case_seconds_overall"]["median_seconds"] >= 42
    page = sue.get("/supervisor/accuracy").text
    assert 'id="influence"' in page and 'id="times"' in page and "ann" in page
    context = Context(database.sessions(world.engine), AdjudicationSettings())
    scraped = generate_latest(service_registry(context)).decode()
    assert "dedup_review_case_seconds_count" in scraped

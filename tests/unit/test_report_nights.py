"""Predicted against observed, night by night and cumulative: false candidate pairs, the
observed FPIR of the searches decisions can classify, and the drift figure the alert uses."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dedup.reporting.nights import (
    DRIFT_FACTOR,
    Candidate,
    Night,
    Searches,
    cumulative,
    drift_factor,
    nights,
    published_nights,
    searches,
)
from tests.report_support import CANDIDATES as SHARED_CANDIDATES
from tests.report_support import OUTCOMES as SHARED_OUTCOMES
from tests.report_support import outcome

# The shared night, plus an earlier night's enrollment still in review (g4), a probe whose one
# gallery candidate is g4 (p6), and an erased probe (p7).
OUTCOMES = {
    **SHARED_OUTCOMES,
    "g4": outcome("g4", "pending_review", "b1"),
    "p6": outcome("p6", "not_duplicate"),
    "p7": outcome("p7", "erased"),
}
CANDIDATES = [
    *SHARED_CANDIDATES,
    Candidate("p6", "g4", 0.93, "gallery"),
    Candidate("p7", "g2", 0.99, "gallery"),
]


def test_searches_split_into_mated_non_mated_false_positive_and_undecided() -> None:
    got = searches("b2", CANDIDATES, OUTCOMES)
    # non-mated: p1 (false positive), p3, p4; mated: p2; undecided: p5, p6; erased: p7
    assert got == Searches(nonmated=3, false_positive=1, undecided=2)
    assert got.fpir == pytest.approx(1 / 3)
    assert got.fpir_interval is not None
    assert got.fpir_interval[0] < 1 / 3 < got.fpir_interval[1]
    # the earlier night's enrollments searched an empty gallery: three non-mated searches, and
    # g4 still in review
    assert searches("b1", [], OUTCOMES) == Searches(3, 0, 1)
    # an erased candidate is no candidate: p1 with g1 and g3 erased is a plain non-match
    erased = {**OUTCOMES, "g1": outcome("g1", "erased", "b1"), "g3": outcome("g3", "erased", "b1")}
    assert searches("b2", CANDIDATES[:2], erased).false_positive == 0


def test_nights_and_their_running_sums() -> None:
    figures = {
        "b1": {"expected_false": 0.4, "target_fpir": 0.01},
        "b2": {"expected_false": 2.5, "target_fpir": 0.005},
    }
    listed = nights(figures, {"b1": [], "b2": CANDIDATES}, OUTCOMES)
    # false pairs of b2: p1-g1, p1-g3, p2-g1; undecided: p5-g1, p6-g4
    assert [(n.batch_id, n.expected_false, n.observed_false, n.undecided) for n in listed] == [
        ("b1", 0.4, 0, 0),
        ("b2", 2.5, 3, 2),
    ]
    running = cumulative(listed)
    assert [(n.expected_false, n.observed_false, n.undecided) for n in running] == [
        (0.4, 0, 0),
        (pytest.approx(2.9), 3, 2),
    ]
    assert running[1].searches == Searches(6, 1, 3)
    assert running[1].target_fpir == 0.005  # the latest night's target
    assert running[1].drift == pytest.approx(3 / 2.9)
    row = running[1].to_json()
    assert row["observed_fpir"] == pytest.approx(1 / 6) and row["drift_alerts"] is False
    # before decisions are applied there is nothing observed, night or cumulative
    blind = cumulative(nights(figures, {"b2": CANDIDATES}, None))
    assert [(n.observed_false, n.searches, n.drift) for n in blind] == [(None, None, None)] * 2


def test_cumulative_drift_sees_a_steady_under_prediction_no_night_shows() -> None:
    # each night 2 predicted, 5 found (2.5x, under the alert's 3x, and each night under 5 on
    # the predicted side): ten nights together are 20 against 50
    listed = [Night(f"n{i}", 2.0, 5, 0) for i in range(10)]
    assert not any(n.drift_alerts for n in listed)
    total = cumulative(listed)[-1]
    assert (total.expected_false, total.observed_false) == (20.0, 50)
    assert total.drift == pytest.approx(2.5)
    skewed = cumulative([Night(f"n{i}", 1.0, 4, 0) for i in range(10)])[-1]
    assert skewed.drift == pytest.approx(4.0) and skewed.drift_alerts


@given(
    st.floats(min_value=0, max_value=1e6, allow_nan=False),
    st.integers(min_value=0, max_value=1_000_000),
)
def test_drift_is_symmetric_at_least_one_and_floors_small_counts(
    expected: float, observed: int
) -> None:
    drift = drift_factor(expected, observed)
    assert (drift is not None and drift >= 1.0) or max(expected, observed) < 0.5
    assert drift == drift_factor(observed, expected)
    if max(expected, observed) <= 0.5:
        assert drift == pytest.approx(max(expected, observed) / 0.5)
    if min(expected, observed) >= 0.5:
        assert drift == pytest.approx(max(expected, observed) / min(expected, observed))


@pytest.mark.parametrize(
    ("expected", "observed", "undecided", "alerts"),
    [
        (2.0, 12, 0, True),  # 6x
        (2.0, 12, 1, False),  # a pair is still open
        (2.0, 6, 0, False),  # exactly 3x: not more than 3
        (0.2, 2, 0, False),  # 4x the floor, but under 5 on both sides
        (40.0, 4, 0, True),  # far fewer than predicted
        (5.0, 0, 0, True),  # 5 predicted, none found: 10x the floor
    ],
)
def test_the_alert_condition(expected: float, observed: int, undecided: int, alerts: bool) -> None:
    night = Night("b", expected, observed, undecided)
    assert night.drift_alerts is alerts
    assert night.drift is not None and (night.drift > DRIFT_FACTOR or not alerts)


def test_a_report_publishes_the_nights_matched_within_the_retention_and_its_own() -> None:
    now = dt.datetime(2026, 12, 2, 3, tzinfo=dt.UTC)
    listed = [Night(b, 1.0, 1, 0) for b in ("old", "edge", "recent", "unrecorded", "tonight")]
    matched_at = {
        "old": now - dt.timedelta(days=35, seconds=1),
        "edge": now - dt.timedelta(days=35),
        "recent": now - dt.timedelta(days=2),
        "tonight": now - dt.timedelta(days=40),  # re-run of an old batch: its own report
    }
    got = published_nights(listed, matched_at, now, 35, "tonight")
    assert [n.batch_id for n in got] == ["edge", "recent", "tonight"]
    # a night whose match was never recorded is published only as the report's own batch
    assert [n.batch_id for n in published_nights(listed, {}, now, 35, "unrecorded")] == [
        "unrecorded"
    ]

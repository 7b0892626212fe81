"""The batch report's numbers on hand-made rows: score bands, outcome counts, step
timings, and false candidates predicted against those adjudicators found."""

from __future__ import annotations

import datetime as dt
import io
import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from dedup.reporting.batch_report import (
    CatchTrials,
    ReportInputs,
    ReviewHabits,
    StepRun,
    build_report,
    decided_scores,
    outcome_counts,
    score_bands,
    step_figures,
)
from dedup.reporting.nights import Candidate, Outcome, observed_false
from dedup.reporting.page import render_page
from dedup.reporting.plots import decided_histogram, nights_plot, score_histogram
from tests.report_support import CANDIDATES, OUTCOMES, outcome

NOW = dt.datetime(2026, 12, 2, 6, 0, tzinfo=dt.UTC)
T0 = dt.datetime(2026, 12, 1, 22, 0, tzinfo=dt.UTC)


@given(
    st.floats(0.5, 0.98),
    st.lists(st.tuples(st.floats(0.0, 1.0), st.sampled_from(["gallery", "batch"])), max_size=60),
)
def test_every_candidate_at_or_above_the_threshold_falls_in_exactly_one_band(
    threshold: float, rows: list[tuple[float, str]]
) -> None:
    above = [(s, src) for s, src in rows if s >= threshold]
    bands = score_bands([s for s, _ in above], [src for _, src in above], threshold)
    assert bands[0].low == threshold and bands[-1].high == 1.0
    assert all(a.high == b.low for a, b in itertools.pairwise(bands))
    assert sum(b.gallery for b in bands) == sum(src == "gallery" for _, src in above)
    assert sum(b.batch for b in bands) == sum(src == "batch" for _, src in above)


def test_bands_are_narrow_near_the_threshold() -> None:
    bands = score_bands([0.91, 0.915, 0.93, 0.96, 1.0], ["gallery"] * 5, 0.9)
    assert [(b.label, b.gallery) for b in bands] == [
        ("0.900-0.920", 2),
        ("0.920-0.950", 1),
        ("0.950-1.000", 2),  # 0.9 + 0.10 is not below 1: the last band runs to 1
    ]


def test_outcome_counts_list_every_status_of_the_batch_only() -> None:
    rows = [
        outcome("a", "unique"),
        outcome("b", "pending_review"),
        outcome("c", "pending_review"),
        outcome("z", "unique", batch="b1"),
    ]
    counts = outcome_counts(rows, "b2")
    assert counts["unique"] == 1 and counts["pending_review"] == 2
    assert counts["duplicate"] == 0 and set(counts) >= {"erased", "escalated", "not_duplicate"}


def test_observed_false_counts_pairs_of_different_identities_once_decided() -> None:
    observed = observed_false(CANDIDATES, OUTCOMES)
    # false: p1-g1, p1-g3, p2-g1; true: p2-g2, p3-p4 (one pair, found both ways)
    assert (observed.false, observed.decided, observed.undecided) == (3, 5, 1)


def test_a_pair_with_an_erased_end_is_not_counted_and_an_unknown_one_is_undecided() -> None:
    erased = {**OUTCOMES, "g3": outcome("g3", "erased", "b1")}
    assert observed_false(CANDIDATES, erased).false == 2
    assert observed_false([Candidate("p1", "nobody", 0.95, "gallery")], OUTCOMES).undecided == 1


def test_decided_scores_split_by_the_probes_outcome() -> None:
    duplicate, not_duplicate = decided_scores(CANDIDATES, OUTCOMES)
    assert sorted(duplicate) == [0.905, 0.96, 0.97]
    assert sorted(not_duplicate) == [0.91, 0.92, 0.96]


def test_step_time_from_its_figures_else_from_its_times() -> None:
    timed = step_figures(StepRun("embed", T0, T0 + dt.timedelta(seconds=50), {"rows_in": 100}))
    assert (timed.seconds, timed.rows_in, timed.rows_per_second) == (50.0, 100, 2.0)
    own = step_figures(StepRun("match", T0, T0, {"seconds": 4.0, "rows_in": 10, "rows_out": 3}))
    assert (own.seconds, own.rows_per_second, own.rows_out) == (4.0, 2.5, 3)


def inputs(outcomes: dict[str, Outcome] | None) -> ReportInputs:
    match = {"threshold": 0.9, "target_fpir": 0.01, "expected_false": 2.5, "seconds": 3.0}
    return ReportInputs(
        batch_id="b2",
        verdicts={None: 5, "NO_FACE": 2, "DECODE_FAILED": 1},
        steps=[
            StepRun("match", T0, T0 + dt.timedelta(seconds=3), match),
            StepRun("stage", T0, T0, {"seconds": 10.0, "rows_in": 8, "rows_out": 5}),
        ],
        candidates={"b2": CANDIDATES, "b1": []},
        outcomes=outcomes,
        catch_trials=CatchTrials(adjudicators=2, trials=4, correct=3, changed_after_scores=1),
        habits=ReviewHabits(
            blind=5, changed=2, towards=2, away=0, timed=5, median_seconds=40.0, p90_seconds=95.0
        ),
        match_figures={"b1": {"expected_false": 0.4}, "b2": match},
    )


def test_the_report_gathers_the_figures() -> None:
    report = build_report(inputs(OUTCOMES), NOW)
    assert (report.rows, report.staged) == (8, 5)
    assert report.rejected_by_reason == {"DECODE_FAILED": 1, "NO_FACE": 2}
    assert [s.step for s in report.steps] == ["stage", "match"]  # in the night's order
    assert report.candidates == {"total": 7, "pairs": 6, "gallery": 5, "batch": 2}
    assert (report.threshold, report.target_fpir, report.expected_false) == (0.9, 0.01, 2.5)
    assert report.observed is not None and report.observed.false == 3
    assert [(n.batch_id, n.expected_false, n.observed_false) for n in report.nights] == [
        ("b1", 0.4, 0),
        ("b2", 2.5, 3),
    ]
    catch = report.to_json()["catch_trials"]
    assert catch["rate"] == 0.75 and catch["few_trials"]  # 4 trials: under 30
    assert catch["interval"] == pytest.approx((0.1941, 0.9937), abs=1e-4)
    assert report.to_json()["habits"]["towards"] == 2
    page = render_page(report, {})
    assert "fewer than 30" in page and 'id="habits"' in page and "<td>95</td>" in page
    assert page.count('<tr class="night">') == page.count('<tr class="cumulative">') == 2
    cumulative = report.to_json()["cumulative"]
    assert [r["expected_false"] for r in cumulative] == [0.4, pytest.approx(2.9)]
    assert cumulative[-1]["observed_fpir"] is not None and "drift" in cumulative[-1]


def test_before_decisions_are_applied_the_report_says_so() -> None:
    report = build_report(inputs(None), NOW)
    assert report.outcomes is None and report.observed is None
    page = render_page(report, {})
    assert "Not applied yet" in page and "not applied yet" in page


def png_size(data: bytes | None) -> tuple[int, int]:
    assert data is not None
    with Image.open(io.BytesIO(data)) as image:
        image.verify()
        return image.size


def test_plots_are_pngs_and_none_without_data() -> None:
    report = build_report(inputs(OUTCOMES), NOW)
    assert png_size(score_histogram([0.91, 0.95], [0.96], 0.9))[0] > 100
    assert png_size(decided_histogram([0.97], [0.91], 0.9))[0] > 100
    assert png_size(nights_plot(report.nights))[0] > 100
    assert score_histogram([], [], 0.9) is None and decided_histogram([], [], None) is None


def test_the_page_escapes_what_it_shows() -> None:
    report = build_report(inputs(OUTCOMES), NOW)
    hostile = build_report(
        ReportInputs(**{**inputs(OUTCOMES).__dict__, "verdicts": {"<script>": 1}}), NOW
    )
    assert "<script>" not in render_page(hostile, {})
    assert "&lt;script&gt;" in render_page(hostile, {})
    assert "p1" not in render_page(report, {})  # figures only, no enrollment id

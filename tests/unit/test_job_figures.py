"""Every job's figures (``JobReport.figures``): what ``batch_runs``, the batch report and the
job metrics read. Each is flat (numbers and short strings) and has seconds, rows in and out."""

from __future__ import annotations

import json

import pytest

from dedup.adjudication.payloads import ImportResult
from dedup.matching.threshold_policy import ReviewThreshold
from pipelines.job_report import Figures, JobReport
from pipelines.match import MatchReport, search_figures
from pipelines.ray.embed import EmbedReport
from pipelines.review_feed import EnqueueReport
from pipelines.spark.stage import StageReport

STAGE = StageReport(
    batch_id="b1",
    seconds=12.34567,
    rows=10,
    staged=7,
    rejected_by_reason={"DECODE_FAILED": 2, "NO_FACE": 1},
    photos_processed=9,
)
EMBED = EmbedReport(
    batch_id="b1",
    seconds=2.0,
    model_id="dlib-resnet-v1",
    faces=7,
    embedded=5,
    already_embedded=2,
    actors=2,
    device="cpu x2",
)


def match_report(**search: float | int | str | None) -> MatchReport:
    return MatchReport(
        batch_id="b1",
        seconds=3.0,
        model_id="dlib-resnet-v1",
        probes=7,
        candidates=6,
        with_candidates=3,
        unique=4,
        gallery_version=2,
        gallery_size=107,
        search=None,
        reused=False,
        metrics=[],
        from_gallery=2,
        from_batch=4,
        search_figures=search,
    )


ENQUEUE = EnqueueReport(
    batch_id="b1",
    seconds=0.5,
    result=ImportResult(
        batch_id="b1",
        already_imported=False,
        cases_created=3,
        cases_skipped=1,
        catch_trials_seeded=1,
    ),
    candidates=6,
)

REPORTS: list[JobReport] = [STAGE, EMBED, match_report(), ENQUEUE]


@pytest.mark.parametrize("report", REPORTS, ids=lambda r: type(r).__name__)
def test_every_report_has_seconds_rows_in_and_out_and_is_flat_json(report: JobReport) -> None:
    figures = report.figures()
    assert {"seconds", "rows_in", "rows_out"} <= set(figures)
    assert all(v is None or isinstance(v, int | float | str) for v in figures.values())
    assert json.loads(json.dumps(figures)) == figures  # what batch_runs.figures stores


def test_stage_counts_each_reject_reason() -> None:
    figures = STAGE.figures()
    assert figures["seconds"] == 12.346
    assert (figures["rows_in"], figures["rows_out"]) == (10, 7)
    assert (figures["rows"], figures["staged"], figures["rejected"]) == (10, 7, 3)
    assert figures["rejected.DECODE_FAILED"] == 2
    assert figures["rejected.NO_FACE"] == 1


def test_embed_says_what_it_wrote_with_which_model_and_how_fast() -> None:
    figures = EMBED.figures()
    assert (figures["rows_in"], figures["rows_out"]) == (7, 5)
    assert figures["templates_written"] == 5
    assert figures["model"] == "dlib-resnet-v1"
    assert figures["faces_per_second"] == 2.5


def test_match_carries_the_search_threshold_target_and_prediction() -> None:
    calibrated = ReviewThreshold(0.93, "FPIR 0.01 at N = 3300", None, target_fpir=0.01)
    figures = match_report(**search_figures(calibrated, None)).figures()
    assert (figures["rows_in"], figures["rows_out"]) == (7, 6)
    assert (figures["candidates_gallery"], figures["candidates_batch"]) == (2, 4)
    assert figures["threshold"] == 0.93
    assert figures["target_fpir"] == 0.01
    assert figures["engine"] == "none"  # no gallery: searched within the batch only
    assert figures["expected_false"] is None


def test_a_fixed_threshold_has_no_target_fpir() -> None:
    fixed = ReviewThreshold(0.9, "matching.review_threshold", None, "target not applied")
    figures: Figures = search_figures(fixed, None)
    assert figures["target_fpir"] is None
    assert figures["threshold"] == 0.9


def test_enqueue_counts_cases_created_skipped_and_catch_trials() -> None:
    figures = ENQUEUE.figures()
    assert (figures["rows_in"], figures["rows_out"]) == (6, 3)
    assert (figures["cases_created"], figures["cases_skipped"], figures["catch_trials"]) == (
        3,
        1,
        1,
    )

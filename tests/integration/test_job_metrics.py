"""Every job's run reaches a real Pushgateway through ``job_metrics``: its figures grouped by
job and batch, and a last-success time grouped by job alone that only a success moves."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from dedup.contracts.schemas import CANDIDATES_TABLE
from dedup.errors import LakeError
from dedup.observability.job_metrics import job_metrics
from dedup.settings import MetricsSettings, Settings
from pipelines.lake.batch_run import BatchRun
from pipelines.lake.delta_rs import DeltaRsTables
from pipelines.match import RESULTS_FILE
from pipelines.review_feed import enqueue_report
from tests.conftest import make_settings
from tests.integration.test_metrics import samples, scraped

Key = frozenset[tuple[str, str]]


def run_group(job: str, batch: str) -> Key:
    return frozenset({("job", job), ("batch", batch), ("instance", "")})


def job_group(job: str) -> Key:
    return frozenset({("job", job), ("instance", "")})


class Figures:
    def __init__(self, **figures: float | int | str | None) -> None:
        self._figures = figures

    def figures(self) -> dict[str, float | int | str | None]:
        return self._figures


def last_success(url: str, job: str) -> float:
    return scraped(url)[("dedup_job_last_success_timestamp_seconds", job_group(job))]


def test_a_success_pushes_its_figures_by_job_and_batch_and_its_time_by_job(
    pushgateway: str,
) -> None:
    settings = MetricsSettings(pushgateway=pushgateway)
    before = time.time()
    with job_metrics(settings, "t_success", "night-1") as metrics:
        report = Figures(seconds=1.5, rows_in=10, rows_out=7, **{"rejected.NO_FACE": 3})
        assert metrics.done(report) is report
    assert metrics.sent == [pushgateway, pushgateway]
    got = scraped(pushgateway)
    group = run_group("t_success", "night-1")
    assert got[("dedup_job_rows_in", group)] == 10
    assert got[("dedup_job_rows_out", group)] == 7
    assert got[("dedup_job_failed", group)] == 0
    assert got[("dedup_job_figure", group | {("figure", "rejected.NO_FACE")})] == 3
    assert got[("dedup_job_duration_seconds", group)] >= 0
    assert before <= last_success(pushgateway, "t_success") <= time.time()


def test_a_failure_after_a_success_leaves_the_last_success_unchanged(pushgateway: str) -> None:
    settings = MetricsSettings(pushgateway=pushgateway)
    with job_metrics(settings, "t_fail", "night-1") as metrics:
        metrics.done(Figures(seconds=1.0, rows_in=5, rows_out=5))
    succeeded = last_success(pushgateway, "t_fail")
    time.sleep(0.01)
    for batch in ("night-2", "night-1"):  # a new batch, and a re-run of the good one
        with pytest.raises(RuntimeError, match="boom"), job_metrics(settings, "t_fail", batch):
            raise RuntimeError("boom")
    got = scraped(pushgateway)
    assert last_success(pushgateway, "t_fail") == succeeded
    for batch in ("night-1", "night-2"):
        group = run_group("t_fail", batch)
        assert got[("dedup_job_failed", group)] == 1
        assert ("dedup_job_duration_seconds", group) in got
        # the failed re-run replaced the whole group: no rows of the earlier success remain
        assert ("dedup_job_rows_in", group) not in got


def test_a_dead_gateway_fails_neither_a_good_run_nor_hides_a_bad_ones_error() -> None:
    dead = MetricsSettings(pushgateway="http://127.0.0.1:9", push_timeout_s=2)
    with job_metrics(dead, "t_dead", "b") as metrics:
        metrics.done(Figures(seconds=0.1, rows_in=1, rows_out=1))
    assert all(s.startswith("not published: could not push metrics") for s in metrics.sent)
    with pytest.raises(LakeError, match="the job's own error"), job_metrics(dead, "t_dead", "b"):
        raise LakeError("the job's own error")


def test_the_textfile_collector_gets_one_labelled_file_per_batch_and_one_for_success(
    tmp_path: Path,
) -> None:
    settings = MetricsSettings(textfile_dir=tmp_path)
    with job_metrics(settings, "stage", "b1") as metrics:
        metrics.done(Figures(seconds=0.1, rows_in=4, rows_out=3))
    run = samples((tmp_path / "stage-b1.prom").read_text())
    assert run[("dedup_job_rows_in", frozenset({("job", "stage"), ("batch", "b1")}))] == 4
    success = samples((tmp_path / "stage@last-success.prom").read_text())
    assert [name for name, _ in success] == ["dedup_job_last_success_timestamp_seconds"]


def _matched_without_candidates(settings: Settings, batch_id: str) -> None:
    """The lake as the match job leaves a batch that found no candidate."""
    empty = CANDIDATES_TABLE.empty_table()
    DeltaRsTables(settings.lake).insert_new("candidates", empty)
    BatchRun(batch_id, settings).work("match").write_parquet(RESULTS_FILE, empty)


def test_the_enqueue_job_pushes_through_the_wrapper(pushgateway: str, tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "lake", metrics={"pushgateway": pushgateway})
    _matched_without_candidates(settings, "quiet-night")
    report = enqueue_report(BatchRun("quiet-night", settings))
    assert report.result.cases_created == 0
    got = scraped(pushgateway)
    assert got[("dedup_job_failed", run_group("enqueue", "quiet-night"))] == 0
    assert got[("dedup_job_rows_in", run_group("enqueue", "quiet-night"))] == 0
    succeeded = last_success(pushgateway, "enqueue")

    with pytest.raises(LakeError, match="has not been matched"):
        enqueue_report(BatchRun("never-matched", settings))
    got = scraped(pushgateway)
    assert got[("dedup_job_failed", run_group("enqueue", "never-matched"))] == 1
    assert last_success(pushgateway, "enqueue") == succeeded


def test_the_report_publishes_each_decided_night_s_observed_false_candidates(
    pushgateway: str, tmp_path: Path
) -> None:
    from dedup.reporting.nights import Night
    from pipelines.report import publish_observed

    settings = make_settings(tmp_path / "lake", metrics={"pushgateway": pushgateway})
    nights = [Night("r-1", 2.5, 4, 0), Night("r-2", 1.0, 1, 3), Night("r-3", 0.5, None, None)]
    publish_observed(settings, nights)
    got = scraped(pushgateway)
    assert got[("dedup_report_observed_false_candidates", run_group("report", "r-1"))] == 4
    assert got[("dedup_report_undecided_candidate_pairs", run_group("report", "r-1"))] == 0
    assert got[("dedup_report_undecided_candidate_pairs", run_group("report", "r-2"))] == 3
    # a night whose decisions were never applied has no figure yet
    assert ("dedup_report_observed_false_candidates", run_group("report", "r-3")) not in got

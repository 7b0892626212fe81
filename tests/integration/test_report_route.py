"""The operator page links the batch reports, and the service serves them read-only to the
roles that see the queue state, from the reports folder and nowhere else."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from dedup.settings import AdjudicationSettings
from tests.review_support import ReviewWorld, migrated, review_world, sqlite_url

PAGE = "<!doctype html><title>batch night-1</title><img src='data:image/png;base64,AAAA'>"


@pytest.fixture
def world(tmp_path: Path) -> Iterator[ReviewWorld]:
    reports = tmp_path / "lake" / "reports"
    (reports / "night-1").mkdir(parents=True)
    (reports / "night-1" / "report.html").write_text(PAGE, encoding="utf-8")
    (reports / "night-1" / "report.json").write_text('{"batch_id": "night-1"}', "utf-8")
    # outside the folder, under a report's name: reachable through the link unless refused
    (tmp_path / "report.html").write_text("not a report", encoding="utf-8")
    (reports / "escape").symlink_to(tmp_path)  # a link out of the folder
    engine = migrated(sqlite_url(tmp_path))
    settings = AdjudicationSettings(logins_per_client_per_minute=1000, reports_dir=reports)
    yield review_world(engine, settings)
    engine.dispose()


def test_the_operator_page_links_the_report_and_the_page_is_served_with_its_plots(
    world: ReviewWorld,
) -> None:
    operator = world.client("operator")
    page = operator.get("/operator")
    assert 'href="/operator/reports/night-1/report.html"' in page.text
    assert "escape" not in page.text  # a link out of the folder is not a report
    answer = operator.get("/operator/reports/night-1/report.html")
    assert answer.status_code == 200 and answer.text == PAGE
    assert answer.headers["content-type"].startswith("text/html")
    policy = answer.headers["content-security-policy"]
    assert "img-src data:" in policy and "script-src" not in policy  # no script runs
    figures = world.client("sue").get("/operator/reports/night-1/report.json")
    assert json.loads(figures.text) == {"batch_id": "night-1"}


@pytest.mark.parametrize("user", ["ann", "aude"])
def test_roles_that_do_not_see_the_queue_state_are_refused(world: ReviewWorld, user: str) -> None:
    answer = world.client(user).get("/operator/reports/night-1/report.json")
    assert answer.status_code == 403


@pytest.mark.parametrize(
    "path",
    [
        "/operator/reports/night-1/settings.json",
        "/operator/reports/night-2/report.html",
        "/operator/reports/escape/secret.html",
        "/operator/reports/escape/report.html",
        "/operator/reports/..%2F..%2Fsecret.html/report.html",
        "/operator/reports/%2E%2E/report.html",
        "/operator/reports/night-1/..%2F..%2F..%2Fsecret.html",
    ],
)
def test_nothing_outside_a_batch_report_is_served(world: ReviewWorld, path: str) -> None:
    answer = world.client("operator").get(path)
    assert answer.status_code == 404
    assert "not a report" not in answer.text


def test_without_a_reports_folder_there_is_nothing_to_list(tmp_path: Path) -> None:
    engine = migrated(sqlite_url(tmp_path))
    try:
        world = review_world(engine)
        operator = world.client("operator")
        assert "No batch report written yet" in operator.get("/operator").text
        assert operator.get("/operator/reports/night-1/report.html").status_code == 404
    finally:
        engine.dispose()

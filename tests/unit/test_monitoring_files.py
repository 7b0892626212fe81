"""The monitoring files hold together without Prometheus: every alert has its severity, its
annotations and a runbook that exists and is indexed, every alert has rule unit tests that see
it fire and stay silent, and the Grafana dashboard is dashboard-shaped (panels with targets,
unique ids, a uid, a datasource variable every panel uses).

promtool itself checks the rules and runs their unit tests in
``tests/integration/test_alert_rules.py``."""

from __future__ import annotations

import os
import re
from typing import Any

import yaml

from tests.monitoring_support import (
    LINKS,
    RULE_TESTS,
    RULES,
    RUNBOOK_BASE,
    RUNBOOKS,
    alert_rules,
    dashboard,
    metric_names,
    panels,
    recorded_names,
)

SEVERITIES = {"critical", "warning"}
RUNBOOK_SECTIONS = (
    "## What it means",
    "## How to confirm",
    "## Likely causes",
    "## What to do",
    "## What not to do",
)
DATASOURCE = "${datasource}"


def test_every_alert_has_a_severity_its_annotations_and_a_runbook() -> None:
    names = [rule["alert"] for rule in alert_rules()]
    assert len(names) == len(set(names)) >= 7
    for rule in alert_rules():
        name = rule["alert"]
        assert rule["labels"]["severity"] in SEVERITIES, name
        annotations = rule["annotations"]
        assert set(annotations) >= {"summary", "description", "runbook_url"}, name
        assert annotations["runbook_url"] == f"{RUNBOOK_BASE}docs/runbooks/{name}.md"
        page = RUNBOOKS / f"{name}.md"
        assert page.exists(), f"{name}: no runbook {page}"
        text = page.read_text(encoding="utf-8")
        assert text.startswith(f"# {name}\n"), page
        missing = [section for section in RUNBOOK_SECTIONS if section not in text]
        assert not missing, f"{page}: no {missing}"


def test_the_deploy_paths_are_relative_links_to_the_chart_s_files() -> None:
    # One source each: the chart reads its files/ (.Files.Get cannot leave the chart), and the
    # plain paths that promtool, Prometheus and Grafana are pointed at lead to the same bytes.
    for link, target in LINKS.items():
        assert link.is_symlink(), f"{link} must be a link to {target}"
        assert not os.readlink(link).startswith("/"), f"{link} must be a relative link"
        assert link.resolve() == target.resolve()


def test_the_runbook_base_is_the_one_the_rule_file_documents() -> None:
    text = RULES.read_text(encoding="utf-8")
    urls = re.findall(r"^\s+runbook_url: (\S+)$", text, re.M)
    assert len(urls) == len(alert_rules())
    assert all(url.startswith(RUNBOOK_BASE) for url in urls)
    assert RUNBOOK_BASE in text.split("groups:")[0]  # the header says how to change it


def test_the_runbook_index_lists_every_runbook_and_only_those() -> None:
    index = (RUNBOOKS / "README.md").read_text(encoding="utf-8")
    pages = {path.stem for path in RUNBOOKS.glob("*.md")} - {"README"}
    assert pages == {rule["alert"] for rule in alert_rules()}
    for page in pages:
        assert f"]({page}.md)" in index, f"README.md does not link {page}.md"


def rule_test_cases() -> list[dict[str, Any]]:
    cases = []
    for path in sorted(RULE_TESTS.glob("*.yaml")):
        for test in yaml.safe_load(path.read_text(encoding="utf-8"))["tests"]:
            cases.extend(test.get("alert_rule_test", []))
    return cases


def test_every_alert_has_unit_tests_that_see_it_fire_and_stay_silent() -> None:
    fired = {case["alertname"] for case in rule_test_cases() if case.get("exp_alerts")}
    silent = {case["alertname"] for case in rule_test_cases() if not case.get("exp_alerts")}
    alerts = {rule["alert"] for rule in alert_rules()}
    assert alerts <= fired, f"never seen firing: {sorted(alerts - fired)}"
    assert alerts <= silent, f"never seen silent: {sorted(alerts - silent)}"


def test_recording_rules_are_named_level_metric_operation() -> None:
    for name in recorded_names():
        assert re.fullmatch(r"dedup:[a-z_]+(:[a-z_]+)?", name), name


def test_the_dashboard_is_a_grafana_dashboard() -> None:
    board = dashboard()
    assert re.fullmatch(r"[a-z0-9-]{1,40}", board["uid"])
    assert board["title"] and isinstance(board["schemaVersion"], int)
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    ids = [panel["id"] for panel in panels(board)]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    graphs = [panel for panel in panels(board) if panel["type"] != "row"]
    assert len(graphs) >= 10
    for panel in graphs:
        title = panel["title"]
        assert panel["datasource"]["uid"] == DATASOURCE, title
        position = panel["gridPos"]
        assert position["x"] + position["w"] <= 24 and position["h"] > 0, title
        targets = panel["targets"]
        assert targets, f"panel {title!r} has no targets"
        refs = [target["refId"] for target in targets]
        assert len(refs) == len(set(refs)), title
        for target in targets:
            assert target["expr"].strip(), title
            assert target.get("datasource", panel["datasource"])["uid"] == DATASOURCE, title


def test_the_dashboard_shows_what_the_operators_need() -> None:
    used: set[str] = set()
    for panel in panels(dashboard()):
        for target in panel.get("targets", []):
            used |= metric_names(target["expr"])
    assert {
        "dedup_job_duration_seconds",  # the night's timeline per step
        "dedup_job_finished_timestamp_seconds",
        "dedup_job_rows_in",  # throughput
        "dedup_search_candidates",
        "dedup_search_expected_false_candidates",
        "dedup_search_audit_band_recall",  # the recall audit
        "dedup_search_recall_floor",
        "dedup_search_recall_fallback",
        "dedup_review_cases",  # queue depth
        "dedup_review_oldest_open_case_age_seconds",
        "dedup_review_judgements_total",  # decisions per hour
        "dedup_review_catch_trial_judgements_total",  # catch-trial accuracy
        "dedup_report_observed_false_candidates",  # predicted against observed
        "dedup_review_http_responses_total",  # server errors
        "dedup_review_case_seconds_bucket",  # time per case
    } <= used

"""The monitoring objects: created only where the cluster serves the operator's API, carrying
exactly the rule file and the dashboard (one source of truth each, in the chart's files/),
scraped under the job names the rules read. Also the night's first step, night-start.py,
run for real."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from dedup.settings import Settings
from tests.deploy.chart_support import CHART, ROOT, rendered
from tests.monitoring_support import RULES, RUNBOOK_BASE, dashboard, rule_groups

MONITORING_KINDS = ("ServiceMonitor", "PrometheusRule")


def test_monitoring_objects_exist_only_where_the_api_is_served() -> None:
    for scenario in ("defaults", "no-gpu", "ingress"):
        assert not [d for d in rendered(scenario).docs if d["kind"] in MONITORING_KINDS]
    on = rendered("monitoring")
    assert len(on.of_kind("ServiceMonitor")) == 2 and len(on.of_kind("PrometheusRule")) == 1


def test_the_scrape_jobs_are_named_as_the_rules_expect() -> None:
    rules = RULES.read_text(encoding="utf-8")
    review = rendered("monitoring").one("ServiceMonitor", "-review")["spec"]
    [endpoint] = review["endpoints"]
    assert endpoint["path"] == "/metrics" and endpoint["port"] == "http"
    assert endpoint["relabelings"] == [
        {"action": "replace", "targetLabel": "job", "replacement": "dedup-review"}
    ]
    assert 'job="dedup-review"' in rules
    gateway = rendered("monitoring").one("ServiceMonitor", "-pushgateway")["spec"]
    [endpoint] = gateway["endpoints"]
    assert endpoint["honorLabels"] is True
    assert endpoint["relabelings"][0]["replacement"] == "dedup-pushgateway"
    # The Pushgateway's own `up` (the dashboard's targets panel); its pushed series keep the
    # jobs' names (honorLabels).
    assert "dedup-pushgateway" in json.dumps(dashboard())
    assert "under the job `dedup-pushgateway`" in rules
    assert gateway["namespaceSelector"] == {"matchNames": ["monitoring"]}
    selector = rendered("monitoring").one("Service", "-review")["metadata"]["labels"]
    assert review["selector"]["matchLabels"].items() <= selector.items()


def test_the_prometheus_rule_carries_the_rule_file_exactly() -> None:
    rule = rendered("monitoring").one("PrometheusRule")
    assert rule["spec"]["groups"] == rule_groups()


def alerts_of(groups: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def test_every_alert_s_runbook_is_a_page_of_docs_runbooks() -> None:
    alerts = alerts_of(rendered("monitoring").one("PrometheusRule")["spec"]["groups"])
    assert len(alerts) >= 7
    for alert in alerts:
        url = alert["annotations"]["runbook_url"]
        assert url.startswith(RUNBOOK_BASE), alert["alert"]
        page = ROOT / url.removeprefix(RUNBOOK_BASE)
        assert page.parent == ROOT / "docs" / "runbooks" and page.is_file(), url


def test_the_dashboard_config_map_holds_the_dashboard_for_grafana_s_sidecar() -> None:
    config = rendered("defaults").one("ConfigMap", "-dashboard")
    assert config["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(config["data"]["dedup-dashboard.json"]) == dashboard()


def test_the_schema_knows_the_settings_top_level_keys() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text(encoding="utf-8"))
    settings = schema["properties"]["settings"]
    assert settings["additionalProperties"] is False
    assert set(settings["properties"]) == set(Settings.model_fields)


def night_start(tmp_path: Path, root: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(CHART / "files" / "night-start.py")],
        env={**os.environ, "DEDUP_NIGHT_TIME_ZONE": "Pacific/Kiritimati",
             "DEDUP_INTAKE_ROOT": root, "DEDUP_NIGHT_DIR": str(tmp_path / "night"), **env},
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def batch_today(zone: str) -> str:
    import datetime as dt
    import zoneinfo

    return dt.datetime.now(zoneinfo.ZoneInfo(zone)).date().isoformat()


def test_night_start_names_the_batch_by_the_date_in_the_time_zone(tmp_path: Path) -> None:
    batch = batch_today("Pacific/Kiritimati")  # UTC+14: a day ahead of UTC most of the day
    folder = tmp_path / "intake" / batch
    folder.mkdir(parents=True)
    (folder / "manifest.csv").write_text("enrollment_id\n", encoding="utf-8")
    done = night_start(tmp_path, str(tmp_path / "intake"))
    assert done.returncode == 0, done.stderr
    night = tmp_path / "night"
    assert (night / "batch-id").read_text() == batch
    assert (night / "manifest").read_text() == str(folder / "manifest.csv")


def test_night_start_copies_a_remote_manifest_into_the_pod(tmp_path: Path) -> None:
    folder = tmp_path / "bucket" / "2026-12-01"
    folder.mkdir(parents=True)
    (folder / "manifest.csv").write_text("enrollment_id\nE1\n", encoding="utf-8")
    root = (tmp_path / "bucket").as_uri()  # a URI root takes the copying path, as s3:// does
    done = night_start(tmp_path, root, DEDUP_BATCH_ID="2026-12-01")
    assert done.returncode == 0, done.stderr
    copied = Path((tmp_path / "night" / "manifest").read_text())
    assert copied == tmp_path / "night" / "intake" / "2026-12-01" / "manifest.csv"
    assert copied.read_text() == "enrollment_id\nE1\n"


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"DEDUP_BATCH_ID": "2026-12-01"}, "no manifest at"),
        ({"DEDUP_NIGHT_TIME_ZONE": "Mars/Olympus"}, "time zone 'Mars/Olympus' is unknown"),
    ],
)
def test_night_start_stops_the_night_with_a_reason(
    tmp_path: Path, env: dict[str, str], expected: str
) -> None:
    done = night_start(tmp_path, str(tmp_path / "intake"), **env)
    assert done.returncode == 1 and expected in done.stderr
    assert not (tmp_path / "night" / "batch-id").exists()

"""The monitoring objects: created only where the cluster serves the operator's API, carrying
exactly the rule file and the dashboard (one source of truth each, in the chart's files/),
scraped under the job names the rules read."""

from __future__ import annotations

import json
from typing import Any

from tests.deploy.chart_support import ROOT, rendered
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

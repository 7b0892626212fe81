"""The alert rules in a real Prometheus (Debian's package): it scrapes the review service and a
real Pushgateway on loopback, loaded with ``deploy/prometheus/alerts.yaml`` as it ships, and a
night that fails through the real ``dedup nightly`` command turns into a firing alert that
Prometheus's own API reports, while the alerts about a healthy service stay silent."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipelines.review_client import served
from tests.conftest import make_settings
from tests.monitoring_support import RULES, running_pushgateway
from tests.s3_support import free_port, wait_until_ready

BATCH = "2026-12-02"
# Prometheus scrapes and evaluates every second here (30 s in the shipped configuration).
INTERVAL = "1s"


def prometheus_config(pushgateway: str, review: str) -> dict[str, Any]:
    """The shipped ``prometheus.yml``'s two jobs, pointed at the test's services."""

    def target(url: str) -> list[dict[str, list[str]]]:
        return [{"targets": [urllib.parse.urlsplit(url).netloc]}]

    return {
        "global": {"scrape_interval": INTERVAL, "evaluation_interval": INTERVAL},
        "rule_files": [str(RULES)],
        "scrape_configs": [
            {"job_name": "dedup-pushgateway", "honor_labels": True,
             "static_configs": target(pushgateway)},
            {"job_name": "dedup-review", "metrics_path": "/metrics",
             "static_configs": target(review)},
        ],
    }  # fmt: skip


class Prometheus:
    def __init__(self, url: str) -> None:
        self.url = url

    def api(self, path: str, **query: str) -> Any:
        address = f"{self.url}/api/v1/{path}?{urllib.parse.urlencode(query)}"
        with urllib.request.urlopen(address, timeout=5) as reply:
            body = json.load(reply)
        assert body["status"] == "success", body
        return body["data"]

    def alerts(self) -> list[dict[str, Any]]:
        return list(self.api("alerts")["alerts"])

    def wait_for(self, what: str, found: Any, timeout_s: float = 60.0) -> Any:
        """Poll ``found()`` until it returns something truthy; fail naming ``what``."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            value = found()
            if value:
                return value
            time.sleep(0.5)
        pytest.fail(f"Prometheus never showed {what}; its alerts: {self.alerts()}")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Prometheus, str]]:
    """(Prometheus, Pushgateway URL), with a review service on a SQLite database and a
    Pushgateway of the module's own (the session's holds other tests' failed jobs)."""
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.fail("prometheus is not installed: run scripts/install-services")
    root = tmp_path_factory.mktemp("prometheus")
    settings = make_settings(root / "lake")
    with running_pushgateway() as pushgateway, served(settings) as review:
        config = root / "prometheus.yml"
        config.write_text(yaml.safe_dump(prometheus_config(pushgateway, review)), "utf-8")
        port = free_port()
        process = subprocess.Popen(
            [binary, f"--config.file={config}", f"--storage.tsdb.path={root / 'data'}",
             f"--web.listen-address=127.0.0.1:{port}"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        url = f"http://127.0.0.1:{port}"
        try:
            if not wait_until_ready(f"{url}/-/ready", process, timeout_s=60):
                pytest.fail("Prometheus did not become ready")
            yield Prometheus(url), pushgateway
        finally:
            process.terminate()
            process.wait(timeout=30)


def evaluated(prometheus: Prometheus) -> bool:
    """Whether every rule group has been evaluated (Prometheus gives the zero time before)."""
    groups = prometheus.api("rules")["groups"]
    return bool(groups) and all(not g["lastEvaluation"].startswith("0001") for g in groups)


def firing(prometheus: Prometheus, name: str, **labels: str) -> list[dict[str, Any]]:
    return [
        alert
        for alert in prometheus.alerts()
        if alert["labels"].get("alertname") == name
        and alert["state"] == "firing"
        and all(alert["labels"].get(k) == v for k, v in labels.items())
    ]


def test_both_targets_are_scraped_and_a_healthy_service_raises_no_alert(
    stack: tuple[Prometheus, str],
) -> None:
    prometheus, _ = stack

    def both_up() -> bool:
        targets = prometheus.api("targets")["activeTargets"]
        return sorted((t["labels"]["job"], t["health"]) for t in targets) == [
            ("dedup-pushgateway", "up"),
            ("dedup-review", "up"),
        ]

    prometheus.wait_for("both targets up", both_up)
    rules = prometheus.api("rules")["groups"]
    loaded = {r["name"] for group in rules for r in group["rules"] if r["type"] == "alerting"}
    shipped = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    assert loaded == {r["alert"] for g in shipped["groups"] for r in g["rules"] if "alert" in r}
    # a few evaluations with the service up and no job failed: nothing about either fires
    prometheus.wait_for("an evaluation of every rule group", lambda: evaluated(prometheus))
    time.sleep(3)
    names = {a["labels"]["alertname"] for a in prometheus.alerts()}
    assert names.isdisjoint({"DedupReviewServiceDown", "DedupStepFailed"}), prometheus.alerts()


def test_a_failed_night_fires_the_step_failed_alert(
    stack: tuple[Prometheus, str], tmp_path: Path
) -> None:
    prometheus, pushgateway = stack
    manifest = tmp_path / "intake" / BATCH / "manifest.csv"
    manifest.parent.mkdir(parents=True)
    manifest.write_text("who,what\n1,2\n", encoding="utf-8")  # not a manifest's columns
    env = {
        **os.environ,
        "DEDUP_METRICS__PUSHGATEWAY": pushgateway,
        "DEDUP_SPARK__MASTER": "local[1]",
        "RAY_AUTH_MODE": "disabled",
    }
    done = subprocess.run(
        [sys.executable, "-m", "pipelines.cli", "nightly", "--batch-id", BATCH,
         "--manifest", str(manifest), "--lake", str(tmp_path / "lake"),
         "--gallery", str(tmp_path / "gallery"), "--no-ray"],
        env=env, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert done.returncode == 2, done.stdout + done.stderr
    alert = prometheus.wait_for(
        "DedupStepFailed firing for the stage step of the batch",
        lambda: firing(prometheus, "DedupStepFailed", job="stage", batch=BATCH),
    )[0]
    assert alert["labels"]["severity"] == "critical"
    assert alert["annotations"]["runbook_url"].endswith("docs/runbooks/DedupStepFailed.md")
    assert BATCH in alert["annotations"]["summary"]
    # the night failed too, but its own series is covered by the step's: one alert, not two
    assert not firing(prometheus, "DedupStepFailed", job="nightly", batch=BATCH)

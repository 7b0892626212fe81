"""The alert rules through Prometheus's own promtool: the rule file and the example scrape
configuration are valid, the rules' unit tests (deploy/prometheus/tests/) pass, and every
query of the Grafana dashboard is PromQL that Prometheus parses.

promtool comes with the Debian package ``prometheus`` (scripts/install-services). Without it
these tests skip on a workstation and fail in CI (``CI`` set), where it must be installed."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.monitoring_support import RULE_TESTS, RULES, SCRAPE_CONFIG, dashboard_queries


@pytest.fixture(scope="module")
def promtool() -> str:
    binary = shutil.which("promtool")
    if binary is None:
        reason = "promtool is not installed: run scripts/install-services (Debian: prometheus)"
        if os.environ.get("CI", "").lower() not in ("", "0", "false"):
            pytest.fail(reason)
        pytest.skip(reason)
    return binary


def run(promtool: str, *args: str | Path) -> str:
    done = subprocess.run(
        [promtool, *map(str, args)], capture_output=True, text=True, timeout=120, check=False
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"promtool {' '.join(map(str, args))} failed:\n{output}"
    return output


def test_the_rule_file_and_the_example_configuration_are_valid(promtool: str) -> None:
    assert "SUCCESS" in run(promtool, "check", "rules", RULES)
    # The configuration names alerts.yaml in rule_files: checking it checks the rules again.
    output = run(promtool, "check", "config", SCRAPE_CONFIG)
    assert "1 rule files found" in output


def test_the_rules_unit_tests_pass(promtool: str) -> None:
    files = sorted(RULE_TESTS.glob("*.yaml"))
    assert files, f"no rule unit tests in {RULE_TESTS}"
    output = run(promtool, "test", "rules", *files)
    assert output.count("SUCCESS") == len(files)


def test_every_dashboard_query_is_valid_promql(promtool: str, tmp_path: Path) -> None:
    # promtool parses rule files only: each query becomes a recording rule of a scratch file.
    queries = dashboard_queries()
    assert queries
    rules = [
        {"record": f"dashboard_query_{index}", "expr": query.expr}
        for index, query in enumerate(queries)
    ]
    scratch = tmp_path / "dashboard_queries.yaml"
    scratch.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    try:
        run(promtool, "check", "rules", scratch)
    except AssertionError:
        for index, query in enumerate(queries):
            print(f"dashboard_query_{index}: {query.where}: {query.expr}")
        raise

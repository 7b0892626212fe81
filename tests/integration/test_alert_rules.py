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


def test_the_drift_alert_fires_exactly_where_the_report_says_it_alerts(
    promtool: str, tmp_path: Path
) -> None:
    """The report shows the drift figure and whether it alerts (``dedup.reporting.nights``);
    the shipped rule computes it from the pushed figures. One batch per combination of
    predicted, observed and undecided counts, through the real rule: it must fire for exactly
    the batches the report marks."""
    from dedup.reporting.nights import Night

    groups = yaml.safe_load(RULES.read_text(encoding="utf-8"))["groups"]
    rule = next(
        r for g in groups for r in g["rules"] if r.get("alert") == "DedupFalseCandidatesDrift"
    )
    # the annotations quote the value: the scratch copy compares labels only
    scratch = tmp_path / "drift.yaml"
    bare = {k: v for k, v in rule.items() if k != "annotations"}
    scratch.write_text(yaml.safe_dump({"groups": [{"name": "drift", "rules": [bare]}]}))
    series, expected = [], []
    combos = [
        (e, o, u)
        for e in (0.0, 0.2, 2.0, 4.0, 5.0, 20.0, 40.0)
        for o in (0, 2, 4, 6, 12, 18, 100)
        for u in (0, 3)
    ]
    for index, (e, o, u) in enumerate(combos):
        batch = f"b{index}"
        for name, job, value in (
            ("dedup_search_expected_false_candidates", "dedup_match", e),
            ("push_time_seconds", "dedup_match", 0),
            ("dedup_report_observed_false_candidates", "report", o),
            ("dedup_report_undecided_candidate_pairs", "report", u),
        ):
            series.append(
                {"series": f'{name}{{job="{job}", batch="{batch}"}}', "values": f"{value}x3"}
            )
        if Night(batch, e, o, u).drift_alerts:
            expected.append({"exp_labels": {"severity": "warning", "batch": batch}})
    assert 5 < len(expected) < len(combos) / 2  # both answers are well represented
    test = {
        "rule_files": [str(scratch)],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": series,
                "alert_rule_test": [
                    {
                        "eval_time": "2m",
                        "alertname": "DedupFalseCandidatesDrift",
                        "exp_alerts": expected,
                    }
                ],
            }
        ],
    }
    file = tmp_path / "drift_test.yaml"
    file.write_text(yaml.safe_dump(test))
    assert "SUCCESS" in run(promtool, "test", "rules", file)

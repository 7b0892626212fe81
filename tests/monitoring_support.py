"""The monitoring files (the chart's files/, linked from deploy/) as the tests read them: the rule
file's alerts and recorded names, the dashboard's queries, and the metric names and label
matchers a PromQL expression uses.

The names come from a small tokenizer, not a full PromQL parser (promtool checks the syntax):
it drops strings, label matchers, ranges and the label lists of ``by``/``on``/..., then keeps
every identifier that is neither a function (followed by ``(``), a keyword nor a number::

    >>> sorted(metric_names('sum by (le) (rate(x_bucket{job="a"}[5m])) > on() group_left y'))
    ['x_bucket', 'y']
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
PROMETHEUS = ROOT / "deploy" / "prometheus"
# The rule file and the dashboard live in the Helm chart, which reads them with .Files.Get;
# deploy/prometheus/alerts.yaml and deploy/grafana/dedup.json are links to them.
CHART_FILES = ROOT / "helm" / "dedup" / "files"
RULES = CHART_FILES / "alerts.yaml"
RULE_TESTS = PROMETHEUS / "tests"
SCRAPE_CONFIG = PROMETHEUS / "prometheus.yml"
DASHBOARD = CHART_FILES / "dedup-dashboard.json"
LINKS = {PROMETHEUS / "alerts.yaml": RULES, ROOT / "deploy" / "grafana" / "dedup.json": DASHBOARD}
RUNBOOKS = ROOT / "docs" / "runbooks"
# The base of every runbook_url (alerts.yaml's header says how to change it).
RUNBOOK_BASE = "https://runbooks.dedup.example/"

# Names an expression may use that no dedup module exports: Prometheus's own per target and
# alert series, and the Pushgateway's time of each group's last push.
NOT_EXPORTED = frozenset({"up", "ALERTS", "ALERTS_FOR_STATE", "push_time_seconds"})

KEYWORDS = frozenset(
    {
        # binary operators and modifiers
        "and", "or", "unless", "atan2", "bool", "offset",
        "by", "without", "on", "ignoring", "group_left", "group_right",
        # aggregation operators (also written without a parenthesis right after them)
        "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values",
        "bottomk", "topk", "quantile", "limitk", "limit_ratio",
        # number literals
        "inf", "nan",
    }
)  # fmt: skip
LABEL_LISTS = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right"})

_STRING = r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|`[^`]*`'
_TOKEN = re.compile(
    rf"(?P<string>{_STRING})"
    r"|(?P<matchers>\{(?:" + _STRING + r"|[^{}\"'`])*\})"
    r"|(?P<range>\[[^\]]*\])"
    r"|(?P<number>(?:0x[0-9a-fA-F]+|(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)"
    r"(?:(?:ms|[smhdwy])(?:\d+(?:ms|[smhdwy]))*)?)"
    r"|(?P<name>[A-Za-z_:][A-Za-z0-9_:]*)"
    r"|(?P<other>\S)",
)
_MATCHER = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:\\.|[^"\\])*)"')
# Grafana's variables, with the value each stands for when an expression is checked.
_VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)\]\]")
VARIABLE_VALUES = {
    "__rate_interval": "5m",
    "__interval": "1m",
    "__range": "1d",
    "batch": "2026-12-01",
    "datasource": "prometheus",
}


def metric_names(expr: str) -> set[str]:
    """The metric names an expression selects (see the module docstring)."""
    tokens = [(m.lastgroup, m.group()) for m in _TOKEN.finditer(expr)]
    names: set[str] = set()
    index = 0
    while index < len(tokens):
        kind, text = tokens[index]
        following = tokens[index + 1] if index + 1 < len(tokens) else (None, "")
        index += 1
        if kind != "name":
            continue
        if text.lower() in KEYWORDS:
            if text in LABEL_LISTS and following == ("other", "("):
                while index < len(tokens) and tokens[index] != ("other", ")"):
                    index += 1  # the label names of by (...), on (...)
            continue
        if following != ("other", "("):  # not a function
            names.add(text)
    return names


def label_matchers(expr: str) -> list[tuple[str, str, str, str]]:
    """(metric, label, operator, value) of every label matcher of a selector with a name."""
    found = []
    tokens = list(_TOKEN.finditer(expr))
    for index, token in enumerate(tokens):
        if token.lastgroup != "matchers" or index == 0:
            continue
        before = tokens[index - 1]
        if before.lastgroup != "name" or before.end() != token.start():
            continue
        for label, op, value in _MATCHER.findall(token.group()):
            found.append((before.group(), label, op, value))
    return found


def as_promql(grafana_expr: str) -> str:
    """A dashboard query with Grafana's variables replaced by values PromQL accepts."""

    def value(match: re.Match[str]) -> str:
        name = next(group for group in match.groups() if group)
        if name.isdigit():
            return match.group()  # a regex reference ($1) in a string, not a variable
        assert name in VARIABLE_VALUES, f"no value to check the dashboard's ${name} with"
        return VARIABLE_VALUES[name]

    return _VARIABLE.sub(value, grafana_expr)


def rule_groups() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text(encoding="utf-8"))["groups"]
    assert isinstance(groups, list)
    return groups


def rules() -> list[dict[str, Any]]:
    return [rule for group in rule_groups() for rule in group["rules"]]


def alert_rules() -> list[dict[str, Any]]:
    return [rule for rule in rules() if "alert" in rule]


def recorded_names() -> set[str]:
    return {rule["record"] for rule in rules() if "record" in rule}


def dashboard() -> dict[str, Any]:
    loaded = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


def panels(board: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel, those inside collapsed rows included."""
    out = []
    for panel in board.get("panels", []):
        out.append(panel)
        out.extend(panel.get("panels", []))
    return out


@dataclass(frozen=True)
class Query:
    where: str  # the alert, recording rule, panel or variable it comes from
    expr: str  # PromQL, Grafana's variables already replaced


def rule_queries() -> list[Query]:
    return [Query(rule.get("alert") or rule["record"], rule["expr"]) for rule in rules()]


_LABEL_VALUES = re.compile(r"^\s*label_values\((?:(.*),)?\s*(\w+)\s*\)\s*$", re.S)


def dashboard_queries() -> list[Query]:
    """Every panel target's expression and every query variable's selector."""
    board = dashboard()
    found = []
    for panel in panels(board):
        for target in panel.get("targets", []):
            found.append(Query(f"panel {panel['title']!r}", as_promql(target["expr"])))
    for variable in board.get("templating", {}).get("list", []):
        if variable.get("type") != "query":
            continue
        query = variable["query"]
        text = query["query"] if isinstance(query, dict) else query
        match = _LABEL_VALUES.match(text)
        assert match, f"variable {variable['name']}: only label_values(...) is understood"
        if match.group(1):
            found.append(Query(f"variable {variable['name']}", as_promql(match.group(1))))
    return found


@contextmanager
def running_pushgateway() -> Iterator[str]:
    """A real Prometheus Pushgateway (Debian's package, installed by scripts/install-services)
    on a free loopback port, holding its groups in memory only (Debian's build persists them
    to one file under /var/lib by default, which would carry one run's pushes into the next);
    its base URL."""
    import pytest

    from tests.s3_support import free_port, wait_until_ready

    binary = shutil.which("prometheus-pushgateway")
    if binary is None:
        pytest.fail("prometheus-pushgateway is not installed: run scripts/install-services")
    url = f"http://127.0.0.1:{free_port()}"
    process = subprocess.Popen(
        [binary, f"--web.listen-address={url.removeprefix('http://')}", "--persistence.file="],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        if not wait_until_ready(f"{url}/-/ready", process, timeout_s=30):
            pytest.fail("the Pushgateway did not become ready")
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)

"""Every metric an alert, a recording rule or a dashboard query names is one the code
exports, and the label values they match on exist: a renamed metric or job breaks this test
instead of silencing an alert.

The exported names are collected from the registries the code builds (the batch jobs' run,
last-success and search registries, the review service's /metrics on a real migrated
database), not read from the source text."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable
from pathlib import Path

import pytest
import yaml
from prometheus_client import CollectorRegistry

import pipelines
from dedup.adjudication import database
from dedup.adjudication.cases import CaseState
from dedup.adjudication.context import Context
from dedup.adjudication.queue_metrics import service_registry
from dedup.observability.job_metrics import (
    SearchFigures,
    last_success_registry,
    observed_registry,
    run_registry,
    search_registry,
)
from dedup.settings import AdjudicationSettings
from pipelines.match import JOB as SEARCH_JOB
from pipelines.ray.embed import EmbedReport
from tests.monitoring_support import (
    NOT_EXPORTED,
    SCRAPE_CONFIG,
    Query,
    dashboard_queries,
    label_matchers,
    metric_names,
    recorded_names,
    rule_queries,
)

# Every field set, a fallback included, so that every optional series is there.
AUDITED = SearchFigures(
    engine="ivf_pq",
    probes=100,
    gallery_size=10_000,
    candidates=12,
    threshold=0.6,
    expected_false=1.5,
    seconds=2.0,
    audit_sampled=10,
    audit_exact_candidates=4,
    audit_found=3,
    audit_floor=0.95,
    audit_band_floor=0.7,
    audit_band_pairs=4,
    audit_band_found=3,
    fallback="nprobe 64",
)
# Figures of the jobs whose dedup_job_figure{figure} the queries may name.
SAMPLE_REPORTS = {
    "embed": EmbedReport(
        batch_id="b1",
        seconds=2.0,
        model_id="m",
        faces=4,
        embedded=4,
        already_embedded=0,
        actors=1,
        device="cpu",
    ),
}


def exposed_names(registries: Iterable[CollectorRegistry]) -> set[str]:
    """The sample names a scrape of the registries shows (a counter's ``_total``, a
    histogram's ``_bucket``, ``_sum`` and ``_count``), with or without samples yet."""
    names: set[str] = set()
    for registry in registries:
        for family in registry.collect():
            names |= {sample.name for sample in family.samples}
            if family.type == "counter":
                names.add(f"{family.name}_total")
            elif family.type == "histogram":
                names |= {f"{family.name}{suffix}" for suffix in ("_bucket", "_sum", "_count")}
            else:
                names.add(family.name)
    return names


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    folder = tmp_path_factory.mktemp("review")
    engine = database.connect(f"sqlite:///{folder / 'review.sqlite'}")
    try:
        database.migrate(engine)
        context = Context(database.sessions(engine), AdjudicationSettings())
        figures = {"seconds": 1.0, "rows_in": 3, "rows_out": 2, "rejected.NO_FACE": 1}
        return exposed_names(
            [
                run_registry(figures, 1.0, False, 0.0),
                last_success_registry(0.0),
                search_registry(AUDITED),
                observed_registry(2, 0),
                service_registry(context),
            ]
        )
    finally:
        engine.dispose()


def pushed_jobs() -> set[str]:
    """The ``job`` of every ``job_metrics(settings, "<job>", batch)`` call in pipelines/, and
    the search figures' own group."""
    jobs = {SEARCH_JOB}
    for path in Path(pipelines.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id == "job_metrics"
                and len(node.args) >= 2
                and isinstance(node.args[1], ast.Constant)
            ):
                jobs.add(str(node.args[1].value))
    return jobs


def scrape_jobs() -> set[str]:
    config = yaml.safe_load(SCRAPE_CONFIG.read_text(encoding="utf-8"))
    return {job["job_name"] for job in config["scrape_configs"]}


def all_queries() -> list[Query]:
    return rule_queries() + dashboard_queries()


def test_the_collected_names_are_the_code_s_metrics(exported: set[str]) -> None:
    # the collection is not empty-handed: one name of each registry
    assert {
        "dedup_job_failed",
        "dedup_job_figure",
        "dedup_job_last_success_timestamp_seconds",
        "dedup_search_recall_fallback",
        "dedup_search_audit_band_recall",
        "dedup_review_cases",
        "dedup_review_judgements_total",
        "dedup_review_claim_seconds_bucket",
        "dedup_review_http_responses_total",
        "dedup_review_catch_trial_judgements_total",
        "dedup_report_observed_false_candidates",
    } <= exported
    assert pushed_jobs() >= {"stage", "embed", "match", "enqueue", "apply", "report", "nightly"}


def test_every_metric_a_rule_or_the_dashboard_names_is_exported(exported: set[str]) -> None:
    allowed = exported | recorded_names() | NOT_EXPORTED
    queries = all_queries()
    used = {name for query in queries for name in metric_names(query.expr)}
    assert len(used) > 20  # the tokenizer found the names (a sanity floor, not a count)
    unknown = {
        f"{query.where}: {name}" for query in queries for name in metric_names(query.expr) - allowed
    }
    assert not unknown, f"names no dedup module exports: {sorted(unknown)}"


def known_values() -> dict[str, set[str]]:
    return {
        "job": pushed_jobs() | scrape_jobs(),
        "state": {state.value for state in CaseState},
        "figure": {key for report in SAMPLE_REPORTS.values() for key in report.figures()},
    }


def matches_some(op: str, value: str, known: set[str]) -> bool:
    if op in ("=", "!="):
        return value in known
    # each alternative of a regex matcher must match a value that exists
    return all(
        any(re.fullmatch(part, candidate) for candidate in known) for part in value.split("|")
    )


def test_every_label_value_a_rule_or_the_dashboard_matches_exists() -> None:
    known = known_values()
    wrong = []
    for query in all_queries():
        for metric, label, op, value in label_matchers(query.expr):
            if label in known and not matches_some(op, value, known[label]):
                wrong.append(f"{query.where}: {metric}{{{label}{op}{value!r}}}")
            if label == "figure":  # its job's report must be among the samples
                jobs = {m[3] for m in label_matchers(query.expr) if m[1] == "job"}
                assert jobs <= SAMPLE_REPORTS.keys(), f"{query.where}: add a sample report"
    assert not wrong, f"label values nothing exports: {wrong}"

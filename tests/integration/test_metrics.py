"""Batch metrics reach Prometheus: a real Pushgateway, and node_exporter's textfile format."""

from __future__ import annotations

import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from dedup.errors import DedupError
from dedup.observability.job_metrics import SearchFigures, publish, search_registry
from dedup.settings import MetricsSettings

AUDITED = SearchFigures(
    engine="ivfpq",
    probes=10_000,
    gallery_size=1_000_000,
    candidates=1_095,
    threshold=0.9101,
    expected_false=20.5,
    seconds=2.5,
    audit_sampled=100,
    audit_exact_candidates=12,
    audit_found=11,
    audit_floor=0.9,
)


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def scraped(url: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    with urllib.request.urlopen(f"{url}/metrics", timeout=5) as reply:
        return samples(reply.read().decode())


def test_the_audit_recall_is_pushed_per_batch_and_a_rerun_replaces_it(pushgateway: str) -> None:
    settings = MetricsSettings(pushgateway=pushgateway)
    assert publish(search_registry(AUDITED), settings, "dedup_match", "night-1") == [pushgateway]
    labels = frozenset({("job", "dedup_match"), ("batch", "night-1"), ("instance", "")})
    got = scraped(pushgateway)
    assert got[("dedup_search_candidate_recall", labels)] == pytest.approx(11 / 12)
    assert got[("dedup_search_recall_floor", labels)] == 0.9
    assert got[("dedup_search_expected_false_candidates", labels)] == 20.5
    assert got[("dedup_search_info", labels | {("engine", "ivfpq")})] == 1

    rerun = SearchFigures(**{**AUDITED.__dict__, "audit_found": 12})
    publish(search_registry(rerun), settings, "dedup_match", "night-1")
    got = scraped(pushgateway)
    recall = [v for (name, _), v in got.items() if name == "dedup_search_candidate_recall"]
    assert recall == [1.0]  # replaced, not a second series


def test_an_exact_search_has_no_audit_series(tmp_path: Path) -> None:
    exact = SearchFigures("exact", 10, 100, 3, 0.9, None, 0.1)
    publish(search_registry(exact), MetricsSettings(textfile_dir=tmp_path), "dedup_match", "b2")
    names = {name for name, _ in samples((tmp_path / "dedup_match-b2.prom").read_text())}
    assert "dedup_search_candidates" in names
    assert not any("audit" in n or "recall" in n or "expected_false" in n for n in names)


def test_the_textfile_holds_the_same_figures(tmp_path: Path) -> None:
    sent = publish(
        search_registry(AUDITED), MetricsSettings(textfile_dir=tmp_path), "dedup_match", "b1"
    )
    assert sent == [str(tmp_path / "dedup_match-b1.prom")]
    got = samples(Path(sent[0]).read_text())
    assert got[("dedup_search_candidate_recall", frozenset())] == pytest.approx(11 / 12)
    assert got[("dedup_search_probes", frozenset())] == 10_000


def test_nowhere_configured_sends_nothing_and_a_dead_gateway_is_a_clear_error() -> None:
    assert publish(search_registry(AUDITED), MetricsSettings(), "dedup_match", "b") == []
    dead = MetricsSettings(pushgateway="http://127.0.0.1:9", push_timeout_s=2)
    with pytest.raises(DedupError, match="could not push metrics"):
        publish(search_registry(AUDITED), dead, "dedup_match", "b")

"""A batch's published figures are removed once it is older than ``metrics.retention_days``:
from a real Pushgateway through its API, and from the textfile collector's folder; nothing
else there is touched."""

from __future__ import annotations

import datetime as dt
import logging
import os
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import push_to_gateway

from dedup.errors import DedupError
from dedup.observability.job_metrics import job_metrics, last_success_registry, publish
from dedup.observability.retention import DAY_S, batch_groups, prune_published
from dedup.settings import MetricsSettings
from pipelines.report import PUBLISHED_JOBS, prune_quietly
from tests.conftest import make_settings
from tests.integration.test_job_metrics import Figures, job_group, run_group
from tests.integration.test_metrics import scraped

RETENTION_S = 35 * DAY_S


def groups(url: str) -> set[frozenset[tuple[str, str]]]:
    return {labels for _, labels in scraped(url)}


def test_a_batch_s_groups_stay_for_the_retention_and_are_then_deleted(pushgateway: str) -> None:
    settings = MetricsSettings(pushgateway=pushgateway, retention_days=35)
    for batch in ("keep-1", "a/b"):  # "/" is outside the batch-id alphabet, not the gateway's
        with job_metrics(settings, "t_prune", batch) as metrics:
            metrics.done(Figures(seconds=1.0, rows_in=1, rows_out=1))
    pushed = time.time()
    assert prune_published(settings, {"t_prune"}, pushed + RETENTION_S - 60).groups == ()
    assert {run_group("t_prune", "keep-1"), run_group("t_prune", "a/b")} <= groups(pushgateway)

    pruned = prune_published(settings, {"t_prune"}, pushed + RETENTION_S + 60)
    assert sorted(pruned.groups) == ["t_prune/a/b", "t_prune/keep-1"]
    left = groups(pushgateway)
    assert run_group("t_prune", "keep-1") not in left
    assert run_group("t_prune", "a/b") not in left
    assert job_group("t_prune") in left  # the job's last success is not a batch's group
    assert prune_published(settings, {"t_prune"}, pushed + RETENTION_S + 60).groups == ()


def test_only_the_given_jobs_groups_by_job_and_batch_are_pruned(pushgateway: str) -> None:
    settings = MetricsSettings(pushgateway=pushgateway, retention_days=1)
    registry = last_success_registry(1.0)
    publish(registry, settings, "t_mine", "b1")
    publish(registry, settings, "t_theirs", "b1")  # another system's job on a shared gateway
    publish(registry, settings, "t_mine", None)
    extra = frozenset({("job", "t_mine"), ("batch", "b1"), ("instance", "node-7")})
    push_to_gateway(pushgateway, "t_mine", registry, {"batch": "b1", "instance": "node-7"})
    pruned = prune_published(settings, {"t_mine"}, time.time() + 2 * DAY_S)
    assert pruned.groups == ("t_mine/b1",)
    left = groups(pushgateway)
    assert run_group("t_theirs", "b1") in left
    assert job_group("t_mine") in left
    assert extra in left  # grouped by more than job and batch: not a group the jobs push


def test_old_metric_files_of_the_jobs_are_unlinked_and_nothing_else(tmp_path: Path) -> None:
    settings = MetricsSettings(textfile_dir=tmp_path, retention_days=35)
    for job, batch in (("t_file", "old"), ("t_file", "new"), ("t_other", "old")):
        with job_metrics(settings, job, batch) as metrics:
            metrics.done(Figures(seconds=1.0, rows_in=1, rows_out=1))
    now = time.time()
    long_ago = now - RETENTION_S - 60
    (tmp_path / "t_file-link.prom").symlink_to(tmp_path / "t_file-old.prom")
    os.mkfifo(tmp_path / "t_file-fifo.prom")
    (tmp_path / "t_file-dir.prom").mkdir()
    (tmp_path / "t_file-old.txt").write_text("not a metrics file")
    for name in ("t_file-old.prom", "t_file@last-success.prom", "t_other-old.prom"):
        os.utime(tmp_path / name, (long_ago, long_ago))
    for name in ("t_file-link.prom", "t_file-fifo.prom", "t_file-dir.prom", "t_file-old.txt"):
        os.utime(tmp_path / name, (long_ago, long_ago), follow_symlinks=False)

    assert prune_published(settings, {"t_file"}, now).files == ("t_file-old.prom",)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "t_file-dir.prom",
        "t_file-fifo.prom",
        "t_file-link.prom",  # now dangling: a link is never followed nor removed
        "t_file-new.prom",
        "t_file-old.txt",
        "t_file@last-success.prom",
        "t_other-old.prom",
        "t_other@last-success.prom",
    ]
    assert prune_published(MetricsSettings(textfile_dir=tmp_path / "none"), {"t"}, now).files == ()


def test_an_unreachable_pushgateway_is_a_clear_error_and_the_report_only_logs_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    dead = MetricsSettings(pushgateway="127.0.0.1:9", push_timeout_s=2)
    with pytest.raises(DedupError, match=r"could not list the Pushgateway's groups at http://127"):
        prune_published(dead, {"stage"}, time.time())
    settings = make_settings(tmp_path / "lake", metrics={"pushgateway": "http://127.0.0.1:9"})
    with caplog.at_level(logging.WARNING):
        prune_quietly(settings, dt.datetime.now(dt.UTC))
    assert "old batches' metrics not pruned: could not list" in caplog.text


def test_the_pruned_jobs_are_every_job_that_publishes_by_batch() -> None:
    from tests.integration.test_metric_names import pushed_jobs

    assert pushed_jobs() == PUBLISHED_JOBS


JSON = st.recursive(
    st.none() | st.booleans() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=20,
)
GROUP = st.fixed_dictionaries(
    {"labels": st.fixed_dictionaries({"job": JSON, "batch": JSON})},
    optional={"push_time_seconds": JSON},
)


@given(st.lists(JSON | GROUP, max_size=6))
def test_any_listing_yields_only_job_and_batch_groups_with_a_number(listed: list[object]) -> None:
    for job, batch, pushed in batch_groups(listed):
        assert isinstance(job, str) and isinstance(batch, str)
        assert isinstance(pushed, float)

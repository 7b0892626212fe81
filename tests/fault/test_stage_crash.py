"""A stage run that crashes part-way, then runs again, leaves the tables a clean run leaves.

Crashes are injected at the job's named crash points (``dedup.crash_points``): raised in-process
between every pair of steps and after the last MERGE, and once as a hard process exit (what an
OOM kill does) from a separate ``dedup stage`` process.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from dedup.crash_points import CRASH_AT_ENV, CRASH_MODE_ENV
from dedup.demo.batch import DemoBatch, build_demo_batch
from dedup.errors import InjectedCrash
from tests.conftest import make_settings
from tests.support import snapshot, stage, table_rows

pytestmark = [pytest.mark.spark, pytest.mark.slow]

BATCH = "night-1"


@pytest.fixture(scope="module")
def batch(tmp_path_factory: pytest.TempPathFactory, portraits: Path) -> DemoBatch:
    return build_demo_batch(tmp_path_factory.mktemp("batches") / "b", portraits, seed=5)


@pytest.fixture(scope="module")
def clean(spark: Any, batch: DemoBatch, tmp_path_factory: pytest.TempPathFactory) -> Any:
    settings = make_settings(tmp_path_factory.mktemp("clean") / "lake")
    stage(spark, settings, BATCH, batch.manifest)
    return snapshot(spark, settings)


@pytest.mark.parametrize(
    ("point", "written"),
    [
        ("stage.after_manifest", set()),
        ("stage.after_results", set()),
        ("stage.after_faces", {"faces"}),
        ("stage.after_rejects", {"faces", "rejects"}),
        ("stage.after_enrollments", {"faces", "rejects", "enrollments"}),
    ],
)
def test_crash_then_rerun_gives_the_clean_tables(
    spark: Any,
    batch: DemoBatch,
    clean: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    point: str,
    written: set[str],
) -> None:
    settings = make_settings(tmp_path / "lake")
    monkeypatch.setenv(CRASH_AT_ENV, point)
    with pytest.raises(InjectedCrash):
        stage(spark, settings, BATCH, batch.manifest)
    before = snapshot(spark, settings, keep_times=True)
    assert {name for name, rows in before.items() if rows} == written  # what the crash left
    monkeypatch.delenv(CRASH_AT_ENV)
    stage(spark, settings, BATCH, batch.manifest)
    assert snapshot(spark, settings) == clean
    # What the crashed run wrote stays as it wrote it (times included): nothing is written twice.
    after = snapshot(spark, settings, keep_times=True)
    assert {name: after[name] for name in written} == {name: before[name] for name in written}


def test_process_killed_mid_merge_then_rerun_gives_the_clean_tables(
    spark: Any, batch: DemoBatch, clean: Any, tmp_path: Path
) -> None:
    settings = make_settings(tmp_path / "lake")
    env = {
        **os.environ,
        CRASH_AT_ENV: "stage.after_rejects",
        CRASH_MODE_ENV: "exit",
        "DEDUP_SPARK__MASTER": "local[2]",
        "DEDUP_SPARK__SHUFFLE_PARTITIONS": "2",
    }
    command = [sys.executable, "-m", "pipelines.cli", "stage", "--batch-id", BATCH]
    command += ["--manifest", str(batch.manifest), "--lake", settings.lake]
    killed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert killed.returncode == 137, killed.stderr[-2000:]
    assert table_rows(spark, settings, "faces") and not table_rows(spark, settings, "enrollments")
    stage(spark, settings, BATCH, batch.manifest)
    assert snapshot(spark, settings) == clean


def test_ids_of_a_crashed_batch_stay_its_own_until_it_is_rerun(
    spark: Any, batch: DemoBatch, clean: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Batch A crashes after writing faces; batch B, holding the same ids, runs before A is
    re-run. B must not take A's ids, and A's re-run must still give the clean tables."""
    settings = make_settings(tmp_path / "lake")
    monkeypatch.setenv(CRASH_AT_ENV, "stage.after_faces")
    with pytest.raises(InjectedCrash):
        stage(spark, settings, BATCH, batch.manifest)
    monkeypatch.delenv(CRASH_AT_ENV)
    copy = tmp_path / "copy"
    shutil.copytree(batch.folder, copy, symlinks=True)
    other = stage(spark, settings, "night-2", copy / batch.manifest.name)
    assert other.staged == 0
    assert other.rejected_by_reason["already_enrolled"] == len(clean["faces"])
    stage(spark, settings, BATCH, batch.manifest)
    mine = {
        name: [r for r in rows if r["batch_id"] == BATCH]
        for name, rows in snapshot(spark, settings).items()
    }
    assert mine == clean

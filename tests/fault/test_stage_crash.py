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

from dedup.contracts.schemas import STAGE_TABLES
from dedup.crash_points import CRASH_AT_ENV, CRASH_MODE_ENV
from dedup.demo.batch import DemoBatch, build_demo_batch
from dedup.errors import InjectedCrash
from dedup.settings import Settings
from tests.conftest import make_settings
from tests.support import delta_snapshot, stage

pytestmark = [pytest.mark.spark, pytest.mark.slow]

BATCH = "night-1"


@pytest.fixture(scope="module")
def batch(tmp_path_factory: pytest.TempPathFactory, portraits: Path) -> DemoBatch:
    """Every usable portrait once and every way a row can be rejected: rows in all three
    tables (the re-captures and converted formats would only add faces)."""
    folder = tmp_path_factory.mktemp("batches") / "b"
    return build_demo_batch(folder, portraits, seed=5, recaptures=0, conversions=False)


def tables(settings: Settings, *, keep_times: bool = False) -> dict[str, list[Any]]:
    """The stage job's tables, read with delta-rs (a table never written is empty)."""
    found = delta_snapshot(settings.lake, keep_times=keep_times)
    return {name: found[name] for name in STAGE_TABLES}


@pytest.fixture(scope="module")
def clean(spark: Any, batch: DemoBatch, tmp_path_factory: pytest.TempPathFactory) -> Any:
    settings = make_settings(tmp_path_factory.mktemp("clean") / "lake")
    stage(spark, settings, BATCH, batch.manifest)
    return tables(settings)


# Each crash point of the job, and the tables that hold rows once a run stops there.
CRASH_POINTS = [
    ("stage.after_manifest", set()),
    ("stage.after_results", set()),
    ("stage.after_faces", {"faces"}),
    ("stage.after_rejects", {"faces", "rejects"}),
    ("stage.after_enrollments", {"faces", "rejects", "enrollments"}),
]


def test_crashes_at_every_point_in_turn_then_a_rerun_give_the_clean_tables(
    spark: Any, batch: DemoBatch, clean: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A night that keeps failing: each run of the batch crashes one step later than the one
    before, on the same lake, and then a run completes. After each crash exactly the tables
    up to that point hold rows, and nothing an earlier run wrote is written again (its rows
    keep their times); the completed run leaves the tables a clean run leaves."""
    settings = make_settings(tmp_path / "lake")
    kept: dict[str, list[Any]] = {}
    for point, written in CRASH_POINTS:
        monkeypatch.setenv(CRASH_AT_ENV, point)
        with pytest.raises(InjectedCrash):
            stage(spark, settings, BATCH, batch.manifest)
        now = tables(settings, keep_times=True)
        assert {name for name, rows in now.items() if rows} == written, point
        assert {name: now[name] for name in kept} == kept, point
        kept = {name: now[name] for name in written}
    monkeypatch.delenv(CRASH_AT_ENV)
    stage(spark, settings, BATCH, batch.manifest)
    assert tables(settings) == clean
    after = tables(settings, keep_times=True)
    assert {name: after[name] for name in kept} == kept


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
    left = tables(settings)
    assert left["faces"] and not left["enrollments"]
    stage(spark, settings, BATCH, batch.manifest)
    assert tables(settings) == clean


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
        name: [r for r in rows if r["batch_id"] == BATCH] for name, rows in tables(settings).items()
    }
    assert mine == clean

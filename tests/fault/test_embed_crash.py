"""An embed run that crashes leaves the templates table a clean run leaves, once it has run
again: a Ray worker killed mid-job (Ray restarts it and retries its batch), and the job
stopped after every template is computed, just before its one Delta commit."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dedup.crash_points import CRASH_AT_ENV, CRASH_MARKER_ENV
from dedup.demo.batch import DemoBatch
from dedup.errors import InjectedCrash
from dedup.settings import Settings
from pipelines.lake.batch_run import BatchRun
from tests.night_support import EMBED_BATCH as BATCH
from tests.night_support import copy_lake, staged_ids, templates

pytestmark = [pytest.mark.spark, pytest.mark.slow]


def test_a_worker_killed_mid_job_leaves_every_template_once(
    staged_embed_lake: Settings, embed_batch: DemoBatch, tmp_path: Path
) -> None:
    """The first embedding batch kills its worker process; Ray restarts it and retries."""
    settings = copy_lake(staged_embed_lake, tmp_path)
    marker = tmp_path / "killed"
    config = tmp_path / "dedup.yaml"
    config.write_text(settings.to_json(), encoding="utf-8")  # JSON is YAML
    env = {
        **os.environ,
        CRASH_AT_ENV: "embed.worker_batch",
        CRASH_MARKER_ENV: str(marker),
        "RAY_AUTH_MODE": "disabled",
    }
    command = [sys.executable, "-m", "pipelines.cli", "embed", "--batch-id", BATCH]
    command += ["--config", str(config)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert marker.is_file()  # a worker really died
    assert int(marker.read_text()) != os.getpid()
    ids = templates(settings).to_pyarrow_table()["enrollment_id"].to_pylist()
    assert len(ids) == len(set(ids))
    assert set(ids) == staged_ids(embed_batch)


def template_rows(settings: Settings) -> list[dict[str, Any]]:
    """The templates table's rows by enrollment, without the commit time."""
    rows = templates(settings).to_pyarrow_table().drop_columns(["created_at"]).to_pylist()
    return sorted(rows, key=lambda r: (r["enrollment_id"], r["model_id"]))


def test_a_crash_before_the_commit_then_a_rerun_gives_the_clean_templates(
    staged_embed_lake: Settings,
    embed_batch: DemoBatch,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from pipelines.lake.delta_rs import DeltaRsTables
    from pipelines.ray.embed import run_embed

    settings = copy_lake(staged_embed_lake, tmp_path / "crashed")
    clean = copy_lake(staged_embed_lake, tmp_path / "clean")
    run_embed(BatchRun(BATCH, clean))

    monkeypatch.setenv(CRASH_AT_ENV, "embed.before_commit")
    with pytest.raises(InjectedCrash):
        run_embed(BatchRun(BATCH, settings))
    assert DeltaRsTables(settings.lake).open("templates") is None  # nothing was committed
    monkeypatch.delenv(CRASH_AT_ENV)
    report = run_embed(BatchRun(BATCH, settings))

    assert (report.embedded, report.already_embedded) == (len(staged_ids(embed_batch)), 0)
    ours, theirs = template_rows(settings), template_rows(clean)
    ids = [r["enrollment_id"] for r in ours]
    assert len(ids) == len(set(ids)) and set(ids) == staged_ids(embed_batch)
    assert [(r["enrollment_id"], r["batch_id"], r["model_id"]) for r in ours] == [
        (r["enrollment_id"], r["batch_id"], r["model_id"]) for r in theirs
    ]
    np.testing.assert_allclose(
        [r["vector"] for r in ours], [r["vector"] for r in theirs], rtol=0, atol=1e-6
    )

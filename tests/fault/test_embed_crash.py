"""An embed run that crashes leaves the templates table a clean run leaves, once it has run
again: a Ray worker killed mid-job (Ray restarts it and retries its batch)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from dedup.crash_points import CRASH_AT_ENV, CRASH_MARKER_ENV
from dedup.demo.batch import DemoBatch
from tests.night_support import EMBED_BATCH as BATCH
from tests.night_support import settings_for, staged_ids, templates
from tests.support import stage

pytestmark = [pytest.mark.spark, pytest.mark.slow]


def test_a_worker_killed_mid_job_leaves_every_template_once(
    spark: Any, embed_batch: DemoBatch, dlib_model: Path, tmp_path: Path
) -> None:
    """The first embedding batch kills its worker process; Ray restarts it and retries."""
    settings = settings_for(tmp_path / "lake", dlib_model)
    stage(spark, settings, BATCH, embed_batch.manifest)
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

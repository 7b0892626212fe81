"""The embed job on a local Ray cluster with the exported dlib model, over a staged demo batch."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dedup.crash_points import CRASH_AT_ENV, CRASH_MARKER_ENV
from dedup.demo.batch import DemoBatch, build_demo_batch
from dedup.errors import LakeError
from dedup.models.dlib_onnx import ensure_dlib_export
from dedup.settings import Settings
from pipelines.lake.batch_run import BatchRun
from tests.conftest import make_settings
from tests.support import stage

pytestmark = [pytest.mark.spark, pytest.mark.slow]

BATCH = "embed-1"


@pytest.fixture(scope="module")
def batch(tmp_path_factory: pytest.TempPathFactory, portraits: Path) -> DemoBatch:
    return build_demo_batch(tmp_path_factory.mktemp("batches") / "b", portraits, seed=11)


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("models") / "dlib-resnet-v1.onnx"
    ensure_dlib_export(path)
    return path


def settings_for(lake: Path, model: Path) -> Settings:
    spec = {"dlib-resnet-v1": {**_default_spec(), "onnx": str(model)}}
    return make_settings(lake, models=spec, embed={"batch_size": 8, "cpus_per_actor": 1})


def _default_spec() -> dict[str, Any]:
    return Settings().model_spec.model_dump()


@pytest.fixture(scope="module")
def staged(
    spark: Any, batch: DemoBatch, model: Path, tmp_path_factory: pytest.TempPathFactory
) -> Settings:
    settings = settings_for(tmp_path_factory.mktemp("embed") / "lake", model)
    stage(spark, settings, BATCH, batch.manifest)
    return settings


def templates(settings: Settings) -> Any:
    from deltalake import DeltaTable

    return DeltaTable(f"{settings.lake}/templates")


def staged_ids(batch: DemoBatch) -> set[str]:
    return {r.enrollment_id for r in batch.expected if r.expected_status == "staged"}


@pytest.fixture(scope="module")
def embedded(staged: Settings, batch: DemoBatch) -> Any:
    from pipelines.ray.embed import run_embed

    return run_embed(BatchRun(BATCH, staged))


def test_one_unit_template_per_staged_face(
    staged: Settings, batch: DemoBatch, embedded: Any
) -> None:
    assert embedded.embedded == len(staged_ids(batch)) > 10
    rows = templates(staged).to_pyarrow_table().to_pylist()
    ids = [r["enrollment_id"] for r in rows]
    assert sorted(ids) == sorted(staged_ids(batch))
    assert {(r["model_id"], r["batch_id"]) for r in rows} == {("dlib-resnet-v1", BATCH)}
    vectors = np.array([r["vector"] for r in rows], dtype=np.float32)
    assert vectors.shape == (len(rows), 128)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_rerunning_changes_nothing(staged: Settings, embedded: Any) -> None:
    from pipelines.ray.embed import run_embed

    table = templates(staged)
    version, rows = table.version(), table.to_pyarrow_table()
    again = run_embed(BatchRun(BATCH, staged))
    assert (again.embedded, again.already_embedded) == (0, embedded.embedded)
    table = templates(staged)
    assert table.version() == version
    assert table.to_pyarrow_table().equals(rows)


def test_recaptures_of_one_person_score_above_the_review_threshold_others_below(
    staged: Settings, batch: DemoBatch, embedded: Any
) -> None:
    person = {r.enrollment_id: r.person for r in batch.expected}
    rows = templates(staged).to_pyarrow_table().to_pylist()
    assert len({person[r["enrollment_id"]] for r in rows}) >= 2
    threshold = staged.matching.review_threshold
    same: list[float] = []
    different: list[float] = []
    for a, b in itertools.combinations(rows, 2):
        score = float(np.dot(a["vector"], b["vector"]))
        (same if person[a["enrollment_id"]] == person[b["enrollment_id"]] else different).append(
            score
        )
    assert same and different
    assert min(same) > threshold > max(different)


def test_a_batch_that_was_not_staged_is_refused(staged: Settings) -> None:
    from pipelines.ray.embed import run_embed

    with pytest.raises(LakeError, match="dedup stage"):
        run_embed(BatchRun("never-staged", staged))


def test_a_worker_killed_mid_job_leaves_every_template_once(
    spark: Any, batch: DemoBatch, model: Path, tmp_path: Path
) -> None:
    """The first embedding batch kills its worker process; Ray restarts it and retries."""
    settings = settings_for(tmp_path / "lake", model)
    stage(spark, settings, BATCH, batch.manifest)
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
    assert set(ids) == staged_ids(batch)

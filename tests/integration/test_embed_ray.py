"""The embed job on a local Ray cluster with the exported dlib model, over a staged demo batch."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pytest

from dedup.demo.batch import DemoBatch
from dedup.errors import LakeError
from dedup.settings import Settings
from pipelines.lake.batch_run import BatchRun
from tests.night_support import EMBED_BATCH as BATCH
from tests.night_support import copy_lake, staged_ids, templates

pytestmark = [pytest.mark.spark, pytest.mark.slow]


@pytest.fixture(scope="module")
def staged(staged_embed_lake: Settings, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return copy_lake(staged_embed_lake, tmp_path_factory.mktemp("embed"))


@pytest.fixture(scope="module")
def embedded(staged: Settings, embed_batch: DemoBatch) -> Any:
    from pipelines.ray.embed import run_embed

    return run_embed(BatchRun(BATCH, staged))


def test_one_unit_template_per_staged_face(
    staged: Settings, embed_batch: DemoBatch, embedded: Any
) -> None:
    assert embedded.embedded == len(staged_ids(embed_batch)) > 10
    rows = templates(staged).to_pyarrow_table().to_pylist()
    ids = [r["enrollment_id"] for r in rows]
    assert sorted(ids) == sorted(staged_ids(embed_batch))
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
    staged: Settings, embed_batch: DemoBatch, embedded: Any
) -> None:
    person = {r.enrollment_id: r.person for r in embed_batch.expected}
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

"""The stage job on real local Spark with Delta, over the demo batch (real portraits,
re-captures, conversions and a hostile row for every reason code)."""

from __future__ import annotations

import hashlib
import io
import shutil
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from dedup.contracts.reasons import RejectReason
from dedup.contracts.schemas import STAGE_TABLES, STATUS_REJECTED, STATUS_STAGED, TABLES
from dedup.demo.batch import DemoBatch, build_demo_batch
from dedup.settings import Settings
from tests.conftest import make_settings
from tests.support import snapshot, stage, table_rows

pytestmark = [pytest.mark.spark, pytest.mark.slow]


@pytest.fixture(scope="module")
def batch(tmp_path_factory: pytest.TempPathFactory, portraits: Path) -> DemoBatch:
    return build_demo_batch(tmp_path_factory.mktemp("batches") / "b1", portraits)


@pytest.fixture(scope="module")
def staged(
    spark: Any, batch: DemoBatch, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Settings, Any]:
    settings = make_settings(tmp_path_factory.mktemp("stage") / "lake")
    report = stage(spark, settings, "batch-1", batch.manifest)
    return settings, report


def test_every_row_gets_its_expected_verdict(
    spark: Any, batch: DemoBatch, staged: tuple[Settings, Any]
) -> None:
    settings, report = staged
    rows = table_rows(spark, settings, "enrollments")
    verdicts = {r["row_index"]: r["reason_code"] for r in rows}
    assert verdicts == batch.expected_reasons()
    expected = batch.expected_reasons()
    assert report.staged == sum(1 for r in expected.values() if r is None) > 10
    assert report.rows == len(expected)
    for row in rows:
        assert row["batch_id"] == "batch-1"
        assert row["status"] == (STATUS_STAGED if row["reason_code"] is None else STATUS_REJECTED)


def test_every_reason_but_already_enrolled_is_exercised(staged: tuple[Settings, Any]) -> None:
    _, report = staged
    assert set(report.rejected_by_reason) == {r.value for r in RejectReason} - {
        RejectReason.ALREADY_ENROLLED.value,
        RejectReason.INTERNAL_ERROR.value,
    }


def test_faces_hold_one_aligned_chip_per_staged_row(
    spark: Any, batch: DemoBatch, staged: tuple[Settings, Any]
) -> None:
    settings, _ = staged
    enrollments = table_rows(spark, settings, "enrollments")
    staged_ids = {r["enrollment_id"] for r in enrollments if r["status"] == STATUS_STAGED}
    faces = table_rows(spark, settings, "faces")
    assert {f["enrollment_id"] for f in faces} == staged_ids
    assert len(faces) == len(staged_ids)
    paths = {r["enrollment_id"]: r["photo_path"] for r in enrollments}
    for face in faces:
        chip = Image.open(io.BytesIO(face["chip_png"]))
        assert (chip.size, chip.mode) == ((150, 150), "RGB")
        assert face["alignment"] == "dlib-150"
        assert len(face["landmarks"]) == 10
        photo = (batch.folder / paths[face["enrollment_id"]]).read_bytes()
        assert face["photo_sha256"] == hashlib.sha256(photo).hexdigest()
        box = face["box"]
        assert 0 <= box["left"] < box["right"] <= face["image_width"] + 5
        assert face["quality"]["sharpness"] >= settings.quality.min_sharpness
        assert face["quality"]["inter_eye_px"] >= settings.quality.min_inter_eye_px


def test_rejects_carry_one_reason_and_a_detail_per_rejected_row(
    spark: Any, staged: tuple[Settings, Any]
) -> None:
    settings, _ = staged
    enrollments = table_rows(spark, settings, "enrollments")
    rejects = table_rows(spark, settings, "rejects")
    rejected = {r["row_index"]: r["reason_code"] for r in enrollments if r["reason_code"]}
    assert {r["row_index"]: r["reason_code"] for r in rejects} == rejected
    assert all(r["detail"] for r in rejects)
    bomb = [r for r in rejects if r["reason_code"] == RejectReason.IMAGE_TOO_LARGE.value]
    assert "900000000 pixels" in bomb[0]["detail"]


def test_display_fields_are_kept_for_adjudicators(
    spark: Any, batch: DemoBatch, staged: tuple[Settings, Any]
) -> None:
    settings, _ = staged
    rows = table_rows(spark, settings, "enrollments")
    good = next(r for r in rows if r["status"] == STATUS_STAGED)
    assert good["given_name"] and good["family_name"] and good["date_of_birth"]
    assert good["captured_at"].tzinfo is None or good["captured_at"].utcoffset().seconds == 0


def test_tables_have_the_declared_schemas(spark: Any, staged: tuple[Settings, Any]) -> None:
    from pipelines.lake.spark_delta import SparkTables
    from pipelines.spark.arrow_types import spark_schema

    settings, _ = staged
    for name in STAGE_TABLES:
        schema = TABLES[name]
        actual = SparkTables(spark, settings.lake).read(name).schema
        assert [(f.name, f.dataType) for f in actual] == [
            (f.name, f.dataType) for f in spark_schema(schema)
        ]


def test_staging_the_same_batch_twice_leaves_identical_tables(
    spark: Any, batch: DemoBatch, staged: tuple[Settings, Any]
) -> None:
    settings, _ = staged
    before = snapshot(spark, settings, keep_times=True)
    report = stage(spark, settings, "batch-1", batch.manifest)
    assert snapshot(spark, settings, keep_times=True) == before
    assert report.staged == len(before["faces"])


def test_an_id_staged_by_an_earlier_batch_is_rejected_not_overwritten(
    spark: Any, batch: DemoBatch, tmp_path: Path, portraits: Path
) -> None:
    settings = make_settings(tmp_path / "lake")
    stage(spark, settings, "first", batch.manifest)
    faces_before = table_rows(spark, settings, "faces")
    again = tmp_path / "again"
    shutil.copytree(batch.folder, again, symlinks=True)
    report = stage(spark, settings, "second", again / batch.manifest.name)
    assert report.staged == 0
    assert report.rejected_by_reason[RejectReason.ALREADY_ENROLLED.value] == len(faces_before)
    second = [r for r in table_rows(spark, settings, "enrollments") if r["batch_id"] == "second"]
    already = [r for r in second if r["reason_code"] == RejectReason.ALREADY_ENROLLED.value]
    assert {r["enrollment_id"] for r in already} == {f["enrollment_id"] for f in faces_before}
    assert table_rows(spark, settings, "faces") == faces_before


def test_a_json_lines_manifest_stages_like_csv(spark: Any, tmp_path: Path, portraits: Path) -> None:
    batch = build_demo_batch(
        tmp_path / "jl", portraits, seed=3, manifest_format="jsonl", recaptures=0, conversions=False
    )
    settings = make_settings(tmp_path / "lake")
    stage(spark, settings, "jsonl", batch.manifest)
    verdicts = {
        r["row_index"]: r["reason_code"] for r in table_rows(spark, settings, "enrollments")
    }
    assert verdicts == batch.expected_reasons()

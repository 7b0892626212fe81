"""The stage's per-row steps through both runners, held to the same assertions: the
sequential runner (``dedup.intake.sequential``: one process, no engine) and Spark's
(``stage_results``: ``mapInArrow``, a window count, a join with the lake).

They run on the demo batch (every reason code but ``internal_error``), with the same capture
window, in a lake where an earlier batch has staged two of its ids, so ``already_enrolled``
is reached as well.
"""

from __future__ import annotations

import csv
import datetime as dt
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from dedup.contracts.reasons import RejectReason
from dedup.contracts.schemas import STATUS_REJECTED, STATUS_STAGED
from dedup.demo.batch import DemoBatch, build_demo_batch
from dedup.intake.manifest_reader import read_manifest
from dedup.intake.manifest_rules import CaptureWindow
from dedup.intake.sequential import STAGE_RESULTS, stage_sequentially
from dedup.settings import Settings
from tests.conftest import make_settings
from tests.support import stage

pytestmark = [pytest.mark.spark, pytest.mark.slow]

PRIOR, BATCH = "runners-0", "runners-1"
RUNNERS = ("sequential", "spark")
Rows = list[dict[str, Any]]


@pytest.fixture(scope="module")
def batch(tmp_path_factory: pytest.TempPathFactory, portraits: Path) -> DemoBatch:
    return build_demo_batch(tmp_path_factory.mktemp("batches") / "b", portraits, seed=21)


def prior_manifest(batch: DemoBatch, ids: set[str]) -> Path:
    """A manifest of the batch's rows holding ``ids``, in the batch's own folder."""
    with batch.manifest.open(newline="", encoding="utf-8") as handle:
        header, *records = list(csv.reader(handle))
    path = batch.manifest.with_name("prior.csv")
    with path.open("w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows([header, *(r for r in records if r[0] in ids)])
    return path


@pytest.fixture(scope="module")
def held(batch: DemoBatch) -> dict[str, str]:
    """Two staged ids of the batch, held by the earlier batch."""
    ids = sorted(r.enrollment_id for r in batch.expected if r.expected_status == STATUS_STAGED)
    return {enrollment_id: PRIOR for enrollment_id in ids[:2]}


@pytest.fixture(scope="module")
def lake(
    spark: Any, batch: DemoBatch, held: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Settings:
    settings = make_settings(tmp_path_factory.mktemp("runners") / "lake")
    report = stage(spark, settings, PRIOR, prior_manifest(batch, set(held)))
    assert report.staged == len(held)
    return settings


def run_sequential(
    spark: Any, settings: Settings, batch: DemoBatch, window: CaptureWindow, held: dict[str, str]
) -> Rows:
    raw = read_manifest(batch.manifest)
    return stage_sequentially(  # type: ignore[no-any-return]
        raw, BATCH, batch.folder, settings, window, held_elsewhere=held
    ).to_pylist()


def run_spark(
    spark: Any, settings: Settings, batch: DemoBatch, window: CaptureWindow, held: dict[str, str]
) -> Rows:
    """Spark's verdicts as the job writes them (``_work/stage/<batch>/results``), read back."""
    from pipelines.spark.stage import stage_results

    raw = read_manifest(batch.manifest)
    work = Path(settings.lake) / "_work" / "runners"
    work.mkdir(parents=True)
    pq.write_table(raw, work / "manifest.parquet")
    results = stage_results(
        spark, BATCH, str(work / "manifest.parquet"), batch.folder, settings, raw.num_rows, window
    )
    results.write.parquet(str(work / "results"))
    table = pq.read_table(work / "results")
    assert table.column_names == STAGE_RESULTS.names
    return table.to_pylist()  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def verdicts(
    spark: Any, lake: Settings, batch: DemoBatch, held: dict[str, str]
) -> dict[str, dict[int, dict[str, Any]]]:
    """Each runner's verdict rows by row index, for the same batch, lake and window."""
    window = CaptureWindow.for_batch(lake.manifest, dt.datetime.now(dt.UTC))
    found = {}
    for name, runner in (("sequential", run_sequential), ("spark", run_spark)):
        rows = runner(spark, lake, batch, window, held)
        found[name] = {row["row_index"]: row for row in rows}
        assert len(found[name]) == len(rows)  # every row once
    return found


def answer_sheet(batch: DemoBatch, held: dict[str, str]) -> dict[int, str | None]:
    """The batch's answer sheet, with the ids the earlier batch holds already enrolled."""
    ids = {row.row_index: row.enrollment_id for row in batch.expected}
    return {
        index: RejectReason.ALREADY_ENROLLED.value if ids[index] in held else reason
        for index, reason in batch.expected_reasons().items()
    }


@pytest.mark.parametrize("runner", RUNNERS)
def test_every_row_gets_the_verdict_its_answer_sheet_gives(
    verdicts: dict[str, dict[int, dict[str, Any]]],
    batch: DemoBatch,
    held: dict[str, str],
    runner: str,
) -> None:
    rows = verdicts[runner]
    assert {i: row["reason_code"] for i, row in rows.items()} == answer_sheet(batch, held)
    for row in rows.values():
        assert row["batch_id"] == BATCH
        if row["reason_code"] is None:
            assert row["status"] == STATUS_STAGED and row["detail"] is None
            assert row["chip_png"].startswith(b"\x89PNG") and len(row["landmarks"]) == 10
        else:
            assert row["status"] == STATUS_REJECTED and row["detail"]
            assert row["chip_png"] is None
    already = [r["detail"] for r in rows.values() if r["enrollment_id"] in held]
    assert already == [f"enrollment_id was staged by batch {PRIOR}"] * len(held)


def test_each_row_gets_the_same_verdict_and_detail_from_both_runners(
    verdicts: dict[str, dict[int, dict[str, Any]]],
) -> None:
    sequential, spark = verdicts["sequential"], verdicts["spark"]
    assert sequential.keys() == spark.keys()

    def verdict(row: dict[str, Any]) -> tuple[str, str | None, str | None]:
        return row["status"], row["reason_code"], row["detail"]

    differ = {
        index: (verdict(row), verdict(spark[index]))
        for index, row in sequential.items()
        if verdict(row) != verdict(spark[index])
    }
    assert differ == {}
    # The rest of each row too: the fields as validated, and a staged row's face columns.
    assert [index for index, row in sequential.items() if row != spark[index]] == []

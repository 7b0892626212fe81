"""``dedup report`` on a real matched lake: the two match batches staged, embedded and matched,
a ``batch_runs`` row per match step and an ``outcomes`` table written with delta-rs under the
declared schemas; report.json agrees with the tables, report.html embeds PNGs that decode and
names no enrollment."""

from __future__ import annotations

import base64
import datetime as dt
import io
import json
import re
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from PIL import Image
from typer.testing import CliRunner

from dedup.contracts.schemas import BATCH_RUNS, OUTCOMES
from dedup.demo.batch import DemoBatch
from dedup.settings import Settings
from pipelines.cli import app
from pipelines.lake.delta_rs import DeltaRsTables
from pipelines.report import write_report
from tests.night_support import FIRST, SECOND, candidates, match, staged_people

pytestmark = [pytest.mark.spark, pytest.mark.slow]
T0 = dt.datetime(2026, 12, 1, 22, 0, tzinfo=dt.UTC)


def write(settings: Settings, name: str, rows: list[dict[str, Any]], schema: pa.Schema) -> None:
    from deltalake import write_deltalake

    write_deltalake(f"{settings.lake}/{name}", pa.Table.from_pylist(rows, schema), mode="append")


def batch_run(batch_id: str, report: Any, night: int) -> dict[str, Any]:
    started = T0 + dt.timedelta(days=night)
    return {
        "batch_id": batch_id,
        "step": "match",
        "started_at": started,
        "finished_at": started + dt.timedelta(seconds=report.seconds),
        "figures": json.dumps(report.figures()),
        "settings_hash": "0" * 64,
    }


def outcome(eid: str, batch: str, status: str, identity: str) -> dict[str, Any]:
    return {
        "enrollment_id": eid,
        "batch_id": batch,
        "status": status,
        "duplicate_of": None if identity == eid else identity,
        "identity_id": identity,
        "case_id": None,
        "decided_by": None,
        "decided_at": None,
        "changed_at": T0,
    }


def pngs(page: str) -> list[Image.Image]:
    found: list[Image.Image] = []
    for data in re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page):
        image = Image.open(io.BytesIO(base64.b64decode(data)))
        image.load()
        found.append(image)
    return found


def test_the_report_of_a_matched_night_agrees_with_its_tables(
    match_lake: Settings, match_batches: list[DemoBatch]
) -> None:
    first, second = match(match_lake, FIRST, ray=False), match(match_lake, SECOND, ray=False)
    write(match_lake, "batch_runs", [batch_run(FIRST, first, 0), batch_run(SECOND, second, 1)],
          BATCH_RUNS)  # fmt: skip
    # The truth of the demo batches decides: each second-batch person is the first batch's
    # capture of them; one probe with candidates is left pending.
    people_first = staged_people(match_batches[0])
    person_of = {**people_first, **staged_people(match_batches[1])}
    first_of = {person: eid for eid, person in people_first.items()}
    rows = candidates(match_lake)
    probes = sorted({r["probe_id"] for r in rows if r["batch_id"] == SECOND})
    pending = probes[0]
    outcomes = [outcome(e, FIRST, "unique", e) for e in people_first]
    for eid, person in staged_people(match_batches[1]).items():
        status = "pending_review" if eid == pending else "duplicate"
        outcomes.append(outcome(eid, SECOND, status, first_of[person]))
    write(match_lake, "outcomes", outcomes, OUTCOMES)

    written = write_report(match_lake, SECOND)
    assert written.json == Path(match_lake.lake) / "reports" / SECOND / "report.json"
    got = json.loads(written.json.read_text(encoding="utf-8"))

    tables = DeltaRsTables(match_lake.lake)
    enrollments = tables.read("enrollments", ["batch_id", "enrollment_id", "reason_code"])
    assert enrollments is not None
    mine = [r for r in enrollments.to_pylist() if r["batch_id"] == SECOND]
    assert got["rows"] == len(mine)
    assert got["staged"] == sum(r["reason_code"] is None for r in mine)
    rejected: dict[str, int] = {}
    for r in mine:
        if r["reason_code"] is not None:
            rejected[r["reason_code"]] = rejected.get(r["reason_code"], 0) + 1
    assert got["rejected_by_reason"] == rejected
    assert got["outcomes"]["pending_review"] == 1
    assert got["outcomes"]["duplicate"] == len(staged_people(match_batches[1])) - 1

    batch_rows = [r for r in rows if r["batch_id"] == SECOND]
    assert got["candidates"]["total"] == len(batch_rows) == second.candidates > 0
    assert got["candidates"]["gallery"] == sum(r["source"] == "gallery" for r in batch_rows)
    assert sum(b["gallery"] + b["batch"] for b in got["bands"]) == len(batch_rows)
    assert got["threshold"] == pytest.approx(match_lake.matching.review_threshold)
    assert got["target_fpir"] is None  # the configured threshold
    assert got["expected_false"] == second.figures()["expected_false"]
    assert [s["step"] for s in got["steps"]] == ["match"]
    assert got["steps"][0]["rows_in"] == second.probes

    pairs = {
        (min(r["probe_id"], r["candidate_id"]), max(r["probe_id"], r["candidate_id"]))
        if r["source"] == "batch"
        else (r["probe_id"], r["candidate_id"])
        for r in batch_rows
        if pending not in (r["probe_id"], r["candidate_id"])
    }
    false = sum(person_of[a] != person_of[b] for a, b in pairs)
    assert got["observed"]["false"] == false
    assert got["observed"]["decided"] == len(pairs)
    assert got["observed"]["undecided"] >= 1
    assert [n["batch_id"] for n in got["nights"]] == [FIRST, SECOND]
    assert got["catch_trials"] is None  # no review database in this lake

    page = written.html.read_text(encoding="utf-8")
    images = pngs(page)
    assert len(images) == 3  # scores, decided scores, nights
    assert all(image.format == "PNG" and image.size[0] > 100 for image in images)
    for eid in {r["enrollment_id"] for r in enrollments.to_pylist() if r["enrollment_id"]}:
        assert eid not in page
        assert eid not in written.json.read_text(encoding="utf-8")

    result = CliRunner().invoke(app, ["report", "--batch-id", SECOND, "--lake", match_lake.lake])
    assert result.exit_code == 0, result.output
    printed = " ".join(result.output.split())
    assert f"batch {SECOND}: {len(mine)} rows" in printed
    assert str(written.html) in result.output.replace("\n", "")


def test_a_batch_the_lake_does_not_know_is_refused_by_name(settings: Settings) -> None:
    result = CliRunner().invoke(app, ["report", "--batch-id", "nope", "--lake", settings.lake])
    assert result.exit_code == 2
    assert "batch 'nope' is not in the lake" in " ".join(result.output.split())

"""``dedup demo --no-serve``, the real command in its own process: one whole night (stage on
Spark, embed on Ray, match, enqueue) on the demo batch, then the same command again.

The first run must stage every row as the batch's answer sheet says, write the Delta tables
and put a case in the review queue for every group of probes that matched each other; the
second must find all of it done and add nothing. About 40 photos: under two minutes a run
on two cores, 3.5 for the test.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from dedup.adjudication import database
from dedup.adjudication.tables import CaseCandidate, CaseMember, CaseRow
from dedup.contracts.schemas import TABLES
from dedup.demo.batch import read_demo_batch
from pipelines.cli.batch import DEMO_BATCH_ID
from tests.review_support import expected_cases
from tests.support import delta_snapshot

pytestmark = [pytest.mark.spark, pytest.mark.slow]


def demo(workdir: Path) -> str:
    """Run ``dedup demo --no-serve``; its console output, on one line."""
    env = {
        **os.environ,
        "DEDUP_SPARK__MASTER": "local[2]",
        "DEDUP_SPARK__SHUFFLE_PARTITIONS": "2",
        "RAY_AUTH_MODE": "disabled",
    }
    command = [sys.executable, "-m", "pipelines.cli", "demo", "--no-serve"]
    done = subprocess.run(
        [*command, "--workdir", str(workdir)], env=env, capture_output=True, text=True, timeout=1500
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return " ".join(done.stdout.split())


Queued = list[tuple[str, str, list[str], list[tuple[str, str]]]]


def review_queue(lake: Path) -> Queued:
    """Every case: (case id, probe, its members, its candidates with their source), sorted."""
    engine = database.connect(f"sqlite:///{lake / 'adjudication.sqlite'}")
    try:
        with database.sessions(engine)() as db:
            probes = {case.case_id: case.probe_id for case in db.scalars(select(CaseRow))}
            found: dict[str, list[tuple[str, str]]] = {case_id: [] for case_id in probes}
            members: dict[str, list[str]] = {case_id: [] for case_id in probes}
            for candidate in db.scalars(select(CaseCandidate)):
                found[candidate.case_id].append((candidate.candidate_id, candidate.source))
            for member in db.scalars(select(CaseMember)):
                members[member.case_id].append(member.enrollment_id)
    finally:
        engine.dispose()
    return sorted(
        (case_id, probes[case_id], sorted(members[case_id]), sorted(found[case_id]))
        for case_id in probes
    )


def test_the_demo_night_matches_its_answer_sheet_and_a_second_run_adds_nothing(
    tmp_path: Path,
) -> None:
    workdir = tmp_path / "demo"
    lake = workdir / "lake"
    first = demo(workdir)
    batch = read_demo_batch(workdir / "batches" / DEMO_BATCH_ID)
    rows = len(batch.expected)
    assert rows >= 40
    assert f"{rows} of {rows} rows got the verdict the answer sheet gives" in first

    tables: dict[str, list[dict[str, Any]]] = delta_snapshot(str(lake), keep_times=True)
    assert set(tables) == set(TABLES) and all(tables.values())
    staged = {r["enrollment_id"] for r in tables["enrollments"] if r["status"] == "staged"}
    assert staged == {r.enrollment_id for r in batch.expected if r.expected_status == "staged"}
    assert {r["enrollment_id"] for r in tables["templates"]} == staged
    queue = review_queue(lake)
    expected = expected_cases(
        [(r["probe_id"], r["candidate_id"], r["source"], r["score"]) for r in tables["candidates"]]
    )
    # One case per group of probes that matched each other, every probe in one.
    assert sorted(probe for _, probe, _, _ in queue) == sorted(expected)
    for _, probe, members, found in queue:
        group, shown = expected[probe]
        assert members == sorted(group)
        assert found == sorted((c, source) for c, (source, _) in shown.items())

    second = demo(workdir)
    assert f"{rows} of {rows} rows got the verdict the answer sheet gives" in second
    assert delta_snapshot(str(lake), keep_times=True) == tables
    assert review_queue(lake) == queue

"""``dedup demo --no-serve``, the real command in its own process: two nights (stage on
Spark, embed on Ray, match, enqueue, apply, report), every case decided through the review
API by two demo adjudicators, the decisions applied; then the same command again.

The first run must stage every row as the answer sheets say, catch every second-night photo
against the photo of the same person that seeded the gallery, and end with one identity per
person; the second must find all of it done and change no table.
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
from pipelines.demo_nights import NIGHTS
from pipelines.steps import STEPS
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


def test_two_demo_nights_catch_the_recaptures_and_a_second_run_changes_nothing(
    tmp_path: Path,
) -> None:
    workdir = tmp_path / "demo"
    lake = workdir / "lake"
    first = demo(workdir)
    batches = [read_demo_batch(workdir / "batches" / night) for night in NIGHTS]
    for batch in batches:
        rows = len(batch.expected)
        assert f"{rows} of {rows} rows got the verdict the answer sheet gives" in first
    assert "the demo adjudicators judged through the API" in first
    assert "outcomes" in first and "identities" in first

    tables: dict[str, list[dict[str, Any]]] = delta_snapshot(str(lake), keep_times=True)
    assert set(tables) == set(TABLES) and all(tables.values())
    people = {
        r.enrollment_id: r.person
        for b in batches
        for r in b.expected
        if r.expected_status == "staged"
    }
    assert {r["enrollment_id"] for r in tables["templates"]} == set(people)
    seeds = {
        r.person: r.enrollment_id for r in batches[0].expected if r.expected_status == "staged"
    }
    assert set(seeds) == {"obama", "biden"}
    outcomes = {r["enrollment_id"]: r for r in tables["outcomes"]}
    assert set(outcomes) == set(people)
    for enrollment, person in people.items():
        row = outcomes[enrollment]
        # one identity per person, named after the night-1 photo that seeded the gallery
        assert row["identity_id"] == seeds[person], row
        if enrollment in seeds.values():
            assert row["status"] in ("unique", "not_duplicate"), row
        else:  # every second-night photo was caught and decided a duplicate of the seed
            assert (row["status"], row["duplicate_of"]) == ("duplicate", seeds[person]), row
            assert len(row["decided_by"]) == 2  # four eyes
    identities = {r["enrollment_id"]: r["identity_id"] for r in tables["identities"]}
    assert identities == {e: seeds[p] for e, p in people.items()}
    assert {r["step"] for r in tables["batch_runs"]} == set(STEPS)
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
    assert queue and all(state.startswith("decided") for state in decided(lake))

    second = demo(workdir)
    assert "done on an earlier run" in second
    assert delta_snapshot(str(lake), keep_times=True) == tables
    assert review_queue(lake) == queue


def decided(lake: Path) -> list[str]:
    """The state of every real case of the review queue."""
    engine = database.connect(f"sqlite:///{lake / 'adjudication.sqlite'}")
    try:
        with database.sessions(engine)() as db:
            rows = db.scalars(select(CaseRow).where(CaseRow.catch_pair_id.is_(None)))
            return [row.state for row in rows]
    finally:
        engine.dispose()

"""The apply job on a small lake (written with delta-rs) and a real review database: decisions
become outcomes and identities, once; a supervisor's revision splits; a crash between any two
of its writes is repaired by a re-run.

The lake: batch b1 staged g1 and g2 (no candidates); batch b2 staged p1, p2 and p3, where p1
matched g1 in the gallery and p2 and p3 matched each other within the batch (one case).
"""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from dedup.adjudication import operations
from dedup.adjudication.access import Actor, Role
from dedup.adjudication.applied import audited_targets
from dedup.adjudication.cases import Judgement, Outcome
from dedup.adjudication.context import opened
from dedup.adjudication.payloads import BatchImport, CandidateIn
from dedup.contracts.schemas import CANDIDATES, CANDIDATES_TABLE, ENROLLMENTS, STATUS_STAGED
from dedup.errors import InjectedCrash
from dedup.settings import Settings
from pipelines.apply import run_apply
from pipelines.lake.batch_run import BatchRun
from pipelines.lake.delta_rs import DeltaRsTables
from pipelines.match import RESULTS_FILE
from tests.conftest import make_settings
from tests.support import delta_snapshot

AT = datetime(2026, 12, 1, 20, 0, tzinfo=UTC)
ROWS = {"b1": ["g1", "g2"], "b2": ["p1", "p2", "p3"]}
FOUND = [("p1", "g1", 0.97, "gallery"), ("p2", "p3", 0.95, "batch"), ("p3", "p2", 0.95, "batch")]
ANN, BOB = Actor.local("ann", Role.ADJUDICATOR), Actor.local("bob", Role.ADJUDICATOR)
SUE = Actor.local("sue", Role.SUPERVISOR)


def lake_with_two_batches(root: Path, database_url: str | None = None) -> Settings:
    review = {"hide_scores_until_judgement": False, "database_url": database_url}
    settings = make_settings(root / "lake", adjudication=review)
    tables = DeltaRsTables(settings.lake)
    enrollments = [
        {"batch_id": b, "row_index": i, "enrollment_id": e, "status": STATUS_STAGED,
         "consent": True, "staged_at": AT.replace(hour=n)}
        for n, (b, ids) in enumerate(ROWS.items())
        for i, e in enumerate(ids)
    ]  # fmt: skip
    tables.insert_new("enrollments", pa.Table.from_pylist(enrollments, ENROLLMENTS))
    found = [
        {"batch_id": "b2", "model_id": settings.model, "probe_id": p, "candidate_id": c,
         "score": s, "rank": 1, "source": src, "matched_at": AT}
        for p, c, s, src in FOUND
    ]  # fmt: skip
    tables.insert_new("candidates", pa.Table.from_pylist(found, CANDIDATES_TABLE))
    for batch in ROWS:  # both batches were searched
        work = BatchRun(batch, settings).begin("match")
        work.write_parquet(RESULTS_FILE, CANDIDATES.empty_table())
    payload = BatchImport(
        model_id=settings.model,
        candidates=[
            CandidateIn(probe_id=p, candidate_id=c, score=s, rank=1, source=src)
            for p, c, s, src in FOUND
        ],
    )
    with opened(settings) as context:
        operator = Actor.local("pipeline", Role.OPERATOR)
        operations.import_candidates(context, operator, "b2", payload)
    return settings


@pytest.fixture(params=["sqlite", "postgresql"])
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    """The lake, with its review database on each backend in turn (SQLite in the lake)."""
    url = None
    if request.param == "postgresql":
        url = request.getfixturevalue("postgres_server").fresh_database()
    return lake_with_two_batches(tmp_path, url)


def decide(settings: Settings, duplicate_of: dict[str, str | None]) -> None:
    """Ann judges each case by its probe (``duplicate_of``), Bob confirms the duplicates."""
    with opened(settings) as context:
        for actor in (ANN, BOB):
            while (got := operations.claim(context, actor)) is not None:
                target = duplicate_of[got.case.probe_id]
                outcome = Outcome.NOT_DUPLICATE if target is None else Outcome.DUPLICATE
                token = got.case.lease.token if got.case.lease else ""
                operations.judge(
                    context, actor, got.case_id, token, Judgement(actor.username, outcome, target)
                )


def state(settings: Settings) -> dict[str, list[dict[str, Any]]]:
    return delta_snapshot(settings.lake)


def outcome_of(rows: dict[str, list[dict[str, Any]]], enrollment: str) -> tuple[Any, ...]:
    row = next(r for r in rows["outcomes"] if r["enrollment_id"] == enrollment)
    return row["status"], row["duplicate_of"], row["identity_id"]


def versions(settings: Settings) -> dict[str, int]:
    tables = DeltaRsTables(settings.lake)
    names = ("outcomes", "outcome_events", "identities", "identity_events", "links")
    return {name: tables.open(name).version() for name in names}


def test_before_any_decision_outcomes_say_unique_or_pending(settings: Settings) -> None:
    report = run_apply(settings)
    rows = state(settings)
    assert {r["enrollment_id"]: r["status"] for r in rows["outcomes"]} == {
        "g1": "unique", "g2": "unique",
        "p1": "pending_review", "p2": "pending_review", "p3": "pending_review",
    }  # fmt: skip
    assert report.decided == 0 and report.merges == 0
    assert {r["enrollment_id"]: r["identity_id"] for r in rows["identities"]} == {
        e: e for ids in ROWS.values() for e in ids
    }


def test_decisions_become_outcomes_and_identities_once(settings: Settings) -> None:
    run_apply(settings)
    decide(settings, {"p1": "g1", "p2": "p3"})
    report = run_apply(settings)
    rows = state(settings)
    assert outcome_of(rows, "p1") == ("duplicate", "g1", "g1")
    # one decision of the in-batch group: p2 and p3 are one person; p2 came first
    assert outcome_of(rows, "p2") == ("not_duplicate", None, "p2")
    assert outcome_of(rows, "p3") == ("duplicate", "p2", "p2")
    p1 = next(r for r in rows["outcomes"] if r["enrollment_id"] == "p1")
    assert sorted(p1["decided_by"]) == ["ann", "bob"] and p1["case_id"]
    assert report.merges == 2
    merges = sorted((e["identity_id"], tuple(e["others"])) for e in rows["identity_events"])
    assert merges == [("g1", ("p1",)), ("p2", ("p3",))]
    with opened(settings) as context:
        audited = audited_targets(context, "identity-event:")
    assert audited == {f"identity-event:{e['event_id']}" for e in rows["identity_events"]}

    before = versions(settings)
    again = run_apply(settings)  # nothing new: no table gets a new version
    assert versions(settings) == before
    assert again.outcomes_changed == 0 and again.merges == 0
    events = state(settings)["outcome_events"]
    assert len(events) == len({e["event_id"] for e in events}) == 5 + 3  # pending, then decided


def test_a_supervisors_revision_is_applied_again_as_a_split(settings: Settings) -> None:
    decide(settings, {"p1": "g1", "p2": "p3"})
    run_apply(settings)
    with opened(settings) as context:
        case_id = next(
            d.case_id for d in operations.export_decisions(context, SUE, "b2")
            if d.enrollment_id == "p1"
        )  # fmt: skip
        revised = Judgement("sue", Outcome.NOT_DUPLICATE, None, "different ear shape")
        operations.revise(context, SUE, case_id, revised)
    report = run_apply(settings)
    rows = state(settings)
    assert outcome_of(rows, "p1") == ("not_duplicate", None, "p1")
    assert report.splits == 1
    split = next(e for e in rows["identity_events"] if e["kind"] == "split")
    assert (split["identity_id"], split["others"]) == ("g1", ["p1"])
    assert f"case:{case_id}@1" in split["cause"]
    with opened(settings) as context:
        audited = audited_targets(context, "identity-event:")
    assert f"identity-event:{split['event_id']}" in audited
    history = [e["status"] for e in rows["outcome_events"] if e["enrollment_id"] == "p1"]
    assert sorted(history) == ["duplicate", "not_duplicate"]


@pytest.mark.parametrize("point", ["apply.after_events", "apply.after_audit",
                                   "apply.after_identities"])  # fmt: skip
def test_a_crash_between_writes_is_repaired_by_a_rerun(
    tmp_path: Path, settings: Settings, point: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    decide(settings, {"p1": "g1", "p2": "p3"})
    clean = lake_copy(settings, tmp_path / "clean")
    run_apply(clean)
    monkeypatch.setenv("DEDUP_CRASH_AT", point)
    with pytest.raises(InjectedCrash):
        run_apply(settings)
    monkeypatch.delenv("DEDUP_CRASH_AT")
    run_apply(settings)
    assert state(settings) == state(clean)
    with opened(settings) as context:
        events = {f"identity-event:{e['event_id']}" for e in state(settings)["identity_events"]}
        assert audited_targets(context, "identity-event:") == events


def lake_copy(settings: Settings, root: Path) -> Settings:
    shutil.copytree(settings.lake, root / "lake")
    return settings.model_copy(update={"lake": str(root / "lake")})

"""Catch trials over HTTP, on SQLite and PostgreSQL: an adjudicator's view of a trial (API
JSON, case page, compare page) holds none of the real case's ids; image views of its copies
are audited as views of catch-trial subjects that the log maps back; the export holds none
of the copies; accuracy is measured against the truth; a real import that names a copy's
id withdraws the trial."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from dedup.adjudication import audit_store, database
from dedup.adjudication.tables import CaseCandidate, CaseRow, CatchSubject, Subject
from tests.review_support import ReviewWorld, batch_payload, rows_payload


def _post_batch(world: ReviewWorld, batch: str, probes: int) -> None:
    body = batch_payload(probes, prefix=batch.upper() + "P")
    answer = world.client("operator").post(f"/api/v1/batches/{batch}/candidates", json=body)
    assert answer.status_code == 200, answer.text


def _decide(client: Any, outcome: str = "not_duplicate") -> dict[str, Any] | None:
    answer = client.post("/api/v1/cases/claim")
    if answer.status_code != 200 or not answer.json():
        return None
    case: dict[str, Any] = answer.json()
    body = {"lease_token": case["lease_token"], "outcome": outcome}
    assert client.post(f"/api/v1/cases/{case['case_id']}/judgement", json=body).status_code == 200
    return case


def test_a_catch_trial_shows_none_of_the_real_ids(world: ReviewWorld) -> None:
    _post_batch(world, "old", 1)
    source = _decide(world.client("ann"))
    assert source is not None
    real_ids = {source["case_id"], source["probe_id"]} | {
        c["candidate_id"] for c in source["candidates"]
    }
    sue = world.client("sue")
    pair = sue.post("/api/v1/catch-trials/pairs", params={"case_id": source["case_id"]})
    assert pair.status_code == 200, pair.text
    assert sue.put("/api/v1/catch-trials/rate", params={"rate": 0.5}).status_code == 200
    _post_batch(world, "new", 2)  # 0.5 x 2 new cases: one trial
    with database.sessions(world.engine)() as db:
        trial = db.scalars(select(CaseRow).where(CaseRow.catch_pair_id.is_not(None))).one()
        copies = {
            c: s for c, s in db.execute(select(CatchSubject.subject_id, CatchSubject.source_id))
        }
        shown = list(db.scalars(select(CaseCandidate.candidate_id).where(
            CaseCandidate.case_id == trial.case_id)))  # fmt: skip
    assert set(copies.values()) == real_ids - {source["case_id"]}

    bob = world.client("bob")
    seen = False
    while (answer := bob.post("/api/v1/cases/claim")).status_code == 200 and answer.json():
        case = answer.json()
        case_id, token = case["case_id"], case["lease_token"]
        if case_id == trial.case_id:
            seen = True
            pages = [answer.text, bob.get(f"/api/v1/cases/{case_id}").text,
                     bob.get(f"/cases/{case_id}").text,
                     bob.get(f"/cases/{case_id}/compare").text]  # fmt: skip
            for text in pages:
                assert not [i for i in real_ids if i in text], text
            assert trial.probe_id in pages[2]
            image = bob.get(f"/cases/{case_id}/images/{trial.probe_id}/chip")
            assert image.status_code == 200
            # Right: the truth is "not duplicate" (the ids named are the copies).
            body = {"lease_token": token, "outcome": "not_duplicate"}
        else:
            body = {"lease_token": token, "outcome": "duplicate",
                    "duplicate_of": case["candidates"][0]["candidate_id"]}  # fmt: skip
        assert bob.post(f"/api/v1/cases/{case_id}/judgement", json=body).status_code == 200
    assert seen and shown

    with database.sessions(world.engine)() as db:
        [viewed] = audit_store.search(db, actor="bob", action="image.view")
    assert viewed.target == f"catch-subject:{trial.probe_id}/chip"
    assert viewed.details["source"] == source["probe_id"]  # the supervisor maps it back

    exported = world.client("operator").get("/api/v1/decisions").text
    assert not [c for c in copies if c in exported] and trial.case_id not in exported
    [row] = sue.get("/api/v1/accuracy").json()
    assert (row["adjudicator"], row["trials"], row["correct"]) == ("bob", 1, 1)

    # A real enrollment that happens to bear a copy's id takes it back: the trial goes.
    body = rows_payload([(trial.probe_id, "G-REAL", "gallery", 0.95)])
    answer = world.client("operator").post("/api/v1/batches/later/candidates", json=body)
    assert answer.json()["cases_created"] == 1
    with database.sessions(world.engine)() as db:
        assert db.get(CaseRow, trial.case_id) is None
        assert db.get(CatchSubject, trial.probe_id) is None
        assert db.get(Subject, trial.probe_id) is not None  # the real one, imported now

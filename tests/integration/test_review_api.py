"""The review service over HTTP (in-process), on SQLite and PostgreSQL: logins and sessions,
the blind first judgement, audit of every view and decision, metrics and the OpenAPI document."""

from __future__ import annotations

import base64
import json
import logging
import re
from datetime import timedelta
from html.parser import HTMLParser
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from dedup.adjudication import audit_store, database, operations
from dedup.adjudication.access import Actor, Forbidden, Role
from dedup.adjudication.audit_chain import AuditEntry
from dedup.adjudication.cases import CaseState, Judgement, Outcome
from dedup.adjudication.context import Context
from dedup.adjudication.tables import AuditRow, Subject
from dedup.settings import AdjudicationSettings
from tests.review_support import (
    PASSWORD,
    ReviewWorld,
    batch_payload,
    png,
    review_world,
    rows_payload,
)


def entries(
    world: ReviewWorld, actor: str | None = None, action: str | None = None
) -> list[AuditEntry]:
    with database.sessions(world.engine)() as db:
        return list(reversed(audit_store.search(db, actor=actor, action=action, limit=1000)))


def imported(world: ReviewWorld, probes: int = 1) -> None:
    answer = world.client("operator").post(
        "/api/v1/batches/b1/candidates", json=batch_payload(probes)
    )
    assert answer.status_code == 200, answer.text


def claimed(client: TestClient) -> dict[str, Any]:
    answer = client.post("/api/v1/cases/claim")
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def test_login_needs_password_and_current_code_and_is_audited(world: ReviewWorld) -> None:
    client = world.client()
    good = world.credentials("ann")
    for wrong in ({**good, "totp": "000000"}, {**good, "password": "not the password"}):
        assert client.post("/api/v1/login", json=wrong).status_code == 401
    stale = {**good, "totp": "123456" if good["totp"] != "123456" else "654321"}
    assert client.post("/api/v1/login", json=stale).status_code == 401
    assert client.post("/api/v1/login", json=good).status_code == 200
    logins = entries(world, action="login", actor="ann")
    assert [e.outcome for e in logins] == ["refused", "refused", "refused", "ok"]
    assert logins[0].details == {"why": "bad_credentials"}


def test_a_code_is_good_for_one_login_only(world: ReviewWorld) -> None:
    client = world.client()
    body = world.credentials("ann")
    assert client.post("/api/v1/login", json=body).status_code == 200
    assert client.post("/api/v1/login", json=body).status_code == 401  # replayed
    assert entries(world, action="login", actor="ann")[-1].details == {"why": "bad_credentials"}
    assert client.post("/api/v1/login", json=world.credentials("ann")).status_code == 200


def test_session_cookie_is_secure_httponly_and_strict(world: ReviewWorld) -> None:
    answer = world.client().post("/api/v1/login", json=world.credentials("ann"))
    cookie = answer.headers["set-cookie"].lower()
    assert "secure" in cookie and "httponly" in cookie and "samesite=strict" in cookie


def test_repeated_failures_lock_the_account_for_a_while(world: ReviewWorld) -> None:
    client = world.client()
    for _ in range(5):
        client.post("/api/v1/login", json={**world.credentials("bob"), "password": "wrong!"})
    assert client.post("/api/v1/login", json=world.credentials("bob")).status_code == 401
    assert entries(world, action="login", actor="bob")[-1].details == {"why": "locked"}
    world.clock.now += timedelta(minutes=6)
    assert client.post("/api/v1/login", json=world.credentials("bob")).status_code == 200


def test_logins_from_one_address_are_throttled(review_engine: Any) -> None:
    world = review_world(review_engine, AdjudicationSettings(logins_per_client_per_minute=3))
    client = world.client()
    codes = [client.post("/api/v1/login", json=world.credentials("ann")).status_code
             for _ in range(4)]  # fmt: skip
    assert codes == [200, 200, 200, 429]
    assert entries(world, action="login")[-1].details == {
        "why": "too many attempts from this address"
    }


def test_sessions_end_after_idle_and_absolute_timeouts(world: ReviewWorld) -> None:
    client = world.client("operator")
    assert client.get("/api/v1/queue").status_code == 200
    world.clock.now += timedelta(minutes=16)
    assert client.get("/api/v1/queue").status_code == 401
    busy = world.client("operator")
    for _ in range(8 * 6 + 1):  # active every 10 minutes for over 8 hours
        world.clock.now += timedelta(minutes=10)
        answer = busy.get("/api/v1/queue")
    assert answer.status_code == 401


def test_scores_stay_hidden_until_the_first_judgement(world: ReviewWorld) -> None:
    imported(world)
    ann = world.client("ann")
    case = claimed(ann)
    assert case["scores_hidden"] and all(c["score"] is None for c in case["candidates"])
    page = ann.get(f"/cases/{case['case_id']}")
    assert 'class="score"' not in page.text and "Record judgement and show scores" in page.text
    judgement = {"lease_token": case["lease_token"], "outcome": "not_duplicate"}
    shown = ann.post(f"/api/v1/cases/{case['case_id']}/blind", json=judgement).json()
    assert not shown["scores_hidden"]
    assert [c["score"] for c in shown["candidates"]] == pytest.approx([0.97, 0.96])
    assert 'class="score"' in ann.get(f"/cases/{case['case_id']}").text
    changed = {**judgement, "outcome": "duplicate", "duplicate_of": "GP00000-0"}
    decided = ann.post(f"/api/v1/cases/{case['case_id']}/judgement", json=changed)
    assert decided.json()["state"] == "awaiting_second_review"
    [judged] = entries(world, action="case.judge")
    [blind] = entries(world, action="case.blind_judgement")
    assert blind.details["outcome"] == "not_duplicate" and judged.details["outcome"] == "duplicate"


def test_scores_can_be_shown_from_the_start(review_engine: Any) -> None:
    settings = AdjudicationSettings(hide_scores_until_judgement=False)
    world = review_world(review_engine, settings)
    imported(world)
    case = claimed(world.client("ann"))
    assert not case["scores_hidden"] and case["candidates"][0]["score"] == pytest.approx(0.97)


def test_every_view_and_decision_is_audited_without_secrets(
    world: ReviewWorld, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    imported(world)
    ann = world.client("ann")
    case = claimed(ann)
    case_id = case["case_id"]
    assert ann.get(f"/cases/{case_id}").status_code == 200
    image = ann.get(f"/cases/{case_id}/images/P00000/chip")
    assert image.status_code == 200 and image.content == png()
    body = {"lease_token": case["lease_token"], "outcome": "not_duplicate"}
    assert ann.post(f"/api/v1/cases/{case_id}/judgement", json=body).status_code == 200
    exported = world.client("operator").get("/api/v1/decisions", params={"batch_id": "b1"})
    assert exported.json()["decisions"][0]["decision"] == "not_duplicate"

    actions = [(e.actor, e.action, e.target) for e in entries(world)]
    for step in [
        ("operator", "batch.import", "batch:b1"),
        ("ann", "case.claim", f"case:{case_id}"),
        ("ann", "case.view", f"case:{case_id}"),
        ("ann", "image.view", "image:P00000/chip"),
        ("ann", "case.judge", f"case:{case_id}"),
        ("operator", "decisions.export", "batch:b1"),
    ]:
        assert step in actions, step
    with database.sessions(world.engine)() as db:
        stored = " ".join(
            f"{r.actor} {r.role} {r.action} {r.target} {r.client} {r.details}"
            for r in db.scalars(select(AuditRow))
        )
    secrets = [PASSWORD, world.secrets["ann"], case["lease_token"],
               base64.b64encode(png()).decode()[:40], ann.headers["X-CSRF-Token"],
               ann.cookies.get("dedup_session") or "no cookie"]  # fmt: skip
    logged = caplog.text
    for secret in secrets:
        assert secret not in stored and secret not in logged


def test_metrics_show_the_queue(world: ReviewWorld) -> None:
    imported(world, probes=3)
    ann = world.client("ann")
    case = claimed(ann)
    body = {"lease_token": case["lease_token"], "outcome": "not_duplicate"}
    ann.post(f"/api/v1/cases/{case['case_id']}/judgement", json=body)
    claimed(ann)
    world.clock.now += timedelta(minutes=1)
    text = world.client().get("/metrics").text
    assert 'dedup_review_cases{state="open"} 1.0' in text
    assert 'dedup_review_cases{state="in_review"} 1.0' in text
    assert 'dedup_review_cases{state="decided_not_duplicate"} 1.0' in text
    assert 'dedup_review_judgements_total{outcome="not_duplicate",stage="first"} 1.0' in text
    assert "dedup_review_oldest_open_case_age_seconds 60.0" in text
    assert "dedup_review_claim_seconds_count" in text
    # responses by route template (never the case id) and status class
    judged = 'route="/api/v1/cases/{case_id}/judgement"'
    assert re.search(rf'dedup_review_http_responses_total{{code="2xx",{judged}}} [1-9]', text)
    assert case["case_id"] not in text
    world.client().get("/no/such/page")
    again = world.client().get("/metrics").text
    assert re.search(r'dedup_review_http_responses_total\{code="4xx",route="unmatched"\} [1-9]',
                     again)  # fmt: skip


def test_the_openapi_document_is_published(world: ReviewWorld) -> None:
    document = world.client().get("/openapi.json").json()
    paths = document["paths"]
    assert "post" in paths["/api/v1/batches/{batch_id}/candidates"]
    assert "get" in paths["/api/v1/decisions"]
    assert "/cases/{case_id}" not in paths  # pages are not part of the API


def test_the_web_forms_carry_csrf_and_a_decision_goes_through(world: ReviewWorld) -> None:
    imported(world)
    browser = world.client()
    form = {**world.credentials("ann")}
    landed = browser.post("/login", data=form, follow_redirects=False)
    assert landed.status_code == 303 and landed.headers["location"] == "/queue"
    queue_page = browser.get("/queue").text
    csrf = queue_page.split('name="csrf_token" value="')[1].split('"')[0]
    assert browser.post("/queue/claim", data={}, follow_redirects=False).status_code == 403
    opened = browser.post("/queue/claim", data={"csrf_token": csrf}, follow_redirects=False)
    case_url = opened.headers["location"]
    page = browser.get(case_url).text
    token = page.split('name="lease_token" value="')[1].split('"')[0]
    choice = {"csrf_token": csrf, "lease_token": token, "choice": "not_duplicate"}
    assert browser.post(f"{case_url}/blind", data=choice, follow_redirects=False).status_code == 303
    done = browser.post(f"{case_url}/decide", data=choice)
    assert "decided not duplicate" in done.text
    assert entries(world, action="access.refused")[-1].details["why"] == (
        "missing or wrong CSRF token"
    )


def test_erasure_is_audited_and_removes_the_case(world: ReviewWorld) -> None:
    imported(world, probes=2)
    sue = world.client("sue")
    assert sue.post("/api/v1/erasures/P00000", json={}).status_code == 422  # no reason
    answer = sue.post("/api/v1/erasures/P00000", json={"reason": "court order 17"})
    assert answer.json() == {"enrollment_id": "P00000", "cases_removed": 1,
                             "candidate_rows_removed": 0, "subject_removed": True,
                             "records_removed": None, "identity_renamed_to": None,
                             "nothing_left": False}  # fmt: skip
    [entry] = entries(world, action="enrollment.erase")
    assert entry.target == "enrollment:P00000" and entry.details["reason"] == "court order 17"
    again = sue.post("/api/v1/erasures/P00000", json={"reason": "court order 17"}).json()
    assert again["nothing_left"] and not again["cases_removed"]
    assert sue.post("/api/v1/erasures/NOBODY", json={"reason": "r"}).status_code == 404
    depth = world.client("operator").get("/api/v1/queue").json()["depth"]
    assert depth["open"] == 1


HOSTILE_DISPLAY = {
    "given_name": "<script>alert(1)</script>",
    "family_name": '=HYPERLINK("http://example.invalid","click")',
    "sex": '"><img src=x onerror=alert(2)>',
    "place_of_birth": "\u202eevil.exe",
}


class _PageParts(HTMLParser):
    """The elements of a page and the text of each <dd> (display values are shown there)."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.values: list[str] = []
        self._in_dd = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag == "dd":
            self._in_dd += 1
            self.values.append("")

    def handle_endtag(self, tag: str) -> None:
        if tag == "dd":
            self._in_dd -= 1

    def handle_data(self, data: str) -> None:
        if self._in_dd:
            self.values[-1] += data


def test_display_fields_are_stored_as_given_and_shown_as_text(world: ReviewWorld) -> None:
    """Markup, formulas and direction overrides in a name reach the adjudicator as the text the
    operator sent, never as elements, attributes or a reordered page."""
    payload = batch_payload(1)
    payload["subjects"][0]["display"] = HOSTILE_DISPLAY
    payload["subjects"][0]["center_id"] = "<b>C-01</b>"
    answer = world.client("operator").post("/api/v1/batches/b1/candidates", json=payload)
    assert answer.status_code == 200, answer.text
    ann = world.client("ann")
    case = claimed(ann)
    with database.sessions(world.engine)() as db:
        stored = db.get(Subject, case["probe_id"])
        assert stored is not None and json.loads(stored.display) == HOSTILE_DISPLAY  # as given
    page = ann.get(f"/cases/{case['case_id']}")
    parts = _PageParts()
    parts.feed(page.text)
    assert {tag for tag, _ in parts.tags} >= {"dd", "bdi"}
    scripts = [attrs.get("src") for tag, attrs in parts.tags if tag == "script"]
    assert scripts == ["/static/review.js"]  # the page's own script and nothing else
    assert not [attrs for _, attrs in parts.tags if "onerror" in attrs]
    assert [attrs for tag, attrs in parts.tags if tag == "img"]  # the chips are there
    assert all(
        (attrs.get("src") or "").startswith("/cases/") for tag, attrs in parts.tags if tag == "img"
    )
    for value in [*HOSTILE_DISPLAY.values(), "<b>C-01</b>"]:
        assert value in parts.values
    assert page.text.count("<bdi>") >= len(HOSTILE_DISPLAY) + 1


def judged(client: TestClient, outcome: str, duplicate_of: str | None = None) -> str:
    """The client claims the next case and judges it; the case id."""
    case = claimed(client)
    body = {"lease_token": case["lease_token"], "outcome": outcome, "duplicate_of": duplicate_of}
    answer = client.post(f"/api/v1/cases/{case['case_id']}/judgement", json=body)
    assert answer.status_code == 200, answer.text
    return str(case["case_id"])


PAIR_BODY = rows_payload(
    [
        ("A", "B", "batch", 0.95),
        ("B", "A", "batch", 0.95),
        ("A", "G1", "gallery", 0.9),
    ]
)


def test_a_group_is_one_case_and_the_export_has_a_row_per_member(world: ReviewWorld) -> None:
    operator = world.client("operator")
    answer = operator.post("/api/v1/batches/b1/candidates", json=PAIR_BODY)
    assert answer.json()["cases_created"] == 1
    case = claimed(world.client("ann"))
    assert case["probe_id"] == "A"
    assert [(c["candidate_id"], c["source"]) for c in case["candidates"]] == [
        ("B", "batch"),
        ("G1", "gallery"),
    ]
    exported = operator.get("/api/v1/decisions", params={"batch_id": "b1"}).json()
    assert (exported["decided"], exported["pending"]) == (0, 2)
    assert [(d["enrollment_id"], d["case_id"], d["revision"]) for d in exported["decisions"]] == [
        ("A", case["case_id"], 0),
        ("B", case["case_id"], 0),
    ]


def test_a_supervisor_revises_a_duplicate_into_not_duplicate(world: ReviewWorld) -> None:
    operator = world.client("operator")
    operator.post("/api/v1/batches/b1/candidates", json=PAIR_BODY)
    case_id = judged(world.client("ann"), "duplicate", "G1")
    assert judged(world.client("bob"), "duplicate", "G1") == case_id
    sue = world.client("sue")
    change = {"outcome": "not_duplicate", "reason": "twins: the ears differ"}
    answer = sue.post(f"/api/v1/cases/{case_id}/revision", json=change)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"case_id": case_id, "state": "decided_by_supervisor", "revision": 1}
    exported = operator.get("/api/v1/decisions").json()
    assert exported["decided"] == 2
    for row in exported["decisions"]:
        assert (row["decision"], row["duplicate_of"], row["revision"]) == ("not_duplicate", None, 1)
        assert row["decided_by"] == ["ann", "bob", "sue"] and row["case_id"] == case_id
    [entry] = entries(world, action="case.revise")
    assert (entry.actor, entry.target, entry.role) == ("sue", f"case:{case_id}", "supervisor")
    assert entry.details == {
        "before_outcome": "duplicate",
        "before_duplicate_of": "G1",
        "outcome": "not_duplicate",
        "reason": "twins: the ears differ",
        "state": "decided_by_supervisor",
        "revision": "1",
    }


def test_a_revision_is_refused_unless_a_supervisor_gives_a_reason_on_a_decided_case(
    world: ReviewWorld,
) -> None:
    world.client("operator").post("/api/v1/batches/b1/candidates", json=PAIR_BODY)
    sue = world.client("sue")
    case_id = claimed(world.client("ann"))["case_id"]  # held by ann, not decided
    change = {"outcome": "not_duplicate", "reason": "checked"}
    undecided = sue.post(f"/api/v1/cases/{case_id}/revision", json=change)
    assert undecided.status_code == 409 and "only a decided case" in undecided.json()["detail"]
    for who in ("ann", "bob", "operator", "aude", "adam"):
        path = f"/api/v1/cases/{case_id}/revision"
        assert world.client(who).post(path, json=change).status_code == 403, who
        refusal = entries(world, actor=who, action="access.refused")[-1]
        assert refusal.details["path"] == path and refusal.outcome == "refused"
    assert sue.post("/api/v1/cases/ffff/revision", json=change).status_code == 404
    no_reason = sue.post(f"/api/v1/cases/{case_id}/revision", json={"outcome": "not_duplicate"})
    assert no_reason.status_code == 422
    blank = sue.post(f"/api/v1/cases/{case_id}/revision", json={**change, "reason": "   "})
    assert blank.status_code == 409
    assert entries(world, action="case.revise") == []


def test_the_revise_operation_itself_refuses_a_non_supervisor(world: ReviewWorld) -> None:
    """Callers other than the API (a command, a job) meet the same rule."""
    world.client("operator").post("/api/v1/batches/b1/candidates", json=PAIR_BODY)
    case_id = judged(world.client("ann"), "not_duplicate")
    context = Context(database.sessions(world.engine), AdjudicationSettings(), world.clock)
    change = Judgement("ann", Outcome.DUPLICATE, "G1", reason="changed my mind")
    with pytest.raises(Forbidden):
        operations.revise(context, Actor.local("ann", Role.ADJUDICATOR), case_id, change)
    refusal = entries(world, actor="ann", action="access.refused")[-1]
    assert refusal.target == f"case:{case_id}" and refusal.details["why"] == (
        "needs permission supervise"
    )
    boss = Judgement("sue", Outcome.DUPLICATE, "G1", reason="found the earlier photo")
    after = operations.revise(context, Actor.local("sue", Role.SUPERVISOR), case_id, boss)
    assert (after.state, after.revision, after.final) == (CaseState.DECIDED_BY_SUPERVISOR, 1, boss)

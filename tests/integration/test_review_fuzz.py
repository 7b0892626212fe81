"""Fuzzing the review service's JSON API from its own OpenAPI document (schemathesis 4).

Every operation in ``/openapi.json`` gets generated requests, valid and invalid, sent in-process
(ASGI) as a user holding every role, so no request stops at the permission check. The queue
holds real cases in every state the routes care about (open, held by the fuzzing user, decided,
escalated), and path and query ids, lease tokens, enrollment ids and role names are drawn from
the real ones as well as generated, so requests reach the code behind the validation. No answer
may be a server error (5xx), and no request may raise out of the app. The fuzzing runs on
SQLite; what it (and a run on PostgreSQL) found is pinned below as regression tests.

``schemathesis.pytest.from_fixture`` (a schema from a fixture) does not work with pytest 9.2
(it reads ``Node._nodeid``, which pytest 9.2 no longer has), so the schema is loaded at import
from the app's document, and each case is sent to the fixture's app.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi import Request
from fastapi.responses import JSONResponse, Response
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup, ServerError

from dedup.adjudication import operations
from dedup.adjudication.access import Role
from dedup.adjudication.service import create_app
from dedup.settings import AdjudicationSettings
from tests.review_support import (
    PostgresServer,
    ReviewWorld,
    batch_payload,
    migrated,
    review_world,
    sqlite_url,
)

FUZZER = "fuzzer"
MAX_EXAMPLES = 40
BASE_URL = "https://testserver"


def openapi_document() -> dict[str, Any]:
    """The service's OpenAPI document (read at collection, from an app on a throwaway
    database: the app refuses to start without a migrated one)."""
    with tempfile.TemporaryDirectory() as folder:
        engine = migrated(sqlite_url(Path(folder)))
        try:
            return create_app(AdjudicationSettings(), engine).openapi()
        finally:
            engine.dispose()


DOCUMENT = openapi_document()
schema = schemathesis.openapi.from_dict(DOCUMENT)


@dataclass(frozen=True)
class Fuzzing:
    """The world under fuzzing, the fuzzer's credentials, and real ids to steer requests to."""

    world: ReviewWorld
    headers: dict[str, str]
    case_ids: tuple[str, ...]
    enrollment_ids: tuple[str, ...]
    lease_token: str


def decide(world: ReviewWorld, adjudicator: str, outcome: str) -> str:
    """``adjudicator`` claims the next case and judges it; the case id."""
    client = world.client(adjudicator)
    claimed = client.post("/api/v1/cases/claim")
    assert claimed.status_code == 200, claimed.text
    case = claimed.json()
    body = {"lease_token": case["lease_token"], "outcome": outcome, "reason": "fixture"}
    judged = client.post(f"/api/v1/cases/{case['case_id']}/judgement", json=body)
    assert judged.status_code == 200, judged.text
    return str(case["case_id"])


@pytest.fixture(scope="module")
def fuzzing(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fuzzing]:
    engine = migrated(sqlite_url(tmp_path_factory.mktemp("fuzz")))
    world = review_world(engine)
    assert world.app.openapi() == DOCUMENT  # what is fuzzed is this app's own document
    payload = batch_payload(5, candidates_per_probe=3)
    imported = world.client("operator").post("/api/v1/batches/B1/candidates", json=payload)
    assert imported.status_code == 200, imported.text
    decided = decide(world, "ann", "not_duplicate")  # a catch pair may be made of it
    escalated = decide(world, "bob", "cannot_decide")  # a supervisor may decide it
    world.add_user(FUZZER, *Role)
    fuzzer = world.client(FUZZER)
    held = fuzzer.post("/api/v1/cases/claim").json()  # the fuzzer holds a case of its own
    cookie = fuzzer.cookies.get("dedup_session")
    assert cookie
    headers = {"Cookie": f"dedup_session={cookie}", "X-CSRF-Token": fuzzer.headers["X-CSRF-Token"]}
    enrollments = tuple(s["enrollment_id"] for s in payload["subjects"])
    yield Fuzzing(
        world, headers, (decided, escalated, held["case_id"]), enrollments, held["lease_token"]
    )
    engine.dispose()


def steer(case: schemathesis.Case[Any], data: st.DataObject, fuzzing: Fuzzing) -> None:
    """Swap generated values for real ones some of the time (Hypothesis picks, and shrinks)."""

    def pick(value: Any, real: tuple[Any, ...]) -> Any:
        return data.draw(st.sampled_from((value, *real)))

    for where in (case.path_parameters, case.query):
        if where is None:
            continue
        if "case_id" in where:
            where["case_id"] = pick(where["case_id"], fuzzing.case_ids)
        if "enrollment_id" in where:
            where["enrollment_id"] = pick(where["enrollment_id"], fuzzing.enrollment_ids)
        if "batch_id" in where:
            where["batch_id"] = pick(where["batch_id"], ("B1",))
    if isinstance(case.body, dict):
        if "lease_token" in case.body:
            case.body["lease_token"] = pick(case.body["lease_token"], (fuzzing.lease_token,))
        if isinstance(case.body.get("roles"), list):
            roles = st.lists(st.sampled_from([r.value for r in Role]), min_size=1, max_size=3)
            case.body["roles"] = pick(case.body["roles"], (data.draw(roles),))


def exchange(case: schemathesis.Case[Any], fuzzing: Fuzzing, app: Any) -> None:
    """Send ``case`` as the fuzzer; fail on a 5xx answer (an exception in the app raises)."""
    response = case.call(base_url=BASE_URL, headers=fuzzing.headers, app=app)
    case.validate_response(response, checks=[not_a_server_error])


@schema.parametrize()
@schema.given(data=st.data())
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
def test_no_request_makes_the_service_fail(
    case: schemathesis.Case[Any], data: st.DataObject, fuzzing: Fuzzing
) -> None:
    steer(case, data, fuzzing)
    exchange(case, fuzzing, fuzzing.world.app)


# ---------------------------------------------------------------- the check can fail


class Boom(Exception):
    pass


def boom(*_: Any, **__: Any) -> Any:
    raise Boom("a fault planted by the test")


def test_the_fuzzing_check_fails_on_a_server_error(
    fuzzing: Fuzzing, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Apps of their own on the same database, so the planted fault stays out of the fuzzed one.
    world = fuzzing.world
    raising = create_app(AdjudicationSettings(), world.engine, world.clock)
    answering = create_app(AdjudicationSettings(), world.engine, world.clock)

    async def as_500(_: Request, __: Exception) -> Response:
        return JSONResponse({"detail": "internal error"}, status_code=500)

    answering.add_exception_handler(Boom, as_500)
    case = schema["/api/v1/decisions"]["GET"].Case(query={"batch_id": "B1"})
    monkeypatch.setattr(operations, "export_decisions", boom)
    with pytest.raises(Boom):  # an exception escaping the app
        exchange(case, fuzzing, raising)
    with pytest.raises(FailureGroup) as failed:  # a 500 answer
        exchange(case, fuzzing, answering)
    assert failed.group_contains(ServerError)
    monkeypatch.undo()
    exchange(case, fuzzing, raising)  # without the fault, the same request passes
    exchange(case, fuzzing, answering)


# ---------------------------------------------------------------- server errors found


def lenient_client(world: ReviewWorld, username: str | None) -> TestClient:
    """A client that sees a server error as a 500 answer rather than an exception."""
    client = TestClient(world.app, base_url=BASE_URL, raise_server_exceptions=False)
    if username is not None:
        answer = client.post("/api/v1/login", json=world.credentials(username))
        assert answer.status_code == 200, answer.text
        client.headers["X-CSRF-Token"] = answer.json()["csrf_token"]
    return client


def test_the_user_form_refuses_an_unknown_role_without_a_server_error(fuzzing: Fuzzing) -> None:
    adam = lenient_client(fuzzing.world, "adam")
    form = {"username": "newcomer", "password": "a long enough password", "roles": ["wizard"]}
    answer = adam.post("/admin/users", data=form, follow_redirects=False)
    assert answer.status_code < 500, answer.text[:300]
    assert answer.status_code in (409, 422)


@pytest.fixture(scope="module")
def pg_world(postgres_server: PostgresServer) -> Iterator[ReviewWorld]:
    engine = migrated(postgres_server.fresh_database())
    world = review_world(engine)
    answer = world.client("operator").post("/api/v1/batches/B1/candidates", json=batch_payload(2))
    assert answer.status_code == 200, answer.text
    yield world
    engine.dispose()


def too_long_center() -> dict[str, Any]:
    payload = batch_payload(1, prefix="L")
    payload["subjects"][0]["center_id"] = "C" * 200  # over the column's 128
    return payload


def nul_model() -> dict[str, Any]:
    return {**batch_payload(1, prefix="N"), "model_id": "dlib\x00"}


NUL = "PostgreSQL refuses NUL (0x00) in text: psycopg DataError, unhandled (500)"
# (label, user, method, path, request keyword arguments, what once answered 500)
ON_POSTGRESQL: list[tuple[str, str | None, str, str, dict[str, Any], str]] = [
    ("login NUL", None, "POST", "/api/v1/login",
     {"json": {"username": "\x00", "password": "x", "totp": "0"}}, NUL),
    ("decisions NUL", "operator", "GET", "/api/v1/decisions",
     {"params": {"batch_id": "\x00"}}, NUL),
    ("case NUL", "sue", "GET", "/api/v1/cases/ab%00cd", {}, NUL),
    ("audit NUL", "aude", "GET", "/api/v1/audit", {"params": {"actor": "\x00"}}, NUL),
    ("import NUL", "operator", "POST", "/api/v1/batches/BN/candidates", {"json": nul_model()}, NUL),
    ("import center_id", "operator", "POST", "/api/v1/batches/BL/candidates",
     {"json": too_long_center()},
     "payloads.SubjectIn.center_id allows 200 characters, tables.Subject.center_id holds 128: "
     "PostgreSQL raises StringDataRightTruncation (500)"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("user", "method", "path", "kwargs"),
    [
        pytest.param(user, method, path, kwargs, id=label)
        for label, user, method, path, kwargs, _ in ON_POSTGRESQL
    ],
)  # fmt: skip
def test_bad_text_is_refused_on_postgresql_without_a_server_error(
    pg_world: ReviewWorld, user: str | None, method: str, path: str, kwargs: dict[str, Any]
) -> None:
    client = lenient_client(pg_world, user)
    answer = client.request(method, path, follow_redirects=False, **kwargs)
    assert answer.status_code == 422, answer.text[:300]


def test_a_long_reason_on_the_case_page_is_no_server_error_on_postgresql(
    pg_world: ReviewWorld,
) -> None:
    ann = lenient_client(pg_world, "ann")
    case = ann.post("/api/v1/cases/claim").json()
    form = {"lease_token": case["lease_token"], "choice": "cannot_decide", "reason": "r" * 600}
    answer = ann.post(f"/cases/{case['case_id']}/decide", data=form, follow_redirects=False)
    assert answer.status_code < 500, answer.text[:300]

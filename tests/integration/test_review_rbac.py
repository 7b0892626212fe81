"""Who may call what in the review service: the whole route × role matrix, object-level checks on
cases and their images, the unauthenticated answers, and CSRF on cookie-authenticated writes.

The expected matrix is written out here route by route, independently of
``access.ROLE_PERMISSIONS``, so a wrong permission table (or a route declaring the wrong
permission) fails a test; and the routes are enumerated from the app itself, so a new route the
matrix does not cover fails a test too. The matrix runs on SQLite only (one world for the
module); the object-level checks run on both backends.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.routing import iter_route_contexts
from fastapi.testclient import TestClient
from httpx import Response
from starlette.routing import Mount, Route

from dedup.adjudication import accounts, audit_store, database, queue
from dedup.adjudication.access import Role
from dedup.adjudication.audit_chain import AuditEntry
from tests.review_support import (
    ROLE_USER,
    ReviewWorld,
    batch_payload,
    migrated,
    review_world,
    sqlite_url,
)

OPERATOR, ADJUDICATOR, SUPERVISOR, AUDITOR, ADMIN = (
    Role.OPERATOR,
    Role.ADJUDICATOR,
    Role.SUPERVISOR,
    Role.AUDITOR,
    Role.ADMIN,
)
EVERYONE = frozenset(Role)

# Routes anyone may call, logged in or not (``/static`` is the one mount).
PUBLIC: frozenset[tuple[str, str]] = frozenset(
    {
        ("GET", "/login"),
        ("POST", "/login"),
        ("POST", "/api/v1/login"),
        ("GET", "/metrics"),
        ("GET", "/healthz"),
        ("GET", "/"),
        ("GET", "/openapi.json"),
        ("GET", "/docs"),
        ("GET", "/docs/oauth2-redirect"),
        ("GET", "/redoc"),
    }
)
PUBLIC_MOUNTS = frozenset({"/static"})

# The policy, route by route: which roles may call it. Written from the service's rules (an
# operator moves batches in and decisions out and sees no face; an adjudicator works the queue
# and sees only the case they hold; a supervisor handles escalations, catch trials, accuracy
# and erasure; an auditor reads the audit log and sees no face; an admin manages accounts),
# not read from ``ROLE_PERMISSIONS``.
EXPECTED: dict[tuple[str, str], frozenset[Role]] = {
    # JSON API
    ("POST", "/api/v1/batches/{batch_id}/candidates"): frozenset({OPERATOR}),
    ("GET", "/api/v1/decisions"): frozenset({OPERATOR}),
    ("GET", "/api/v1/queue"): frozenset({OPERATOR, SUPERVISOR, ADMIN}),
    ("POST", "/api/v1/cases/claim"): frozenset({ADJUDICATOR}),
    ("GET", "/api/v1/cases/{case_id}"): frozenset({ADJUDICATOR, SUPERVISOR}),
    ("POST", "/api/v1/cases/{case_id}/blind"): frozenset({ADJUDICATOR}),
    ("POST", "/api/v1/cases/{case_id}/judgement"): frozenset({ADJUDICATOR}),
    ("POST", "/api/v1/cases/{case_id}/supervision"): frozenset({SUPERVISOR}),
    ("POST", "/api/v1/cases/{case_id}/revision"): frozenset({SUPERVISOR}),
    ("POST", "/api/v1/erasures/{enrollment_id}"): frozenset({SUPERVISOR}),
    ("GET", "/api/v1/audit/verify"): frozenset({AUDITOR}),
    ("GET", "/api/v1/audit"): frozenset({AUDITOR}),
    ("PUT", "/api/v1/catch-trials/rate"): frozenset({SUPERVISOR}),
    ("POST", "/api/v1/catch-trials/pairs"): frozenset({SUPERVISOR}),
    ("GET", "/api/v1/accuracy"): frozenset({SUPERVISOR}),
    ("GET", "/api/v1/review-habits"): frozenset({SUPERVISOR}),
    ("GET", "/api/v1/users"): frozenset({ADMIN}),
    ("POST", "/api/v1/users"): frozenset({ADMIN}),
    # pages
    ("POST", "/logout"): EVERYONE,
    ("GET", "/queue"): frozenset({ADJUDICATOR}),
    ("POST", "/queue/claim"): frozenset({ADJUDICATOR}),
    ("GET", "/cases/{case_id}"): frozenset({ADJUDICATOR, SUPERVISOR}),
    ("GET", "/cases/{case_id}/compare"): frozenset({ADJUDICATOR, SUPERVISOR}),
    ("GET", "/cases/{case_id}/images/{enrollment_id}/{kind}"): frozenset({ADJUDICATOR, SUPERVISOR}),
    ("POST", "/cases/{case_id}/blind"): frozenset({ADJUDICATOR}),
    ("POST", "/cases/{case_id}/decide"): frozenset({ADJUDICATOR}),
    ("POST", "/cases/{case_id}/supervise"): frozenset({SUPERVISOR}),
    ("GET", "/supervisor"): frozenset({SUPERVISOR}),
    ("GET", "/supervisor/catch-trials"): frozenset({SUPERVISOR}),
    ("POST", "/supervisor/catch-trials/rate"): frozenset({SUPERVISOR}),
    ("POST", "/supervisor/catch-trials/pairs"): frozenset({SUPERVISOR}),
    ("GET", "/supervisor/accuracy"): frozenset({SUPERVISOR}),
    ("GET", "/audit"): frozenset({AUDITOR}),
    ("GET", "/audit/verify"): frozenset({AUDITOR}),
    ("GET", "/admin/users"): frozenset({ADMIN}),
    ("POST", "/admin/users"): frozenset({ADMIN}),
    ("GET", "/operator"): frozenset({OPERATOR, SUPERVISOR, ADMIN}),
    ("GET", "/operator/reports/{batch_id}/{name}"): frozenset({OPERATOR, SUPERVISOR, ADMIN}),
}

WRONG_LEASE = "not-the-lease-token"
NOBODY = "NO-SUCH-ENROLLMENT"
NEW_PASSWORD = "a long enough password"


@dataclass(frozen=True)
class Call:
    """One concrete request for a route, and what an allowed caller gets for it."""

    path: str
    allowed_status: int
    kwargs: dict[str, Any]


@dataclass
class Matrix:
    """The module's world: a batch imported, and ann (the adjudicator) holding one case."""

    world: ReviewWorld
    clients: dict[Role, TestClient]
    case_id: str
    probe_id: str


def call_for(method: str, route: str, role: Role, matrix: Matrix) -> Call:
    """A plausible request for ``route``: real ids where an allowed caller should reach real
    code (the case ann holds, its probe's chip), and the status an allowed caller gets."""
    case, probe = matrix.case_id, matrix.probe_id
    judgement = {"lease_token": WRONG_LEASE, "outcome": "not_duplicate"}
    form = {"lease_token": WRONG_LEASE, "choice": "not_duplicate"}
    calls: dict[tuple[str, str], Call] = {
        ("POST", "/api/v1/batches/{batch_id}/candidates"): Call(
            f"/api/v1/batches/B-RBAC-{role.value}/candidates",
            200,
            {"json": batch_payload(1, prefix=f"R{role.value}")},
        ),
        ("GET", "/api/v1/decisions"): Call("/api/v1/decisions", 200, {}),
        ("GET", "/api/v1/queue"): Call("/api/v1/queue", 200, {}),
        ("POST", "/api/v1/cases/claim"): Call("/api/v1/cases/claim", 200, {}),  # resumes
        ("GET", "/api/v1/cases/{case_id}"): Call(f"/api/v1/cases/{case}", 200, {}),
        ("POST", "/api/v1/cases/{case_id}/blind"): Call(
            f"/api/v1/cases/{case}/blind", 409, {"json": judgement}
        ),
        ("POST", "/api/v1/cases/{case_id}/judgement"): Call(
            f"/api/v1/cases/{case}/judgement", 409, {"json": judgement}
        ),
        ("POST", "/api/v1/cases/{case_id}/supervision"): Call(
            f"/api/v1/cases/{case}/supervision", 409, {"json": {"outcome": "not_duplicate"}}
        ),
        ("POST", "/api/v1/cases/{case_id}/revision"): Call(  # the case is not decided
            f"/api/v1/cases/{case}/revision",
            409,
            {"json": {"outcome": "not_duplicate", "reason": "checked again"}},
        ),
        ("POST", "/api/v1/erasures/{enrollment_id}"): Call(
            f"/api/v1/erasures/{NOBODY}", 404, {"json": {"reason": "court order"}}
        ),
        ("GET", "/api/v1/audit/verify"): Call("/api/v1/audit/verify", 200, {}),
        ("GET", "/api/v1/audit"): Call("/api/v1/audit", 200, {"params": {"limit": 5}}),
        ("PUT", "/api/v1/catch-trials/rate"): Call(
            "/api/v1/catch-trials/rate", 200, {"params": {"rate": 0.0}}
        ),
        ("POST", "/api/v1/catch-trials/pairs"): Call(  # the case is not decided
            "/api/v1/catch-trials/pairs", 409, {"params": {"case_id": case}}
        ),
        ("GET", "/api/v1/accuracy"): Call("/api/v1/accuracy", 200, {}),
        ("GET", "/api/v1/review-habits"): Call("/api/v1/review-habits", 200, {}),
        ("GET", "/api/v1/users"): Call("/api/v1/users", 200, {}),
        ("POST", "/api/v1/users"): Call(
            "/api/v1/users",
            200,
            {
                "json": {
                    "username": f"api-{role.value}",
                    "password": NEW_PASSWORD,
                    "roles": ["auditor"],
                }
            },
        ),
        ("POST", "/logout"): Call("/logout", 303, {}),
        ("GET", "/queue"): Call("/queue", 200, {}),
        ("POST", "/queue/claim"): Call("/queue/claim", 303, {}),  # resumes the held case
        ("GET", "/cases/{case_id}"): Call(f"/cases/{case}", 200, {}),
        ("GET", "/cases/{case_id}/compare"): Call(f"/cases/{case}/compare", 200, {}),
        ("GET", "/cases/{case_id}/images/{enrollment_id}/{kind}"): Call(
            f"/cases/{case}/images/{probe}/chip", 200, {}
        ),
        ("POST", "/cases/{case_id}/blind"): Call(f"/cases/{case}/blind", 409, {"data": form}),
        ("POST", "/cases/{case_id}/decide"): Call(f"/cases/{case}/decide", 409, {"data": form}),
        ("POST", "/cases/{case_id}/supervise"): Call(  # the case is not escalated
            f"/cases/{case}/supervise", 409, {"data": {"choice": "not_duplicate"}}
        ),
        ("GET", "/supervisor"): Call("/supervisor", 200, {}),
        ("GET", "/supervisor/catch-trials"): Call("/supervisor/catch-trials", 200, {}),
        ("POST", "/supervisor/catch-trials/rate"): Call(
            "/supervisor/catch-trials/rate", 303, {"data": {"rate": "0"}}
        ),
        ("POST", "/supervisor/catch-trials/pairs"): Call(
            "/supervisor/catch-trials/pairs", 409, {"data": {"case_id": case}}
        ),
        ("GET", "/supervisor/accuracy"): Call("/supervisor/accuracy", 200, {}),
        ("GET", "/audit"): Call("/audit", 200, {"params": {"action": "login"}}),
        ("GET", "/audit/verify"): Call("/audit/verify", 200, {}),
        ("GET", "/admin/users"): Call("/admin/users", 200, {}),
        ("POST", "/admin/users"): Call(
            "/admin/users",
            200,
            {
                "data": {
                    "username": f"form-{role.value}",
                    "password": NEW_PASSWORD,
                    "roles": ["auditor"],
                }
            },
        ),
        ("GET", "/operator"): Call("/operator", 200, {}),
        # no report has been written in this world
        ("GET", "/operator/reports/{batch_id}/{name}"): Call(
            "/operator/reports/B-MAIN/report.html", 404, {}
        ),
    }
    return calls[(method, route)]


# ---------------------------------------------------------------- helpers


def head_seq(world: ReviewWorld) -> int:
    with database.sessions(world.engine)() as db:
        newest = audit_store.search(db, limit=1)
    return newest[0].seq if newest else 0


def audit_since(
    world: ReviewWorld, after: int, actor: str | None = None, action: str | None = None
) -> list[AuditEntry]:
    """Entries appended after sequence number ``after``, oldest first."""
    with database.sessions(world.engine)() as db:
        found = audit_store.search(db, actor=actor, action=action, limit=1000)
    return sorted((e for e in found if e.seq > after), key=lambda e: e.seq)


def send(client: TestClient, method: str, path: str, **kwargs: Any) -> Response:
    answer: Response = client.request(method, path, follow_redirects=False, **kwargs)
    return answer


def assert_refusal_audited(
    world: ReviewWorld, before: int, username: str, method: str, path: str
) -> AuditEntry:
    """Exactly one ``access.refused`` entry for this caller and request since ``before``."""
    refused = [
        e
        for e in audit_since(world, before, actor=username, action="access.refused")
        if e.details.get("path") == path and e.details.get("method") == method
    ]
    assert len(refused) == 1, f"{method} {path} by {username}: refusal not audited once"
    assert refused[0].outcome == "refused"
    return refused[0]


@contextmanager
def sqlite_world(folder: Path) -> Iterator[ReviewWorld]:
    engine = migrated(sqlite_url(folder))
    try:
        yield review_world(engine)
    finally:
        engine.dispose()


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def matrix(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Matrix]:
    with sqlite_world(tmp_path_factory.mktemp("rbac")) as world:
        clients = {role: world.client(user) for role, user in ROLE_USER.items()}
        imported = clients[OPERATOR].post("/api/v1/batches/B-MAIN/candidates",
                                          json=batch_payload(3))  # fmt: skip
        assert imported.status_code == 200, imported.text
        claimed = clients[ADJUDICATOR].post("/api/v1/cases/claim")
        assert claimed.status_code == 200, claimed.text
        held = claimed.json()
        yield Matrix(world, clients, held["case_id"], held["probe_id"])


@pytest.fixture
def fresh(tmp_path: Path) -> Iterator[ReviewWorld]:
    """A world of its own on SQLite, for tests that change who holds what."""
    with sqlite_world(tmp_path) as world:
        yield world


# ---------------------------------------------------------------- the matrix


def app_routes(world: ReviewWorld) -> tuple[set[tuple[str, str]], set[str]]:
    """Every (method, path) the app answers (HEAD aside), and its mounts; included routers
    are flattened the way FastAPI itself does for the OpenAPI document."""
    routes: set[tuple[str, str]] = set()
    mounts: set[str] = set()
    for context in iter_route_contexts(world.app.routes):
        route, path = context.original_route, context.path
        assert path, f"a route without a path: {route!r}"
        if isinstance(route, Mount):
            mounts.add(path)
        elif isinstance(route, Route):
            routes |= {(m, path) for m in context.methods or () if m != "HEAD"}
        else:
            raise AssertionError(f"a route of an unexpected kind: {route!r}")
    return routes, mounts


def test_the_matrix_covers_every_route_of_the_app(matrix: Matrix) -> None:
    routes, mounts = app_routes(matrix.world)
    protected = routes - PUBLIC
    missing = sorted(protected - set(EXPECTED))
    assert not missing, f"routes missing from EXPECTED (add who may call them): {missing}"
    gone = sorted(set(EXPECTED) - protected)
    assert not gone, f"EXPECTED names routes the app does not have: {gone}"
    assert routes >= PUBLIC
    assert mounts == PUBLIC_MOUNTS


def test_every_public_route_answers_without_a_login(matrix: Matrix) -> None:
    anonymous = matrix.world.client()
    for path in ("/login", "/metrics", "/healthz", "/openapi.json", "/docs", "/redoc"):
        assert send(anonymous, "GET", path).status_code == 200, path
    assert send(anonymous, "GET", "/").headers["location"] == "/login"
    assert send(anonymous, "GET", "/static/review.css").status_code == 200


MATRIX = [(method, route, role) for (method, route) in EXPECTED for role in Role]


@pytest.mark.parametrize(
    ("method", "route", "role"),
    MATRIX,
    ids=[f"{m} {r} as {role.value}" for m, r, role in MATRIX],
)
def test_each_role_gets_exactly_what_the_matrix_allows(
    matrix: Matrix, method: str, route: str, role: Role
) -> None:
    world, user = matrix.world, ROLE_USER[role]
    call = call_for(method, route, role, matrix)
    # Logging out ends the session: it gets a session of its own.
    client = world.client(user) if route == "/logout" else matrix.clients[role]
    before = head_seq(world)
    answer = send(client, method, call.path, **call.kwargs)

    if role in EXPECTED[(method, route)]:
        assert answer.status_code != 403, f"{role.value} refused {method} {route}: {answer.text}"
        assert answer.status_code == call.allowed_status, answer.text[:500]
        assert audit_since(world, before, action="access.refused") == []
        if route == "/logout":
            assert send(client, "GET", "/api/v1/queue").status_code == 401
    else:
        assert answer.status_code == 403, f"{role.value} not refused {method} {route}"
        entry = assert_refusal_audited(world, before, user, method, call.path)
        assert entry.role == role.value
        assert entry.target == f"route:{call.path}"
        # The refused request changed nothing: its refusal is all it wrote.
        assert [e.seq for e in audit_since(world, before)] == [entry.seq]


# ---------------------------------------------------------------- without a login


@pytest.mark.parametrize(("method", "route"), list(EXPECTED), ids=[f"{m} {r}" for m, r in EXPECTED])
def test_unauthenticated_calls_get_401_or_the_login_page(
    matrix: Matrix, method: str, route: str
) -> None:
    call = call_for(method, route, SUPERVISOR, matrix)
    answer = send(matrix.world.client(), method, call.path, **call.kwargs)
    if route.startswith("/api/"):
        assert answer.status_code == 401, answer.text
        assert answer.json() == {"detail": "not logged in"}
    else:
        assert answer.status_code == 303, answer.text
        assert answer.headers["location"] == "/login"


def test_a_forged_session_cookie_is_no_login(matrix: Matrix) -> None:
    client = matrix.world.client()
    client.cookies.set("dedup_session", "forged-session-value", domain="testserver")
    assert send(client, "GET", "/api/v1/queue").status_code == 401
    assert send(client, "GET", "/operator").headers["location"] == "/login"


# ---------------------------------------------------------------- CSRF


# (user, method, path, kwargs): cookie-authenticated writes, each allowed to its user.
VICTIM = {"username": "csrf-victim", "password": NEW_PASSWORD, "roles": ["admin"]}
CSRF_CALLS: list[tuple[str, str, str, dict[str, Any]]] = [
    ("bob", "POST", "/api/v1/cases/claim", {}),
    ("bob", "POST", "/queue/claim", {"data": {}}),
    ("sue", "PUT", "/api/v1/catch-trials/rate", {"params": {"rate": 0.25}}),
    ("sue", "POST", "/supervisor/catch-trials/rate", {"data": {"rate": "0.25"}}),
    ("sue", "POST", "/api/v1/erasures/GP00000-0", {"json": {"reason": "court order"}}),
    ("operator", "POST", "/api/v1/batches/B-X/candidates", {"json": batch_payload(1, prefix="X")}),
    ("adam", "POST", "/api/v1/users", {"json": VICTIM}),
    ("adam", "POST", "/admin/users", {"data": VICTIM}),
]


@pytest.fixture(scope="module")
def csrf_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ReviewWorld]:
    """Two open cases; the CSRF tests only ever get refused, so they share it."""
    with sqlite_world(tmp_path_factory.mktemp("csrf")) as world:
        imported = world.client("operator").post("/api/v1/batches/B0/candidates",
                                                 json=batch_payload(2))  # fmt: skip
        assert imported.status_code == 200, imported.text
        yield world


@pytest.mark.parametrize("token", ["missing", "wrong"])
@pytest.mark.parametrize(
    ("username", "method", "path", "kwargs"),
    CSRF_CALLS,
    ids=[f"{m} {p}" for _, m, p, _ in CSRF_CALLS],
)
def test_a_cookie_authenticated_write_without_the_csrf_token_is_refused_and_audited(
    csrf_world: ReviewWorld,
    username: str,
    method: str,
    path: str,
    kwargs: dict[str, Any],
    token: str,
) -> None:
    world = csrf_world
    client = world.client(username)
    if token == "missing":
        del client.headers["X-CSRF-Token"]
    else:
        client.headers["X-CSRF-Token"] = "not-" + client.headers["X-CSRF-Token"]
    before = head_seq(world)

    answer = send(client, method, path, **kwargs)

    assert answer.status_code == 403, answer.text
    entry = assert_refusal_audited(world, before, username, method, path)
    assert "CSRF" in entry.details["why"]
    # Nothing happened: every change is audited in its own transaction, and the refusal is
    # the only entry; the queue still has its two open cases and nobody was created.
    assert [e.seq for e in audit_since(world, before)] == [entry.seq]
    with database.sessions(world.engine)() as db:
        depth = queue.queue_depth(db, world.clock()).by_state
        users = {u.username for u in accounts.list_users(db)}
    assert depth["open"] == 2 and depth["in_review"] == 0
    assert "csrf-victim" not in users


def test_the_csrf_token_in_a_form_field_is_accepted(fresh: ReviewWorld) -> None:
    fresh.client("operator").post("/api/v1/batches/B0/candidates", json=batch_payload(1))
    bob = fresh.client("bob")
    token = bob.headers.pop("X-CSRF-Token")
    answer = send(bob, "POST", "/queue/claim", data={"csrf_token": token})
    assert answer.status_code == 303
    assert answer.headers["location"].startswith("/cases/")
    wrong = send(bob, "POST", "/queue/claim", data={"csrf_token": "x" + token})
    assert wrong.status_code == 403


# ---------------------------------------------------------------- object level (both backends)


@dataclass(frozen=True)
class Held:
    case_id: str
    probe_id: str
    candidate_id: str
    lease_token: str


def claim(client: TestClient) -> Held:
    answer = client.post("/api/v1/cases/claim")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    first = body["candidates"][0]["candidate_id"]
    return Held(body["case_id"], body["probe_id"], first, body["lease_token"])


@pytest.fixture
def two_held(world: ReviewWorld) -> tuple[Held, Held]:
    """Two cases imported; ann holds one, bob the other."""
    answer = world.client("operator").post("/api/v1/batches/B1/candidates", json=batch_payload(2))
    assert answer.status_code == 200, answer.text
    return claim(world.client("ann")), claim(world.client("bob"))


def case_urls(held: Held) -> list[str]:
    """The case in the API, as a page and in the compare view, and the chips of its probe and
    first candidate."""
    return [
        f"/api/v1/cases/{held.case_id}",
        f"/cases/{held.case_id}",
        f"/cases/{held.case_id}/compare",
        f"/cases/{held.case_id}/images/{held.probe_id}/chip",
        f"/cases/{held.case_id}/images/{held.candidate_id}/chip",
    ]


def assert_seen(world: ReviewWorld, client: TestClient, url: str) -> Response:
    before = head_seq(world)
    answer = send(client, "GET", url)
    assert answer.status_code == 200, url
    assert audit_since(world, before, action="access.refused") == []
    assert {e.action for e in audit_since(world, before)} <= {"case.view", "image.view"}
    assert audit_since(world, before), f"the view of {url} was not audited"
    return answer


def assert_not_your_case(world: ReviewWorld, username: str, held: Held) -> None:
    client = world.client(username)
    for url in case_urls(held):
        before = head_seq(world)
        refused = send(client, "GET", url)
        assert refused.status_code == 403, (username, url)
        assert held.probe_id not in refused.text and held.candidate_id not in refused.text
        assert "image" not in refused.headers["content-type"]
        entry = assert_refusal_audited(world, before, username, "GET", url)
        assert [e.seq for e in audit_since(world, before)] == [entry.seq]  # and no view


def test_an_adjudicator_sees_only_the_case_they_hold(
    world: ReviewWorld, two_held: tuple[Held, Held]
) -> None:
    anns, bobs = two_held
    ann, bob, sue = world.client("ann"), world.client("bob"), world.client("sue")

    # Each holder sees their own case and its images.
    for client, held in ((ann, anns), (bob, bobs)):
        for url in case_urls(held):
            assert_seen(world, client, url)
    chip = send(bob, "GET", case_urls(bobs)[3])
    assert chip.headers["content-type"] == "image/png"
    assert chip.content.startswith(b"\x89PNG")

    # Ann may not see bob's case: not the JSON, not the page, not its images (audited).
    assert_not_your_case(world, "ann", bobs)
    with database.sessions(world.engine)() as db:
        refusal = audit_store.search(db, actor="ann", action="access.refused", limit=1)[0]
    assert refusal.target == f"case:{bobs.case_id}"
    assert refusal.details["why"] == "not your case"

    # Nor reach bob's faces through her own case: only the case's enrollments are served.
    for enrollment in (bobs.probe_id, bobs.candidate_id):
        answer = send(ann, "GET", f"/cases/{anns.case_id}/images/{enrollment}/chip")
        assert answer.status_code == 404
    assert (
        send(ann, "GET", f"/cases/{anns.case_id}/images/{anns.probe_id}/photo").status_code == 404
    )

    # A supervisor sees any case; the roles that never see a face see none.
    for url in case_urls(bobs):
        assert_seen(world, sue, url)
    for username in ("operator", "aude", "adam"):
        assert_not_your_case(world, username, bobs)

    # Nor act on it, even with bob's own lease token: refused (403, audited), nothing recorded.
    judgement = {"lease_token": bobs.lease_token, "outcome": "not_duplicate"}
    form = {"lease_token": bobs.lease_token, "choice": "not_duplicate"}
    before = head_seq(world)
    for path, kwargs in (
        (f"/api/v1/cases/{bobs.case_id}/blind", {"json": judgement}),
        (f"/api/v1/cases/{bobs.case_id}/judgement", {"json": judgement}),
        (f"/cases/{bobs.case_id}/blind", {"data": form}),
        (f"/cases/{bobs.case_id}/decide", {"data": form}),
    ):
        answer = send(ann, "POST", path, **kwargs)
        assert answer.status_code == 403, (path, answer.status_code)
    refusals = audit_since(world, before)
    assert [(e.action, e.actor, e.target) for e in refusals] == (
        [("access.refused", "ann", f"case:{bobs.case_id}")] * 4
    )
    still = send(bob, "GET", f"/api/v1/cases/{bobs.case_id}").json()
    assert still["state"] == "in_review" and still["lease_token"] == bobs.lease_token
    assert still["scores_hidden"]  # no blind judgement was recorded either

    # When the lease lapses, the view ends with it (the idle session too: log in again).
    world.clock.now += world.app.state.service.lease
    assert_not_your_case(world, "ann", anns)

"""What the review-service tests share: a throwaway PostgreSQL server, fresh migrated
databases on either backend, accounts for every role, logged-in clients and sample batches."""

from __future__ import annotations

import base64
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine, create_engine, text

from dedup.adjudication import accounts, database
from dedup.adjudication.access import Role
from dedup.adjudication.credentials import totp_now
from dedup.adjudication.service import create_app
from dedup.demo.review import swatch_png, synthetic_review_batch
from dedup.settings import AdjudicationSettings

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "correct horse battery staple"
TOTP_STEP_SECONDS = 30
# One account per role, plus a second adjudicator for four eyes.
ACCOUNTS: dict[str, Role] = {
    "operator": Role.OPERATOR,
    "ann": Role.ADJUDICATOR,
    "bob": Role.ADJUDICATOR,
    "sue": Role.SUPERVISOR,
    "aude": Role.AUDITOR,
    "adam": Role.ADMIN,
}
ROLE_USER: dict[Role, str] = {
    Role.OPERATOR: "operator",
    Role.ADJUDICATOR: "ann",
    Role.SUPERVISOR: "sue",
    Role.AUDITOR: "aude",
    Role.ADMIN: "adam",
}


# Two entries as the service wrote them before an entry's fields had one declaration, with the
# hashes computed then: a chain already in a database must verify under any later code.
WRITTEN_ENTRIES: tuple[dict[str, Any], ...] = (
    {
        "seq": 0,
        "at": datetime(2026, 11, 23, 9, 0, tzinfo=UTC),
        "actor": "ann",
        "role": "adjudicator",
        "action": "case.judge",
        "target": "case:0123abcd",
        "client": "10.0.0.7",
        "outcome": "ok",
        "details": {
            "outcome": "duplicate",
            "duplicate_of": "E-2",
            "state": "awaiting_second_review",
        },
        "prev_hash": "0" * 64,
        "hash": "f261a68d8634e55799233703bb1f0a32a20ee10eb4fcd2912f09cad9bf921b1e",
    },
    {
        "seq": 1,
        "at": datetime(2026, 11, 23, 9, 0, 5, 123456, tzinfo=UTC),
        "actor": "mallory",
        "role": "anonymous",
        "action": "access.refused",
        "target": "route:/api/v1/decisions",
        "client": "::1",
        "outcome": "refused",
        "details": {
            "why": "needs permission export_decisions",
            "method": "GET",
            "path": "/api/v1/decisions",
        },
        "prev_hash": "f261a68d8634e55799233703bb1f0a32a20ee10eb4fcd2912f09cad9bf921b1e",
        "hash": "3b128b28b5d20bc6134ac7ee6c3d46b8813b1c523e8d0fe4e5ee1e314325f465",
    },
)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class PostgresServer:
    """``scripts/postgres`` on a free port in a temporary folder (under /tmp, so the
    ``postgres`` account can reach it when the tests run as root)."""

    def __init__(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="dedup-pg-"))
        done = subprocess.run(
            [str(ROOT / "scripts" / "postgres"), "start", str(self.folder), str(free_port())],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"PostgreSQL did not start: {done.stderr.strip()}")
        self.url = done.stdout.strip().splitlines()[-1]

    def fresh_database(self) -> str:
        """A new empty database on the server; its URL."""
        name = f"t_{uuid.uuid4().hex[:12]}"
        admin = create_engine(self.url, isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        admin.dispose()
        return self.url.rsplit("/", 1)[0] + f"/{name}"

    def stop(self) -> None:
        subprocess.run(
            [str(ROOT / "scripts" / "postgres"), "stop", str(self.folder)],
            capture_output=True,
            check=False,
        )
        subprocess.run(["rm", "-rf", str(self.folder)], check=False)


def sqlite_url(folder: Path) -> str:
    return f"sqlite:///{folder / 'review.sqlite'}"


def migrated(url: str) -> Engine:
    engine = database.connect(url, pool_size=25)
    database.migrate(engine)
    return engine


png = swatch_png


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def batch_payload(
    probes: int, candidates_per_probe: int = 2, prefix: str = "P", images: bool = True
) -> dict[str, Any]:
    """A batch's import body: ``probes`` probes, each with its own gallery candidates."""
    return synthetic_review_batch(probes, candidates_per_probe, prefix, images)


def rows_payload(
    rows: Sequence[tuple[str, str, str, float]], images: bool = True
) -> dict[str, Any]:
    """An import body of exactly these ``(probe, candidate, source, score)`` rows (ranked per
    probe in the order given), with a subject (and a chip) for every enrollment named."""
    chip = {"chip": {"media_type": "image/png", "data_base64": b64(png())}} if images else {}
    ranks: dict[str, int] = {}
    candidates = []
    for probe, candidate, source, score in rows:
        ranks[probe] = ranks.get(probe, 0) + 1
        candidates.append({"probe_id": probe, "candidate_id": candidate, "score": score,
                           "rank": ranks[probe], "source": source})  # fmt: skip
    named = dict.fromkeys(e for probe, candidate, *_ in rows for e in (probe, candidate))
    subjects = [{"enrollment_id": e, "images": chip} for e in named]
    return {"model_id": "dlib-resnet-v1", "candidates": candidates, "subjects": subjects}


# One probe and three candidate identities in page order: identity "I-A" with two captures,
# then two identities of one capture each. (candidate, identity or None, score, rank, shade).
IDENTITY_PROBE = "P-ID-0"
IDENTITY_CANDIDATES: tuple[tuple[str, str | None, float, int, int], ...] = (
    ("G-A1", "I-A", 0.950, 1, 20),
    ("G-B1", None, 0.930, 2, 70),
    ("G-A2", "I-A", 0.910, 3, 120),
    ("G-C1", None, 0.880, 4, 170),
)
IDENTITY_PROBE_SHADE = 250


def identity_batch_payload() -> dict[str, Any]:
    """An import body with one probe whose candidates include two captures of one identity
    (``identity_id`` shared), each enrollment with a chip of its own plain shade (red channel
    ``shade``; see ``png``), so that a page's pixels tell which chip is shown."""

    def subject(enrollment_id: str, shade: int) -> dict[str, Any]:
        chip = {"media_type": "image/png", "data_base64": b64(png(shade))}
        return {"enrollment_id": enrollment_id, "display": {"given_name": enrollment_id},
                "images": {"chip": chip}}  # fmt: skip

    rows = [
        {
            "probe_id": IDENTITY_PROBE,
            "candidate_id": c,
            "score": score,
            "rank": rank,
            "source": "gallery",
            "identity_id": identity,
        }
        for c, identity, score, rank, _ in IDENTITY_CANDIDATES
    ]
    subjects = [subject(IDENTITY_PROBE, IDENTITY_PROBE_SHADE)]
    subjects += [subject(c, shade) for c, _, _, _, shade in IDENTITY_CANDIDATES]
    return {"model_id": "dlib-resnet-v1", "candidates": rows, "subjects": subjects}


def expected_cases(
    rows: Sequence[tuple[str, str, str, float]],
) -> dict[str, tuple[frozenset[str], dict[str, tuple[str, float]]]]:
    """What the queue should hold for these ``(probe, candidate, source, score)`` rows, worked
    out apart from ``intake``: per case probe (the first of its group), its members (the
    connected group under the ``batch`` rows) and its candidates (source and best score: every
    member's candidates but the probe, the other members as ``batch``)."""
    neighbours: dict[str, set[str]] = {}
    for probe, candidate, source, _ in rows:
        neighbours.setdefault(probe, set())
        if source == "batch":
            neighbours[probe].add(candidate)
            neighbours.setdefault(candidate, set()).add(probe)
    cases: dict[str, tuple[frozenset[str], dict[str, tuple[str, float]]]] = {}
    seen: set[str] = set()
    for start in sorted(neighbours):
        if start in seen:
            continue
        group, frontier = {start}, [start]
        while frontier:
            for other in neighbours[frontier.pop()] - group:
                group.add(other)
                frontier.append(other)
        seen |= group
        first = min(group)
        shown: dict[str, tuple[str, float]] = {}
        for probe, candidate, source, score in rows:
            if probe in group and candidate != first:
                kept = shown.get(candidate, (source, score))
                shown[candidate] = (source, max(score, kept[1]))
        for member in group - {first}:  # a member that only named others is shown too
            if member not in shown:
                shown[member] = (
                    "batch",
                    max(s for p, c, _, s in rows if p == member and c in group),
                )
            shown[member] = ("batch", shown[member][1])
        cases[first] = (frozenset(group), shown)
    return cases


@dataclass
class Clock:
    """A settable clock for leases and session timeouts."""

    now: datetime = field(default_factory=lambda: datetime.now(UTC))

    def __call__(self) -> datetime:
        return self.now


@dataclass
class ReviewWorld:
    """A migrated database with one account per role and the app on it."""

    engine: Engine
    app: FastAPI
    clock: Clock
    secrets: dict[str, str]
    # The time step of the last code handed out per user: codes are good once (no replay).
    issued: dict[str, int] = field(default_factory=dict)

    def client(self, username: str | None = None) -> TestClient:
        """A client over HTTPS (the cookie is Secure), logged in as ``username`` when given."""
        client = TestClient(self.app, base_url="https://testserver")
        if username is not None:
            answer = client.post("/api/v1/login", json=self.credentials(username))
            assert answer.status_code == 200, answer.text
            client.headers["X-CSRF-Token"] = answer.json()["csrf_token"]
        return client

    def credentials(self, username: str) -> dict[str, str]:
        """A login body with a code of a time step not handed out for ``username`` before
        (the clock moves on a step when needed, as a person would wait for the next code)."""
        step = int(self.clock().timestamp()) // TOTP_STEP_SECONDS
        if step <= self.issued.get(username, -1):
            self.clock.now += timedelta(seconds=TOTP_STEP_SECONDS)
            step += 1
        self.issued[username] = step
        code = totp_now(self.secrets[username], self.clock())
        return {"username": username, "password": PASSWORD, "totp": code}

    def add_user(self, username: str, *roles: Role) -> None:
        with database.sessions(self.engine)() as db, db.begin():
            self.secrets[username] = accounts.create_user(
                db, username, PASSWORD, frozenset(roles), self.clock()
            )


def review_world(
    engine: Engine, settings: AdjudicationSettings | None = None, clock: Clock | None = None
) -> ReviewWorld:
    clock = clock or Clock()
    secrets = {}
    with database.sessions(engine)() as db, db.begin():
        for username, role in ACCOUNTS.items():
            secrets[username] = accounts.create_user(
                db, username, PASSWORD, frozenset({role}), clock()
            )
    settings = settings or AdjudicationSettings(logins_per_client_per_minute=1000)
    return ReviewWorld(engine, create_app(settings, engine, clock=clock), clock, secrets)


def engines(kind: str, tmp_path: Path, postgres: Callable[[], PostgresServer]) -> Iterator[Engine]:
    """A fresh migrated engine of ``kind`` ("sqlite" or "postgresql")."""
    url = sqlite_url(tmp_path) if kind == "sqlite" else postgres().fresh_database()
    engine = migrated(url)
    yield engine
    engine.dispose()

"""The review service from the outside: served on a loopback port, and a client of its JSON API.

The demo decides its cases through the API, as two adjudicators would (four eyes), and the
end-to-end tests do the same; both use this client, which speaks plain HTTP with the standard
library. The service's session cookie is ``Secure``: a real deployment terminates TLS in front
of it; on loopback the client hands the cookie back itself.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from dedup.errors import AdjudicationError
from dedup.settings import Settings

START_TIMEOUT_S = 30.0
# What an adjudicator answers for a case: ("duplicate", candidate id) or ("not_duplicate", None).
Verdict = tuple[str, str | None]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextlib.contextmanager
def served(settings: Settings) -> Iterator[str]:
    """The review service on the configured database (migrated), on a free loopback port, for
    the duration of the block; its base URL."""
    import uvicorn

    from dedup.adjudication import database
    from dedup.adjudication.service import create_app

    engine = database.connect(settings.adjudication_database_url())
    database.migrate(engine)
    app = create_app(settings.adjudication, engine)
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
    )
    thread = threading.Thread(target=server.run, name="review-service", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not server.started and thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        if not server.started:
            raise AdjudicationError("the review service did not start on a loopback port")
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=START_TIMEOUT_S)
        engine.dispose()


@dataclass
class ReviewClient:
    """One logged-in account on the JSON API."""

    base_url: str
    cookie: str = ""
    csrf: str = ""
    username: str = ""
    headers: dict[str, str] = field(default_factory=dict)

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode("utf-8")
        request = urllib.request.Request(f"{self.base_url}{path}", data=data, method=method)
        request.add_header("Content-Type", "application/json")
        if self.cookie:
            request.add_header("Cookie", self.cookie)
        if self.csrf:
            request.add_header("X-CSRF-Token", self.csrf)
        try:
            with urllib.request.urlopen(request, timeout=60) as answer:
                status, raw, cookies = answer.status, answer.read(), answer.headers
        except urllib.error.HTTPError as error:
            status, raw, cookies = error.code, error.read(), error.headers
        for header in cookies.get_all("Set-Cookie") or []:
            self.cookie = header.split(";", 1)[0]
        return status, (json.loads(raw) if raw else None)

    def ok(self, method: str, path: str, body: Any = None) -> Any:
        status, answer = self.call(method, path, body)
        if status >= 300:
            raise AdjudicationError(f"{method} {path} as {self.username}: {status} {answer}")
        return answer

    @classmethod
    def login(cls, base_url: str, username: str, password: str, totp_secret: str) -> ReviewClient:
        from dedup.adjudication.credentials import totp_now

        client = cls(base_url, username=username)
        code = totp_now(totp_secret, datetime.now(UTC))
        answer = client.ok("POST", "/api/v1/login", {"username": username, "password": password,
                                                     "totp": code})  # fmt: skip
        client.csrf = answer["csrf_token"]
        return client

    def claim(self) -> dict[str, Any] | None:
        status, answer = self.call("POST", "/api/v1/cases/claim")
        if status == 204:
            return None
        if status >= 300:
            raise AdjudicationError(f"claim as {self.username}: {status} {answer}")
        claimed: dict[str, Any] = answer
        return claimed

    def judge(self, case: dict[str, Any], verdict: Verdict) -> str:
        """Judge a held case (blind first where scores are hidden); the case's new state."""
        outcome, duplicate_of = verdict
        body = {"lease_token": case["lease_token"], "outcome": outcome,
                "duplicate_of": duplicate_of}  # fmt: skip
        if case["scores_hidden"]:
            self.ok("POST", f"/api/v1/cases/{case['case_id']}/blind", body)
        answer = self.ok("POST", f"/api/v1/cases/{case['case_id']}/judgement", body)
        state: str = answer["state"]
        return state


def decide_queue(
    first: ReviewClient, second: ReviewClient, verdict: Callable[[dict[str, Any]], Verdict]
) -> dict[str, int]:
    """Two adjudicators take turns claiming until neither finds a case: each judges what it
    claims by ``verdict`` (a duplicate needs the other's confirmation, which ``verdict``
    gives again). The count of judgements by the state they left the case in."""
    counts: dict[str, int] = {}
    idle = 0
    turn = 0
    while idle < 2:
        client = (first, second)[turn % 2]
        turn += 1
        case = client.claim()
        if case is None:
            idle += 1
            continue
        idle = 0
        state = client.judge(case, verdict(case))
        counts[state] = counts.get(state, 0) + 1
    return counts

"""What every request goes through: who is calling, may they, and is the form really theirs.

A caller is known by a session cookie (browsers) or a bearer API token (the pipeline).
``require(permission)`` is the function-level check each route declares; a refusal is
answered 403 and audited. Forms and cookie-authenticated API calls that change anything must
carry the session's CSRF token (form field ``csrf_token`` or header ``X-CSRF-Token``).
"""

from __future__ import annotations

import time
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from threading import Lock
from typing import Any

from fastapi import Request
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from dedup.adjudication import accounts, audit_store
from dedup.adjudication.access import Permission, acting_role, allowed
from dedup.adjudication.accounts import IdentityProvider, Principal
from dedup.adjudication.audit_store import Actor
from dedup.adjudication.credentials import same_secret
from dedup.settings import AdjudicationSettings

SESSION_COOKIE = "dedup_session"
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class Unauthenticated(Exception):
    """No valid session or token: the API answers 401, pages send the browser to log in."""


class Forbidden(Exception):
    """The caller lacks the permission or does not own the object (403, audited)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadCsrf(Exception):
    """A state-changing request without the session's CSRF token (403, audited)."""


@dataclass
class ClientThrottle:
    """At most ``per_minute`` login attempts per client address (in this process)."""

    per_minute: int
    _seen: defaultdict[str, deque[float]] = field(default_factory=lambda: defaultdict(deque))
    _lock: Lock = field(default_factory=Lock)

    def allow(self, client: str) -> bool:
        now = time.monotonic()
        with self._lock:
            seen = self._seen[client]
            while seen and now - seen[0] > 60:
                seen.popleft()
            if len(seen) >= self.per_minute:
                return False
            seen.append(now)
            return True


@dataclass
class ServiceState:
    """What the routes share: settings, the database, the identity provider, the clock."""

    settings: AdjudicationSettings
    sessions: sessionmaker[Session]
    identity: IdentityProvider
    throttle: ClientThrottle
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))

    def now(self) -> datetime:
        return self.clock()

    @property
    def lease(self) -> timedelta:
        return timedelta(minutes=self.settings.lease_minutes)

    @property
    def idle(self) -> timedelta:
        return timedelta(minutes=self.settings.session_idle_minutes)

    @property
    def absolute(self) -> timedelta:
        return timedelta(hours=self.settings.session_absolute_hours)


def service(request: Request) -> ServiceState:
    state = request.app.state.service
    assert isinstance(state, ServiceState)
    return state


def client_of(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def principal_of(request: Request) -> Principal | None:
    """The caller, from the bearer token or the session cookie; None when neither holds."""
    cached = getattr(request.state, "principal", False)
    if cached is not False:
        assert cached is None or isinstance(cached, Principal)
        return cached
    state = service(request)
    found: Principal | None = None
    header = request.headers.get("authorization", "")
    with state.sessions() as db, db.begin():
        if header.lower().startswith("bearer "):
            found = accounts.token_principal(db, header[7:].strip())
        elif cookie := request.cookies.get(SESSION_COOKIE):
            found = accounts.session_principal(db, cookie, state.now(), state.idle, state.absolute)
    request.state.principal = found
    return found


def actor(request: Request, principal: Principal | None, permission: Permission | None) -> Actor:
    if principal is None:
        return Actor("anonymous", audit_store.ANONYMOUS_ROLE, client_of(request))
    role = (
        acting_role(principal.roles, permission)
        if permission
        else ",".join(sorted(principal.roles))
    )
    return Actor(principal.username, role, client_of(request))


def refuse(
    request: Request,
    principal: Principal | None,
    permission: Permission | None,
    why: str,
    target: str | None = None,
) -> Forbidden:
    """Audit a refused access and return the exception to raise."""
    details = {"method": request.method, "path": request.url.path[:200], "why": why[:200]}
    audit_store.record_alone(
        service(request).sessions,
        actor(request, principal, permission),
        "access.refused",
        target or f"route:{request.url.path}"[:300],
        outcome="refused",
        details=details,
        at=service(request).now(),
    )
    return Forbidden(why)


def require(*permissions: Permission) -> Callable[[Request], Awaitable[Principal]]:
    """A route dependency: the caller must hold one of ``permissions`` (and a valid CSRF)."""

    async def dependency(request: Request) -> Principal:
        # Database work runs in the thread pool: the event loop never waits on a lock.
        principal = await run_in_threadpool(principal_of, request)
        if principal is None:
            raise Unauthenticated()
        if not any(allowed(principal.roles, p) for p in permissions):
            names = " or ".join(p.value for p in permissions)
            raise await run_in_threadpool(
                refuse, request, principal, permissions[0], f"needs permission {names}"
            )
        if request.method not in SAFE_METHODS and principal.session is not None:
            await check_csrf(request, principal)
        return principal

    return dependency


async def check_csrf(request: Request, principal: Principal) -> None:
    sent = request.headers.get(CSRF_HEADER)
    if sent is None and request.headers.get("content-type", "").startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    ):
        form = await request.form()
        value = form.get("csrf_token")
        sent = value if isinstance(value, str) else None
    if not sent or not principal.csrf_token or not same_secret(sent, principal.csrf_token):
        raise await run_in_threadpool(
            refuse, request, principal, None, "missing or wrong CSRF token"
        )


def audit(
    request: Request,
    db: Session,
    principal: Principal,
    permission: Permission | None,
    action: str,
    target: str,
    details: Mapping[str, str] | None = None,
) -> None:
    """Record an allowed action inside the route's transaction."""
    audit_store.record(
        db,
        actor(request, principal, permission),
        action,
        target,
        details=details,
        at=service(request).now(),
    )


def security_headers(response: Any) -> None:
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    response.headers.setdefault("Cache-Control", "no-store")
    response.headers.setdefault(
        "Content-Security-Policy",
        "default-src 'self'; img-src 'self'; style-src 'self'; script-src 'self'; "
        "frame-ancestors 'none'; form-action 'self'",
    )

"""What every request goes through: who is calling, may they, and is the form really theirs.

A caller is known by a session cookie (browsers) or a bearer API token (the pipeline).
``require(permission)`` is the function-level check each route declares; a refusal is
answered 403 and audited. Forms and cookie-authenticated API calls that change anything must
carry the session's CSRF token (form field ``csrf_token`` or header ``X-CSRF-Token``).
``acting(request, principal)`` turns a request into what an operation takes: the service's
``Context`` and the ``Actor``.
"""

from __future__ import annotations

import time
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from threading import Lock
from typing import Any

from fastapi import Request, Response
from starlette.concurrency import run_in_threadpool

from dedup.adjudication import accounts, context, operations
from dedup.adjudication.access import ANONYMOUS, Actor, Forbidden, Permission, allowed
from dedup.adjudication.accounts import IdentityProvider, Principal
from dedup.adjudication.context import Context
from dedup.adjudication.credentials import same_secret
from dedup.adjudication.operations import LoginOutcome

SESSION_COOKIE = "dedup_session"
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class Unauthenticated(Exception):
    """No valid session or token: the API answers 401, pages send the browser to log in."""


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


@dataclass(frozen=True)
class ServiceState:
    """What the routes share: the operations' context, the identity provider, the throttle."""

    context: Context
    identity: IdentityProvider
    throttle: ClientThrottle

    @property
    def lease(self) -> timedelta:
        return self.context.lease

    @property
    def idle(self) -> timedelta:
        return timedelta(minutes=self.context.settings.session_idle_minutes)

    @property
    def absolute(self) -> timedelta:
        return timedelta(hours=self.context.settings.session_absolute_hours)


def service(request: Request) -> ServiceState:
    state = request.app.state.service
    assert isinstance(state, ServiceState)
    return state


def context_of(request: Request) -> Context:
    return service(request).context


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
    with state.context.sessions() as db, db.begin():
        if header.lower().startswith("bearer "):
            found = accounts.token_principal(db, header[7:].strip())
        elif cookie := request.cookies.get(SESSION_COOKIE):
            now = state.context.now()
            found = accounts.session_principal(db, cookie, now, state.idle, state.absolute)
    request.state.principal = found
    return found


def acting(request: Request, principal: Principal | None) -> tuple[Context, Actor]:
    """What an operation needs of a request: the service's context and the actor (the
    principal, or an anonymous caller, from the request's client address)."""
    asking = {"method": request.method, "path": request.url.path[:200]}
    if principal is None:
        return context_of(request), Actor(ANONYMOUS, frozenset(), client_of(request), asking)
    return context_of(request), Actor(
        principal.username, principal.roles, client_of(request), asking
    )


def refuse(
    request: Request, principal: Principal | None, permission: Permission | None, why: str
) -> Forbidden:
    """Audit a request refused at its route and return the exception to raise."""
    target = f"route:{request.url.path}"[:300]
    return context.refuse(*acting(request, principal), permission, why, target)


def log_in(request: Request, username: str, password: str, code: str) -> LoginOutcome:
    """Check a login from this request's client, under the service's throttle."""
    state = service(request)
    return operations.login(
        *acting(request, None), username, password, code,
        identity=state.identity, throttle=state.throttle,
    )  # fmt: skip


def set_session_cookie(request: Request, response: Response, token: str) -> None:
    settings = context_of(request).settings
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=int(settings.session_absolute_hours * 3600),
        httponly=True,
        secure=settings.secure_cookies,
        samesite="strict",
        path="/",
    )


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

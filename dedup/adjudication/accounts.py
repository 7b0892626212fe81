"""Accounts, logins, sessions and API tokens.

Logins go through an ``IdentityProvider``. The local one checks an argon2 password and a
TOTP code and locks an account after repeated failures (the lock doubles each time). An
OIDC provider fits the same seam: it verifies the identity provider's ID token and maps its
group claims to roles, and the rest of the service (sessions, RBAC, audit) is unchanged.

A web session has an idle and an absolute timeout; its cookie value and CSRF token are random
and stored hashed (the CSRF token is kept as given, as it is not a credential on its own).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Protocol

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from dedup.adjudication.access import Role, parse_roles
from dedup.adjudication.credentials import (
    hash_password,
    new_token,
    new_totp_secret,
    password_matches,
    token_digest,
    totp_step,
)
from dedup.adjudication.tables import ApiToken, User, WebSession
from dedup.errors import AdjudicationError


@dataclass(frozen=True)
class Principal:
    """An authenticated caller, as every route sees it."""

    username: str
    display_name: str
    roles: frozenset[Role]
    session: str | None = None  # the session's token hash; None for an API token
    csrf_token: str | None = None


class LoginRefusal(StrEnum):
    BAD_CREDENTIALS = "bad_credentials"  # unknown user, wrong password or wrong code
    LOCKED = "locked"
    INACTIVE = "inactive"


@dataclass(frozen=True)
class LoginResult:
    user: User | None
    refusal: LoginRefusal | None


class IdentityProvider(Protocol):
    def authenticate(
        self, db: Session, username: str, password: str, code: str, now: datetime
    ) -> LoginResult: ...


@dataclass(frozen=True)
class LocalIdentityProvider:
    """argon2 password and a TOTP code not used before; ``max_failures`` in a row lock the
    account."""

    max_failures: int
    lockout: timedelta

    def authenticate(
        self, db: Session, username: str, password: str, code: str, now: datetime
    ) -> LoginResult:
        user = db.get(User, username, with_for_update=True)
        if user is not None and user.locked_until is not None and user.locked_until > now:
            return LoginResult(user, LoginRefusal.LOCKED)
        # Always verify a hash, even for an unknown user: timing does not reveal accounts.
        password_ok = password_matches(None if user is None else user.password_hash, password)
        if user is None:
            return LoginResult(None, LoginRefusal.BAD_CREDENTIALS)
        step = totp_step(user.totp_secret, code, now)
        fresh = step is not None and (user.totp_last_step is None or step > user.totp_last_step)
        if not (password_ok and fresh):
            user.failed_logins += 1
            if user.failed_logins >= self.max_failures:
                user.locked_until = now + self.lockout * (2**user.lockouts)
                user.lockouts += 1
                user.failed_logins = 0
            return LoginResult(user, LoginRefusal.BAD_CREDENTIALS)
        if not user.active:
            return LoginResult(user, LoginRefusal.INACTIVE)
        user.failed_logins = 0
        user.lockouts = 0
        user.locked_until = None
        user.totp_last_step = step
        return LoginResult(user, None)


def create_user(
    db: Session,
    username: str,
    password: str,
    roles: frozenset[Role],
    now: datetime,
    display_name: str | None = None,
    totp_secret: str | None = None,
) -> str:
    """Add an account; returns its TOTP secret (shown once, to enrol an authenticator)."""
    if (
        not username
        or len(username) > 128
        or not username.replace("-", "").replace(".", "").replace("_", "").isalnum()
    ):
        raise AdjudicationError("a username is 1-128 letters, digits, '.', '-' or '_'")
    if not roles:
        raise AdjudicationError("an account needs at least one role")
    if db.get(User, username) is not None:
        raise AdjudicationError(f"user {username} already exists")
    try:
        password_hash = hash_password(password)
    except ValueError as exc:
        raise AdjudicationError(str(exc)) from exc
    secret = totp_secret or new_totp_secret()
    db.add(
        User(
            username=username,
            display_name=display_name or username,
            password_hash=password_hash,
            totp_secret=secret,
            roles=",".join(sorted(r.value for r in roles)),
            active=True,
            failed_logins=0,
            lockouts=0,
            created_at=now,
        )
    )
    db.flush()
    return secret


def user_roles(user: User) -> frozenset[Role]:
    return parse_roles(user.roles)


def start_session(db: Session, user: User, client: str, now: datetime) -> tuple[str, str]:
    """A new session for ``user``: (cookie value, CSRF token)."""
    token, csrf = new_token(), new_token()
    db.add(
        WebSession(
            token_hash=token_digest(token),
            username=user.username,
            csrf_token=csrf,
            client=client[:100],
            created_at=now,
            last_seen=now,
        )
    )
    return token, csrf


TOUCH_EVERY = timedelta(seconds=30)


def session_principal(
    db: Session, token: str, now: datetime, idle: timedelta, absolute: timedelta
) -> Principal | None:
    """The caller behind a session cookie, or None when the session is unknown or expired."""
    digest = token_digest(token)
    row = db.get(WebSession, digest)
    if row is None:
        return None
    user = db.get(User, row.username)
    if (
        user is None
        or not user.active
        or now - row.last_seen > idle
        or now - row.created_at > absolute
    ):
        db.delete(row)
        return None
    if now - row.last_seen > TOUCH_EVERY:
        row.last_seen = now
    return Principal(user.username, user.display_name, user_roles(user), digest, row.csrf_token)


def end_session(db: Session, session: str) -> None:
    db.execute(delete(WebSession).where(WebSession.token_hash == session))


def issue_api_token(db: Session, username: str, label: str, now: datetime) -> str:
    if db.get(User, username) is None:
        raise AdjudicationError(f"user {username} does not exist")
    token = new_token()
    db.add(ApiToken(token_hash=token_digest(token), username=username, label=label, created_at=now))
    return token


def token_principal(db: Session, token: str) -> Principal | None:
    row = db.get(ApiToken, token_digest(token))
    if row is None or row.revoked:
        return None
    user = db.get(User, row.username)
    if user is None or not user.active:
        return None
    return Principal(user.username, user.display_name, user_roles(user))


def deactivate_user(db: Session, username: str) -> int:
    """Turn an account off: it cannot log in, and its sessions and API tokens end now.
    Returns how many sessions were ended."""
    user = db.get(User, username, with_for_update=True)
    if user is None:
        raise AdjudicationError(f"user {username} does not exist")
    user.active = False
    ended = db.execute(delete(WebSession).where(WebSession.username == username)).rowcount  # type: ignore[attr-defined]
    for token in db.scalars(select(ApiToken).where(ApiToken.username == username)):
        token.revoked = True
    return int(ended)


def list_users(db: Session) -> list[User]:
    return list(db.execute(select(User).order_by(User.username)).scalars())

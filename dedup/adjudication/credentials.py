"""Secrets: argon2 password hashes, TOTP second factors, and random tokens stored as hashes.

A session cookie, a CSRF token or an API token is a random 256-bit value; the database keeps
only its sha256, so a copy of the database opens no session. None of these values is ever
written to the audit log or a log line.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import datetime, timedelta

import pyotp
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

TOTP_ISSUER = "dedup review"
# One step either side (30 s) is accepted for clock drift.
TOTP_WINDOW = 1

_hasher = PasswordHasher()
# A hash to verify against when the account does not exist, so timing does not reveal it.
_DUMMY_HASH = _hasher.hash("not a password of anyone")


def hash_password(password: str) -> str:
    if len(password) < 12:
        raise ValueError("a password needs at least 12 characters")
    return _hasher.hash(password)


def password_matches(stored_hash: str | None, password: str) -> bool:
    try:
        return _hasher.verify(stored_hash or _DUMMY_HASH, password) and stored_hash is not None
    except (VerificationError, InvalidHashError):
        return False


def new_totp_secret() -> str:
    return pyotp.random_base32()


def totp_uri(secret: str, username: str) -> str:
    """The otpauth:// address an authenticator app scans (as a QR code) at enrolment."""
    return pyotp.TOTP(secret).provisioning_uri(name=username, issuer_name=TOTP_ISSUER)


def totp_step(secret: str, code: str, at: datetime) -> int | None:
    """The time step whose code ``code`` is, within the drift window of ``at``; else None.

    The caller accepts a step only once per account, so an observed code cannot be replayed.
    """
    code = code.strip().replace(" ", "")
    if not (code.isdigit() and len(code) == 6):
        return None
    totp = pyotp.TOTP(secret)
    for offset in range(-TOTP_WINDOW, TOTP_WINDOW + 1):
        moment = at + timedelta(seconds=offset * totp.interval)
        if same_secret(totp.at(moment), code):
            return int(totp.timecode(moment))
    return None


def totp_now(secret: str, at: datetime) -> str:
    """The current code for a secret (what an authenticator app shows; used by the demo)."""
    return pyotp.TOTP(secret).at(at)


def new_token() -> str:
    return secrets.token_urlsafe(32)


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def same_secret(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode("utf-8"), b.encode("utf-8"))

"""Demo accounts for the review service: one per role, two adjudicators for four eyes.

Created once per demo folder with random passwords and TOTP secrets, kept in
``review-accounts.json`` there (readable by its owner only), and printed so that someone
trying the demo can log in. Demo only: real accounts are created with ``dedup users add``.
"""

from __future__ import annotations

import json
import os
import secrets
from datetime import UTC, datetime
from pathlib import Path

from dedup.adjudication import accounts, audit_log, database
from dedup.adjudication.access import Role
from dedup.adjudication.credentials import new_totp_secret
from dedup.adjudication.tables import User
from dedup.files import write_bytes_atomically
from dedup.settings import Settings

DEMO_USERS = (
    ("adjudicator-1", Role.ADJUDICATOR),
    ("adjudicator-2", Role.ADJUDICATOR),
    ("supervisor", Role.SUPERVISOR),
    ("auditor", Role.AUDITOR),
    ("operator", Role.OPERATOR),
    ("admin", Role.ADMIN),
)


def demo_accounts(settings: Settings, workdir: Path) -> str:
    """Create the demo accounts if needed; a text telling how to log in as each."""
    path = workdir / "review-accounts.json"
    known: dict[str, dict[str, str]] = (
        json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    )
    engine = database.connect(settings.adjudication_database_url())
    try:
        database.migrate(engine)
        with database.sessions(engine)() as db, db.begin():
            for name, role in DEMO_USERS:
                if db.get(User, name) is not None:
                    continue  # made before (or outside the demo): left as it is
                password = secrets.token_urlsafe(12)
                secret = accounts.create_user(
                    db, name, password, frozenset({role}), datetime.now(UTC),
                    totp_secret=new_totp_secret(),
                )  # fmt: skip
                known[name] = {"role": role.value, "password": password, "totp_secret": secret}
                audit_log.record(
                    db,
                    audit_log.Actor("demo", "admin", "local"),
                    "user.create",
                    f"user:{name}",
                    details={"roles": role.value},
                )
    finally:
        engine.dispose()
    write_bytes_atomically(path, json.dumps(known, indent=2, sort_keys=True).encode("utf-8"))
    os.chmod(path, 0o600)
    lines = [
        f"demo accounts (also in {path}); the code is the TOTP of the secret, as an "
        "authenticator app shows it, or `dedup users totp SECRET`:"
    ]
    for name, _ in DEMO_USERS:
        if name in known:
            entry = known[name]
            lines.append(
                f"  {name:14} password {entry['password']}  TOTP secret {entry['totp_secret']}"
            )
    return "\n".join(lines)

"""The audit chain in the review database: appending inside a transaction, and verifying.

An append locks the single ``audit_head`` row (``FOR UPDATE`` on PostgreSQL; SQLite's
transactions already hold the write lock), so concurrent requests get consecutive sequence
numbers and each entry links to the one before. The entry is written in the same transaction
as the change it records: a decision and its audit entry commit together or not at all.

Refused accesses are recorded in a transaction of their own (``context.refuse``), because the
refused request changes nothing else.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from dedup.adjudication.access import Actor, Permission
from dedup.adjudication.audit_chain import ENTRY_FIELDS, AuditEntry, ChainCheck, append, verify
from dedup.adjudication.tables import AuditHead, AuditRow

HEAD_ID = 1
READ_CHUNK = 5_000


def record(
    db: Session,
    actor: Actor,
    action: str,
    target: str,
    *,
    permission: Permission | None = None,
    outcome: str = "ok",
    details: Mapping[str, str] | None = None,
    at: datetime | None = None,
) -> AuditEntry:
    """Append one entry inside the caller's transaction (the caller commits); ``actor`` is
    recorded in the role that grants ``permission`` (see ``Actor.role_for``)."""
    head = db.execute(
        select(AuditHead).where(AuditHead.id == HEAD_ID).with_for_update()
    ).scalar_one_or_none()
    entry = append(
        None if head is None or head.seq < 0 else (head.seq, head.hash),
        at=at or datetime.now(UTC),
        actor=actor.username,
        role=actor.role_for(permission),
        action=action,
        target=target,
        client=actor.client,
        outcome=outcome,
        details=details,
    )
    db.add(to_row(entry))
    if head is None:  # a database migrated before the head row was seeded
        db.add(AuditHead(id=HEAD_ID, seq=entry.seq, hash=entry.hash))
    else:
        head.seq, head.hash = entry.seq, entry.hash
    db.flush()
    return entry


def to_row(entry: AuditEntry) -> AuditRow:
    """The table row of an entry: a column per field, the details as canonical JSON text."""
    values = {name: getattr(entry, name) for name in ENTRY_FIELDS}
    return AuditRow(**{**values, "details": json.dumps(dict(entry.details), sort_keys=True)})


def to_entry(row: AuditRow) -> AuditEntry:
    values = {name: getattr(row, name) for name in ENTRY_FIELDS}
    return AuditEntry(**{**values, "details": json.loads(row.details)})


def entries(db: Session) -> Iterator[AuditEntry]:
    """Every entry in sequence order, read in chunks (the log grows without bound)."""
    after = -1
    while True:
        rows = (
            db.execute(
                select(AuditRow)
                .where(AuditRow.seq > after)
                .order_by(AuditRow.seq)
                .limit(READ_CHUNK)
            )
            .scalars()
            .all()
        )
        if not rows:
            return
        for row in rows:
            yield to_entry(row)
        after = rows[-1].seq


def stored_head(db: Session) -> tuple[int, str] | None:
    """The newest entry's (seq, hash); None while the log is empty (the head's seq is -1)."""
    head = db.get(AuditHead, HEAD_ID)
    return None if head is None or head.seq < 0 else (head.seq, head.hash)


def verify_log(db: Session, head: tuple[int, str] | None = None) -> ChainCheck:
    """Verify the whole chain against ``head`` (the stored head row when not given).

    A head kept outside the database (printed by a previous verification, say) also proves
    that nobody truncated the log and rewrote the head row with it.
    """
    return verify(entries(db), head=head if head is not None else stored_head(db))


def search(
    db: Session,
    *,
    actor: str | None = None,
    action: str | None = None,
    target: str | None = None,
    limit: int = 200,
    before: int | None = None,
) -> list[AuditEntry]:
    """The newest entries matching every given field (target matches as a prefix)."""
    query = select(AuditRow).order_by(AuditRow.seq.desc()).limit(limit)
    if actor:
        query = query.where(AuditRow.actor == actor)
    if action:
        query = query.where(AuditRow.action == action)
    if target:
        query = query.where(AuditRow.target.startswith(target, autoescape=True))
    if before is not None:
        query = query.where(AuditRow.seq < before)
    return [to_entry(row) for row in db.execute(query).scalars()]

"""What an operation runs with, and the one way it runs.

``Context`` holds the review database, the clock and the settings; the service keeps one, and
the command line, the review feed and the demo get theirs from ``opened``. ``audited`` is an
operation's transaction: the change, the object-level check and the audit entries recorded
through it commit together or not at all. ``refuse`` records a refused access on its own.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy.orm import Session, sessionmaker

from dedup.adjudication import audit_store, database
from dedup.adjudication.access import Actor, Forbidden, Permission
from dedup.settings import AdjudicationSettings, Settings


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Context:
    """What every operation runs with: the review database, the clock and the settings."""

    sessions: sessionmaker[Session]
    settings: AdjudicationSettings
    clock: Callable[[], datetime] = utc_now

    def now(self) -> datetime:
        return self.clock()

    @property
    def lease(self) -> timedelta:
        return timedelta(minutes=self.settings.lease_minutes)


@contextmanager
def opened(settings: Settings) -> Iterator[Context]:
    """The context on the configured review database, migrated to the current schema, for
    the callers outside the service (command line, review feed, demo); closed afterwards."""
    engine = database.connect(settings.adjudication_database_url())
    try:
        database.migrate(engine)
        yield Context(database.sessions(engine), settings.adjudication)
    finally:
        engine.dispose()


@dataclass(frozen=True)
class Audited:
    """An operation's transaction: its session, its time, and the audit entries it writes."""

    db: Session
    now: datetime
    actor: Actor

    def record(
        self,
        permission: Permission | None,
        action: str,
        target: str,
        details: Mapping[str, str] | None = None,
        *,
        outcome: str = "ok",
        actor: Actor | None = None,
    ) -> None:
        """An entry by the transaction's actor (or ``actor``) in the role ``permission`` needs."""
        audit_store.record(
            self.db, actor or self.actor, action, target, permission=permission,
            outcome=outcome, details=details, at=self.now,
        )  # fmt: skip


@contextmanager
def audited(context: Context, actor: Actor) -> Iterator[Audited]:
    """One transaction: what the body changes and the entries it records commit together."""
    with context.sessions() as db, db.begin():
        yield Audited(db, context.now(), actor)


def refuse(
    context: Context, actor: Actor, permission: Permission | None, why: str, target: str
) -> Forbidden:
    """Record a refused access, in a transaction of its own (the refused request changes
    nothing else), and return the exception to raise."""
    with audited(context, actor) as tx:
        details = {**actor.asking, "why": why[:200]}
        tx.record(permission, "access.refused", target, details, outcome="refused")
    return Forbidden(why)

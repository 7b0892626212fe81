"""The review service's record of what the ``apply`` job did with its decisions.

Every merge and split of identities that decisions cause (a supervisor's revision of a decision
already applied among them) is written to the audit chain once, under the identity event's
id, so an auditor can follow a decision from the case to the registry's identities. Recording
the same events again (a re-run, a crash between the audit and the lake) records nothing new.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select

from dedup.adjudication.access import Actor, Permission
from dedup.adjudication.context import Context, audited
from dedup.adjudication.intake import present
from dedup.adjudication.tables import AuditRow

ACTIONS = {"merge": "identity.merge", "split": "identity.split", "renamed": "identity.renamed"}


@dataclass(frozen=True)
class IdentityEvent:
    event_id: str
    kind: str  # merge | split | renamed
    identity_id: str
    others: tuple[str, ...]
    cause: str


def target(event: IdentityEvent) -> str:
    return f"identity-event:{event.event_id}"


def record_identity_events(context: Context, actor: Actor, events: Sequence[IdentityEvent]) -> int:
    """Audit each event not audited before; how many were new."""
    with audited(context, actor) as tx:
        wanted = {target(e): e for e in events}
        done = present(tx.db, AuditRow.target, wanted)
        fresh = [e for t, e in sorted(wanted.items()) if t not in done]
        for event in fresh:
            details = {
                "identity": event.identity_id[:128],
                "others": ",".join(event.others)[:1000],
                "cause": event.cause[:500],
            }
            tx.record(Permission.EXPORT_DECISIONS, ACTIONS[event.kind], target(event), details)
        return len(fresh)


def audited_targets(context: Context, prefix: str) -> set[str]:
    """Targets of the audit log starting with ``prefix`` (for tests and reports)."""
    with context.sessions() as db:
        return set(db.scalars(select(AuditRow.target).where(AuditRow.target.startswith(prefix))))

"""Erasure on legal request, written once for the API and ``dedup erase``.

An enrollment lives in the lake (Delta tables and their history, the jobs' work folders),
in the gallery (its versions) and in the review database. The review service knows only the
last; the lake and the gallery are a ``RecordEraser`` it is given (``create_app(...,
eraser=...)``; ``pipelines.erasure.LakeEraser`` is the one ``dedup serve`` and ``dedup
erase`` build from the settings), so this package never imports the pipelines.

``erase_everywhere`` runs the records' part first, then the queue's part with its audit
entry in one transaction, then makes the deleted rows unreadable in the database's files
(``database.reclaim_deleted``). Every part is idempotent, so a crash anywhere is finished by
erasing again, and erasing twice reports nothing left. The audit entry is written when the
erasure completes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from sqlalchemy import or_, select

from dedup.adjudication import database
from dedup.adjudication.access import Actor, Permission
from dedup.adjudication.context import Context, audited
from dedup.adjudication.queue_erasure import Erasure, erase_enrollment
from dedup.adjudication.tables import AuditRow, CaseCandidate, CaseMember, CaseRow, Subject
from dedup.crash_points import crash_point
from dedup.errors import AdjudicationError

MAX_REASON = 500


class UnknownEnrollment(AdjudicationError):
    """Neither the records nor the review queue know this enrollment id."""


@dataclass(frozen=True)
class RecordErasure:
    """What the records' part of an erasure did. ``removed``: what of the enrollment was
    found and removed, by place (rows, templates, files); ``reclaimed``: housekeeping that
    makes earlier removals final (old data files deleted, log files cut, gallery versions
    pruned); ``identity_renamed_to``: the id its identity goes by now, where it founded one."""

    removed: Mapping[str, int] = field(default_factory=dict)
    reclaimed: Mapping[str, int] = field(default_factory=dict)
    identity_renamed_to: str | None = None

    @property
    def anything(self) -> bool:
        return any(self.removed.values())


class RecordEraser(Protocol):
    """The lake and gallery part of an erasure, idempotent (a second call removes nothing)."""

    def knows(self, enrollment_id: str) -> bool:
        """Whether the records hold (or held, and erased) this enrollment."""
        ...

    def erase(self, enrollment_id: str) -> RecordErasure: ...


@dataclass(frozen=True)
class ErasureReport:
    enrollment_id: str
    queue: Erasure
    records: RecordErasure | None  # None: this service was given no eraser
    database: str  # what reclaiming the deleted rows did

    @property
    def nothing_left(self) -> bool:
        """Nothing of the enrollment was found (it had been erased already)."""
        return not self.queue.anything and not (self.records and self.records.anything)


def erase_everywhere(
    context: Context,
    actor: Actor,
    enrollment_id: str,
    reason: str,
    eraser: RecordEraser | None,
) -> ErasureReport:
    """Erase an enrollment from the records (through ``eraser``) and the review queue, with
    an audit entry of who, when and why; an id nobody knows is refused."""
    why = reason.strip()
    if not why:
        raise AdjudicationError("an erasure needs a reason (the legal request it answers)")
    if len(why) > MAX_REASON:
        raise AdjudicationError(f"the reason is over {MAX_REASON} characters")
    known = eraser is not None and eraser.knows(enrollment_id)
    if not known and not _queue_knows(context, enrollment_id):
        raise UnknownEnrollment(f"no enrollment {enrollment_id!r} in the records or the queue")
    records = None if eraser is None else eraser.erase(enrollment_id)
    crash_point("erasure.before_queue")
    renamed_to = None if records is None else records.identity_renamed_to
    with audited(context, actor) as tx:
        done = erase_enrollment(tx.db, enrollment_id, renamed_to)
        details = {
            "reason": why[:200],
            "cases": str(done.cases_removed),
            "candidacies": str(done.candidate_rows_removed),
            "records": "not wired" if records is None else _figures(records.removed),
        }
        tx.record(Permission.ERASE, "enrollment.erase", f"enrollment:{enrollment_id}", details)
        engine = tx.db.get_bind()
    reclaimed = database.reclaim_deleted(engine)  # type: ignore[arg-type]
    return ErasureReport(enrollment_id, done, records, reclaimed)


def _queue_knows(context: Context, enrollment_id: str) -> bool:
    with context.sessions() as db:
        return any(
            db.scalar(query.limit(1)) is not None
            for query in (
                select(Subject.enrollment_id).where(Subject.enrollment_id == enrollment_id),
                select(CaseRow.case_id).where(CaseRow.probe_id == enrollment_id),
                select(CaseMember.case_id).where(CaseMember.enrollment_id == enrollment_id),
                select(CaseCandidate.case_id).where(
                    or_(
                        CaseCandidate.candidate_id == enrollment_id,
                        CaseCandidate.identity_id == enrollment_id,
                    )
                ),
                # erased before: known, and nothing is left of it
                select(AuditRow.seq).where(
                    AuditRow.action == "enrollment.erase",
                    AuditRow.target == f"enrollment:{enrollment_id}",
                ),
            )
        )


def _figures(removed: Mapping[str, int]) -> str:
    text = ", ".join(f"{place} {n}" for place, n in removed.items() if n) or "nothing left"
    return text[:200]

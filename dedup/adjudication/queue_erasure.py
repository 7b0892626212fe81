"""Erasing an enrollment from the review queue (``queue.erase_enrollment``): its subject,
images, cases, memberships and candidacies, and every catch trial that shows a copy of it
(the copies with it), inside the caller's transaction.

What the database files still hold afterwards is ``database.reclaim_deleted``'s concern.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import delete, or_, select, update
from sqlalchemy.orm import Session

from dedup.adjudication.tables import (
    CaseCandidate,
    CaseMember,
    CaseRow,
    CatchPair,
    CatchSubject,
    JudgementRow,
    Subject,
    SubjectImage,
)


@dataclass(frozen=True)
class Erasure:
    cases_removed: int
    candidate_rows_removed: int
    subject_removed: bool
    members_removed: int = 0  # memberships of group cases that go on deciding the others
    cases_promoted: int = 0  # group cases whose probe was the erased one: the next member leads
    identity_rows_renamed: int = 0  # candidates shown under the erased one's identity id

    @property
    def anything(self) -> bool:
        return bool(
            self.cases_removed or self.candidate_rows_removed or self.subject_removed
            or self.members_removed or self.identity_rows_renamed
        )  # fmt: skip


def erase_enrollment(db: Session, enrollment_id: str, renamed_to: str | None = None) -> Erasure:
    """Remove an enrollment from the queue: its subject, images, cases and candidacies.

    A group case (``case_members``) that also decides other probes stays for them: the
    erased member is removed and, where it was the case's probe, the next member (by id)
    becomes the probe. A case left without members goes, with its judgements. Candidates
    shown under the erased one's identity id (it founded the identity) are shown under
    ``renamed_to``, the id the identity goes by from now on (None: their own).
    """
    x = enrollment_id
    member_of = set(db.scalars(select(CaseMember.case_id).where(CaseMember.enrollment_id == x)))
    probe_of = set(db.scalars(select(CaseRow.case_id).where(CaseRow.probe_id == x)))
    promoted = 0
    dropped: list[str] = []
    for case_id in sorted(member_of | probe_of):
        others = sorted(db.scalars(select(CaseMember.enrollment_id).where(
            CaseMember.case_id == case_id, CaseMember.enrollment_id != x)))  # fmt: skip
        row = db.get(CaseRow, case_id)
        if row is None:
            continue
        if not others or row.catch_pair_id is not None:
            dropped.append(case_id)
            continue
        if row.probe_id == x:
            row.probe_id, row.enqueue_key = others[0], others[0]
            promoted += 1
    db.execute(delete(CaseMember).where(CaseMember.enrollment_id == x))
    pairs = list(
        db.execute(select(CatchPair.id).where(
            or_(CatchPair.probe_id == x, CatchPair.truth_duplicate_of == x,
                CatchPair.source_case_id.in_(dropped)))).scalars()
    )  # fmt: skip
    removed_pairs_cases = list(
        db.execute(select(CaseRow.case_id).where(CaseRow.catch_pair_id.in_(pairs))).scalars()
    )
    # A catch trial showing a copy of the erased one goes whole: its copies with it.
    copied_in = set(db.scalars(select(CatchSubject.case_id).where(CatchSubject.source_id == x)))
    every_case = sorted(set(dropped) | set(removed_pairs_cases) | copied_in)
    delete_cases(db, every_case)
    db.execute(delete(CatchPair).where(CatchPair.id.in_(pairs)))
    candidacies = db.execute(delete(CaseCandidate).where(CaseCandidate.candidate_id == x)).rowcount  # type: ignore[attr-defined]
    renamed = db.execute(
        update(CaseCandidate).where(CaseCandidate.identity_id == x).values(identity_id=renamed_to)
    ).rowcount  # type: ignore[attr-defined]
    db.execute(delete(SubjectImage).where(SubjectImage.enrollment_id == x))
    subject = db.execute(delete(Subject).where(Subject.enrollment_id == x)).rowcount  # type: ignore[attr-defined]
    stayed = len(member_of - set(every_case))
    return Erasure(len(every_case), int(candidacies), bool(subject), stayed, promoted, int(renamed))


def delete_cases(db: Session, case_ids: Sequence[str]) -> None:
    """Delete cases with their judgements, candidates, members and catch-trial copies."""
    if not case_ids:
        return
    copies = select(CatchSubject.subject_id).where(CatchSubject.case_id.in_(case_ids))
    db.execute(delete(SubjectImage).where(SubjectImage.enrollment_id.in_(copies)))
    db.execute(delete(Subject).where(Subject.enrollment_id.in_(copies)))
    db.execute(delete(CatchSubject).where(CatchSubject.case_id.in_(case_ids)))
    db.execute(delete(JudgementRow).where(JudgementRow.case_id.in_(case_ids)))
    db.execute(delete(CaseCandidate).where(CaseCandidate.case_id.in_(case_ids)))
    db.execute(delete(CaseMember).where(CaseMember.case_id.in_(case_ids)))
    db.execute(delete(CaseRow).where(CaseRow.case_id.in_(case_ids)))

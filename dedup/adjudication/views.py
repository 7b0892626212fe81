"""Reading cases for people: the probe and its candidates with their display fields,
capture metadata, quality figures and images, the candidates grouped by identity (several
captures of one person shown together); the supervisor's lists."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from dedup.adjudication.cases import Case, CaseState
from dedup.adjudication.queue import DECIDED, case_row, load_case
from dedup.adjudication.tables import (
    CaseCandidate,
    CaseRow,
    JudgementRow,
    Subject,
    SubjectImage,
)


@dataclass(frozen=True)
class SubjectView:
    enrollment_id: str
    captured_at: datetime | None
    center_id: str | None
    display: dict[str, str]
    quality: dict[str, float]
    images: tuple[str, ...]  # kinds present


@dataclass(frozen=True)
class CandidateView:
    subject: SubjectView
    score: float
    rank: int
    source: str
    identity_id: str | None = None  # None: the candidate is an identity of its own

    @property
    def identity(self) -> str:
        """The identity the candidate is a capture of (its own id when it has none)."""
        return self.identity_id or self.subject.enrollment_id


@dataclass(frozen=True)
class IdentityGroup:
    """The captures of one candidate person in a case, best first.

    Judgements still name one capture (an enrollment id) as ``duplicate_of``; the group is how
    a person is shown, so that the adjudicator compares the probe against a person.
    """

    identity_id: str
    captures: tuple[CandidateView, ...]
    best_score: float
    best_rank: int

    @property
    def best(self) -> CandidateView:
        return self.captures[0]


@dataclass(frozen=True)
class CaseView:
    case_id: str
    row: CaseRow
    case: Case
    probe: SubjectView
    candidates: tuple[CandidateView, ...]
    judgements: tuple[JudgementRow, ...]
    # The candidates by identity, ordered by best score (captures best score first).
    identities: tuple[IdentityGroup, ...] = ()

    def shown_identities(self, scores_visible: bool) -> tuple[IdentityGroup, ...]:
        """The identities in the order a page shows them: by score once scores are visible,
        by rank while they are hidden (an order by score would leak them)."""
        return self.identities if scores_visible else by_identity(self.candidates, by_score=False)


def by_identity(
    candidates: Iterable[CandidateView], *, by_score: bool = True
) -> tuple[IdentityGroup, ...]:
    """Group candidates by identity; captures and groups ordered by score (best first), or by
    rank when ``by_score`` is false. Ties fall back to rank, then to the id, so the order is
    the same on every read.
    """

    def order(c: CandidateView) -> tuple[float, int, str]:
        return (-c.score if by_score else 0.0, c.rank, c.subject.enrollment_id)

    groups: dict[str, list[CandidateView]] = {}
    for candidate in sorted(candidates, key=order):
        groups.setdefault(candidate.identity, []).append(candidate)
    found = [
        IdentityGroup(
            identity,
            tuple(captures),
            max(c.score for c in captures),
            min(c.rank for c in captures),
        )
        for identity, captures in groups.items()
    ]
    return tuple(sorted(found, key=lambda g: (*order(g.best)[:2], g.identity_id)))


def subject_view(db: Session, enrollment_id: str) -> SubjectView:
    row = db.get(Subject, enrollment_id)
    kinds = tuple(
        db.execute(
            select(SubjectImage.kind)
            .where(SubjectImage.enrollment_id == enrollment_id)
            .order_by(SubjectImage.kind)
        ).scalars()
    )
    if row is None:
        return SubjectView(enrollment_id, None, None, {}, {}, kinds)
    return SubjectView(
        enrollment_id,
        row.captured_at,
        row.center_id,
        json.loads(row.display),
        json.loads(row.quality),
        kinds,
    )


def case_view(db: Session, case_id: str) -> CaseView:
    row = case_row(db, case_id)
    candidates = tuple(
        CandidateView(subject_view(db, c.candidate_id), c.score, c.rank, c.source, c.identity_id)
        for c in db.execute(
            select(CaseCandidate)
            .where(CaseCandidate.case_id == case_id)
            .order_by(CaseCandidate.rank, CaseCandidate.candidate_id)
        ).scalars()
    )
    judgements = tuple(
        db.execute(
            select(JudgementRow).where(JudgementRow.case_id == case_id).order_by(JudgementRow.id)
        ).scalars()
    )
    return CaseView(
        case_id,
        row,
        load_case(db, row),
        subject_view(db, row.probe_id),
        candidates,
        judgements,
        by_identity(candidates),
    )


def image(db: Session, case_id: str, enrollment_id: str, kind: str) -> SubjectImage | None:
    """An image of the case's probe or one of its candidates; None for any other."""
    row = case_row(db, case_id)
    in_case = enrollment_id == row.probe_id or (
        db.get(CaseCandidate, (case_id, enrollment_id)) is not None
    )
    if not in_case:
        return None
    return db.get(SubjectImage, (enrollment_id, kind))


def escalated(db: Session, limit: int = 200) -> list[CaseRow]:
    return list(
        db.execute(
            select(CaseRow)
            .where(CaseRow.state == CaseState.ESCALATED.value)
            .order_by(CaseRow.queue_pos)
            .limit(limit)
        ).scalars()
    )


def recently_decided(db: Session, limit: int = 50) -> list[CaseRow]:
    return list(
        db.execute(
            select(CaseRow)
            .where(CaseRow.state.in_([s.value for s in DECIDED]), CaseRow.catch_pair_id.is_(None))
            .order_by(CaseRow.decided_at.desc())
            .limit(limit)
        ).scalars()
    )

"""Reading cases for people: the probe and its candidates with their display fields,
capture metadata, quality figures and images; the supervisor's lists."""

from __future__ import annotations

import json
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


@dataclass(frozen=True)
class CaseView:
    case_id: str
    row: CaseRow
    case: Case
    probe: SubjectView
    candidates: tuple[CandidateView, ...]
    judgements: tuple[JudgementRow, ...]


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
        CandidateView(subject_view(db, c.candidate_id), c.score, c.rank, c.source)
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
        case_id, row, load_case(db, row), subject_view(db, row.probe_id), candidates, judgements
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

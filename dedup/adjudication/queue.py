"""The review queue in its database: import, claim, judge, supervise, export, erase.

Each function works inside the caller's transaction and applies the pure rules of
``dedup.adjudication.cases``, so SQLite and PostgreSQL behave the same. A claim locks its
row with ``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so concurrent claimers never wait on
each other's case; on SQLite the transaction holds the write lock (see ``database``). Every
write to a case also bumps its version, and the write is conditional on the version read, so
even a backend without row locks cannot hand one case to two people.
"""

from __future__ import annotations

import secrets
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session

from dedup.adjudication import cases
from dedup.adjudication.cases import Case, CaseState, Judgement, Lease, Outcome
from dedup.adjudication.queue_erasure import Erasure as Erasure
from dedup.adjudication.queue_erasure import erase_enrollment as erase_enrollment
from dedup.adjudication.tables import (
    CaseCandidate,
    CaseRow,
    JudgementRow,
)
from dedup.errors import AdjudicationError, StaleLease

DECIDED = (
    CaseState.DECIDED_DUPLICATE,
    CaseState.DECIDED_NOT_DUPLICATE,
    CaseState.DECIDED_BY_SUPERVISOR,
)


class CaseNotFound(AdjudicationError):
    """No case has this id (or it was erased)."""


class Conflict(AdjudicationError):
    """The case changed under the caller (another transaction won); nothing was recorded."""


# ---------------------------------------------------------------- cases as domain values


def load_case(db: Session, row: CaseRow) -> Case:
    candidates = tuple(
        db.execute(
            select(CaseCandidate.candidate_id)
            .where(CaseCandidate.case_id == row.case_id)
            .order_by(CaseCandidate.rank, CaseCandidate.candidate_id)
        ).scalars()
    )
    stages = {
        j.stage: j
        for j in db.execute(
            select(JudgementRow)
            .where(JudgementRow.case_id == row.case_id)
            .order_by(JudgementRow.id)
        ).scalars()
    }
    first, second, boss = (_judgement(stages.get(s)) for s in ("first", "second", "supervisor"))
    state = CaseState(row.state)
    final = None
    if state is CaseState.DECIDED_BY_SUPERVISOR:
        final = boss
    elif state is CaseState.DECIDED_DUPLICATE:
        final = second
    elif state is CaseState.DECIDED_NOT_DUPLICATE:
        final = first
    lease = None
    if row.lease_holder and row.lease_token and row.lease_until and row.lease_returns_to:
        lease = Lease(
            row.lease_holder, row.lease_token, row.lease_until, CaseState(row.lease_returns_to)
        )
    return Case(row.probe_id, candidates, state, lease, first, second, final)


def _judgement(row: JudgementRow | None) -> Judgement | None:
    if row is None:
        return None
    return Judgement(row.adjudicator, Outcome(row.outcome), row.duplicate_of, row.reason)


def _store(db: Session, row: CaseRow, case: Case, now: datetime) -> None:
    """Write ``case`` back, only if nobody changed the row since it was read."""
    lease = case.lease
    values = {
        "state": case.state.value,
        "lease_holder": None if lease is None else lease.holder,
        "lease_token": None if lease is None else lease.token,
        "lease_until": None if lease is None else lease.until,
        "lease_returns_to": None if lease is None else lease.returns_to.value,
        "first_adjudicator": None if case.first is None else case.first.adjudicator,
        "version": row.version + 1,
        "decided_at": now if case.state in DECIDED else None,
    }
    if lease is None or case.state is not CaseState.IN_REVIEW:
        values.update(blind_outcome=None, blind_duplicate_of=None)
    done = db.execute(
        update(CaseRow)
        .where(CaseRow.case_id == row.case_id, CaseRow.version == row.version)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    if done.rowcount != 1:  # type: ignore[attr-defined]
        raise Conflict(f"case {row.case_id} changed while it was being updated; try again")
    db.expire(row)


def _add_judgement(
    db: Session, row: CaseRow, stage: str, judgement: Judgement, now: datetime
) -> None:
    db.add(
        JudgementRow(
            case_id=row.case_id,
            stage=stage,
            adjudicator=judgement.adjudicator,
            outcome=judgement.outcome.value,
            duplicate_of=judgement.duplicate_of,
            reason=judgement.reason,
            blind_outcome=row.blind_outcome,
            blind_duplicate_of=row.blind_duplicate_of,
            at=now,
        )
    )


# ---------------------------------------------------------------- opening cases


def new_case_id() -> str:
    """A random case id: it says nothing about the probe or the queue position."""
    return secrets.token_hex(8)


def new_case(
    case_id: str,
    key: str,
    probe: str,
    batch_id: str,
    catch_pair: int | None,
    pos: int,
    now: datetime,
) -> CaseRow:
    """An open case at queue position ``pos``; ``key`` is unique (the probe id for a real
    case, ``catch:<case_id>`` for a catch trial), so a probe gets one real case at most."""
    return CaseRow(
        case_id=case_id,
        enqueue_key=key,
        probe_id=probe,
        batch_id=batch_id,
        catch_pair_id=catch_pair,
        state=CaseState.OPEN.value,
        queue_pos=pos,
        version=0,
        created_at=now,
    )


# ---------------------------------------------------------------- claim and judge


@dataclass(frozen=True)
class Claim:
    case_id: str
    case: Case
    resumed: bool  # the adjudicator already held this case


def claim_next(db: Session, adjudicator: str, now: datetime, lease: timedelta) -> Claim | None:
    """The adjudicator's live case if they hold one, else the next claimable case, leased."""
    held = db.execute(
        select(CaseRow)
        .where(
            CaseRow.state == CaseState.IN_REVIEW.value,
            CaseRow.lease_holder == adjudicator,
            CaseRow.lease_until > now,
        )
        .limit(1)
    ).scalar_one_or_none()
    if held is not None:
        return Claim(held.case_id, load_case(db, held), resumed=True)
    row = db.execute(
        select(CaseRow)
        .where(
            or_(
                CaseRow.state.in_([CaseState.OPEN.value, CaseState.AWAITING_SECOND_REVIEW.value]),
                (CaseRow.state == CaseState.IN_REVIEW.value) & (CaseRow.lease_until <= now),
            ),
            or_(CaseRow.first_adjudicator.is_(None), CaseRow.first_adjudicator != adjudicator),
        )
        .order_by(CaseRow.queue_pos)
        .limit(1)
        .with_for_update(skip_locked=True)
    ).scalar_one_or_none()
    if row is None:
        return None
    claimed = cases.claim(load_case(db, row), adjudicator, secrets.token_urlsafe(24), now, lease)
    case_id = row.case_id
    _store(db, row, claimed, now)
    return Claim(case_id, claimed, resumed=False)


def locked_case(db: Session, case_id: str) -> CaseRow:
    row = db.execute(
        select(CaseRow).where(CaseRow.case_id == case_id).with_for_update()
    ).scalar_one_or_none()
    if row is None:
        raise CaseNotFound(f"no case {case_id}")
    return row


def holds(row: CaseRow, adjudicator: str, now: datetime) -> bool:
    """Whether ``adjudicator`` holds a live lease on the case (the object-level check)."""
    return (
        row.state == CaseState.IN_REVIEW.value
        and row.lease_holder == adjudicator
        and row.lease_until is not None
        and row.lease_until > now
    )


def record_blind(
    db: Session, case_id: str, adjudicator: str, token: str, judgement: Judgement, now: datetime
) -> None:
    """The holder's judgement before the scores are shown; it opens the scores."""
    row = locked_case(db, case_id)
    if not holds(row, adjudicator, now) or row.lease_token != token:
        raise StaleLease(
            f"case {case_id} is not held by {adjudicator} with this lease; nothing was recorded"
        )
    cases.check_judgement(load_case(db, row), judgement)
    row.blind_outcome = judgement.outcome.value
    row.blind_duplicate_of = judgement.duplicate_of


def judge_case(
    db: Session,
    case_id: str,
    token: str,
    judgement: Judgement,
    now: datetime,
    blind_if_missing: bool = False,
) -> Case:
    """Record the holder's judgement. With ``blind_if_missing``, a judgement made without a
    blind one first (scores were never shown) also counts as the blind judgement."""
    row = locked_case(db, case_id)
    before = load_case(db, row)
    after = cases.judge(before, judgement, token, now)
    if blind_if_missing and row.blind_outcome is None:
        row.blind_outcome = judgement.outcome.value
        row.blind_duplicate_of = judgement.duplicate_of
    stage = "first" if before.lease and before.lease.returns_to is CaseState.OPEN else "second"
    _add_judgement(db, row, stage, judgement, now)
    _store(db, row, after, now)
    return after


def supervise_case(db: Session, case_id: str, judgement: Judgement, now: datetime) -> Case:
    row = locked_case(db, case_id)
    after = cases.supervise(load_case(db, row), judgement)
    _add_judgement(db, row, "supervisor", judgement, now)
    _store(db, row, after, now)
    return after


# ---------------------------------------------------------------- reading


def case_row(db: Session, case_id: str) -> CaseRow:
    row = db.get(CaseRow, case_id)
    if row is None:
        raise CaseNotFound(f"no case {case_id}")
    return row


@dataclass(frozen=True)
class QueueDepth:
    by_state: dict[str, int]
    oldest_open: datetime | None


def queue_depth(db: Session, now: datetime) -> QueueDepth:
    """Cases by state as the queue sees them now (an expired lease counts as returned)."""
    counts = Counter({s.value: 0 for s in CaseState})
    for state, n in db.execute(select(CaseRow.state, func.count()).group_by(CaseRow.state)):
        counts[state] += n
    for returns_to, n in db.execute(
        select(CaseRow.lease_returns_to, func.count())
        .where(CaseRow.state == CaseState.IN_REVIEW.value, CaseRow.lease_until <= now)
        .group_by(CaseRow.lease_returns_to)
    ):
        counts[CaseState.IN_REVIEW.value] -= n
        counts[returns_to or CaseState.OPEN.value] += n
    oldest = db.execute(
        select(func.min(CaseRow.created_at)).where(CaseRow.state == CaseState.OPEN.value)
    ).scalar()
    return QueueDepth(dict(counts), oldest)


# ---------------------------------------------------------------- export (erasure: queue_erasure)


@dataclass(frozen=True)
class Decision:
    enrollment_id: str
    batch_id: str
    state: CaseState
    final: Judgement | None
    decided_at: datetime | None
    decided_by: tuple[str, ...]


def decisions(db: Session, batch_id: str | None = None) -> list[Decision]:
    """The decision on every real case (never a catch trial), decided or still pending."""
    query = select(CaseRow).where(CaseRow.catch_pair_id.is_(None)).order_by(CaseRow.probe_id)
    if batch_id is not None:
        query = query.where(CaseRow.batch_id == batch_id)
    out = []
    for row in db.execute(query).scalars():
        case = load_case(db, row)
        decided = case.state in DECIDED
        by = tuple(
            j.adjudicator
            for j in (case.first, case.second, case.final)
            if decided and j is not None
        )
        out.append(
            Decision(
                row.probe_id,
                row.batch_id,
                case.state,
                case.final if decided else None,
                row.decided_at,
                tuple(dict.fromkeys(by)),
            )
        )
    return out

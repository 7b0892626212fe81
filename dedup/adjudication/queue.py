"""The review queue in its database: import, claim, judge, supervise, revise, export, erase.

Each function works inside the caller's transaction and applies the pure rules of
``dedup.adjudication.cases``, so SQLite and PostgreSQL behave the same. A claim locks its
row with ``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so concurrent claimers never wait on
each other's case; on SQLite the transaction holds the write lock (see ``database``). Every
write to a case also bumps its version, and the write is conditional on the version read, so
even a backend without row locks cannot hand one case to two people (``case_rows``).
"""

from __future__ import annotations

import secrets
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, func, or_, select, update
from sqlalchemy.orm import Session

from dedup.adjudication import cases
from dedup.adjudication.case_rows import DECIDED as DECIDED
from dedup.adjudication.case_rows import Conflict as Conflict
from dedup.adjudication.case_rows import add_judgement, judgements_of, store
from dedup.adjudication.case_rows import load_case as load_case
from dedup.adjudication.cases import Case, CaseState, Judgement
from dedup.adjudication.queue_erasure import Erasure as Erasure
from dedup.adjudication.queue_erasure import erase_enrollment as erase_enrollment
from dedup.adjudication.tables import CaseMember, CaseRow, CatchPair, JudgementRow
from dedup.errors import AdjudicationError, StaleLease


class CaseNotFound(AdjudicationError):
    """No case has this id (or it was erased)."""


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
) -> dict[str, Any]:
    """The row of an open case at queue position ``pos``, for a bulk insert into ``cases``;
    ``key`` is unique (the group's first probe for a real case, ``catch:<case_id>`` for a
    catch trial). A real case's members are added with it (``intake``); a catch trial has
    none."""
    return {
        "case_id": case_id,
        "enqueue_key": key,
        "probe_id": probe,
        "batch_id": batch_id,
        "catch_pair_id": catch_pair,
        "state": CaseState.OPEN.value,
        "queue_pos": pos,
        "version": 0,
        "created_at": now,
    }


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
    store(db, row, claimed, now)
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
    add_judgement(db, row, stage, judgement, now)
    store(db, row, after, now)
    return after


def supervise_case(db: Session, case_id: str, judgement: Judgement, now: datetime) -> Case:
    row = locked_case(db, case_id)
    after = cases.supervise(load_case(db, row), judgement)
    add_judgement(db, row, "supervisor", judgement, now)
    store(db, row, after, now)
    return after


def revise_case(db: Session, case_id: str, judgement: Judgement, now: datetime) -> Case:
    """A supervisor's change of a decided case's decision (``cases.revise``): a judgement of
    stage ``revision``, the case's revision one higher, decided now. A catch pair made from
    the case takes the new decision as its truth."""
    row = locked_case(db, case_id)
    if row.catch_pair_id is not None:
        raise AdjudicationError(f"case {case_id} is a catch trial: only real cases are revised")
    after = cases.revise(load_case(db, row), judgement)
    add_judgement(db, row, "revision", judgement, now)
    store(db, row, after, now)
    db.execute(
        update(CatchPair)
        .where(CatchPair.source_case_id == case_id)
        .values(truth_outcome=judgement.outcome.value, truth_duplicate_of=judgement.duplicate_of)
    )
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
    """The decision on one enrollment: its case's, for every member of the case. ``final``
    (None until decided) says "duplicate of X" (every member is the same person as X; X may
    be a member itself, the one the others duplicate) or "not duplicate" (no member is a
    duplicate of a candidate or of another member). ``revision`` counts a supervisor's
    changes: ``case:<case_id>@<revision>`` names the decision wherever it is applied."""

    enrollment_id: str
    batch_id: str
    case_id: str
    state: CaseState
    final: Judgement | None
    decided_at: datetime | None
    decided_by: tuple[str, ...]  # everyone who judged the case, in order, once each
    revision: int


def decisions(db: Session, batch_id: str | None = None) -> list[Decision]:
    """One row per member of every real case (never a catch trial), decided or still
    pending, ordered by enrollment; ``batch_id`` None: every batch. Three queries, however
    many cases."""
    real: list[ColumnElement[bool]] = [CaseRow.catch_pair_id.is_(None)]
    if batch_id is not None:
        real.append(CaseRow.batch_id == batch_id)
    judged: dict[str, list[JudgementRow]] = {}
    for j in db.scalars(select(JudgementRow).join(CaseRow).where(*real).order_by(JudgementRow.id)):
        judged.setdefault(j.case_id, []).append(j)
    members: dict[str, list[str]] = {}
    for case_id, member in db.execute(
        select(CaseMember.case_id, CaseMember.enrollment_id).join(CaseRow).where(*real)
    ):
        members.setdefault(case_id, []).append(member)
    out = []
    for row in db.scalars(select(CaseRow).where(*real)):
        state, rows = CaseState(row.state), judged.get(row.case_id, [])
        decided = state in DECIDED
        final = judgements_of(state, rows)[2] if decided else None
        by = tuple(dict.fromkeys(j.adjudicator for j in rows)) if decided else ()
        out += [
            Decision(m, row.batch_id, row.case_id, state, final, row.decided_at, by, row.revision)
            for m in members.get(row.case_id, ())
        ]
    return sorted(out, key=lambda d: d.enrollment_id)

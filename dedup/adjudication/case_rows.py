"""A case's rows and the ``Case`` value they hold: read with its candidates and judgements,
written back only if nobody changed the row since it was read.

``queue`` applies the pure rules of ``cases`` between the two. A case's decision is its
latest decisive judgement: the first (not duplicate), the second (duplicate confirmed), or
the latest supervisor or revision judgement.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from dedup.adjudication import cases
from dedup.adjudication.cases import Case, CaseState, Judgement, Lease, Outcome
from dedup.adjudication.tables import CaseCandidate, CaseRow, JudgementRow
from dedup.errors import AdjudicationError

DECIDED = tuple(sorted(cases.DECIDED))  # for ``IN`` lists

# Judgement stages; a supervisor's decision and a revision both decide a supervisor's case.
SUPERVISOR_STAGES = ("supervisor", "revision")


class Conflict(AdjudicationError):
    """The case changed under the caller (another transaction won); nothing was recorded."""


def load_case(db: Session, row: CaseRow) -> Case:
    candidates = tuple(
        db.execute(
            select(CaseCandidate.candidate_id)
            .where(CaseCandidate.case_id == row.case_id)
            .order_by(CaseCandidate.rank, CaseCandidate.candidate_id)
        ).scalars()
    )
    judged = db.execute(
        select(JudgementRow).where(JudgementRow.case_id == row.case_id).order_by(JudgementRow.id)
    ).scalars()
    state = CaseState(row.state)
    first, second, final = judgements_of(state, judged)
    lease = None
    if row.lease_holder and row.lease_token and row.lease_until and row.lease_returns_to:
        lease = Lease(
            row.lease_holder, row.lease_token, row.lease_until, CaseState(row.lease_returns_to)
        )
    revision = row.revision or 0
    return Case(row.probe_id, candidates, state, lease, first, second, final, revision)


def judgements_of(
    state: CaseState, rows: Iterable[JudgementRow]
) -> tuple[Judgement | None, Judgement | None, Judgement | None]:
    """A case's first and second judgements and its decision (None until decided), from its
    judgement rows in the order they were made."""
    stages: dict[str, JudgementRow] = {}
    for j in rows:
        # The latest of each stage; a revision overrides the supervisor's decision before it.
        stages["boss" if j.stage in SUPERVISOR_STAGES else j.stage] = j
    first, second, boss = (_judgement(stages.get(s)) for s in ("first", "second", "boss"))
    final = {
        CaseState.DECIDED_BY_SUPERVISOR: boss,
        CaseState.DECIDED_DUPLICATE: second,
        CaseState.DECIDED_NOT_DUPLICATE: first,
    }.get(state)
    return first, second, final


def _judgement(row: JudgementRow | None) -> Judgement | None:
    if row is None:
        return None
    return Judgement(row.adjudicator, Outcome(row.outcome), row.duplicate_of, row.reason)


def store(db: Session, row: CaseRow, case: Case, now: datetime) -> None:
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
        "revision": case.revision,
        "decided_at": now if case.state in DECIDED else None,
        "claimed_at": _claimed_at(row, lease, now),
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


def _claimed_at(row: CaseRow, lease: Lease | None, now: datetime) -> datetime | None:
    """When the lease was taken: a new lease (token) starts the clock of time per case."""
    if lease is None:
        return None
    return row.claimed_at if lease.token == row.lease_token else now


def add_judgement(
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
            claimed_at=row.claimed_at,
        )
    )

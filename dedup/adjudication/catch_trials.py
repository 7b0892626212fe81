"""Catch trials: decided real cases replayed into the queue, to measure each adjudicator.

A supervisor marks a decided real case as a known pair (its final decision is the truth) and
sets a rate. Each import then seeds about ``rate × new cases`` catch cases among the batch's
new ones (``intake`` shuffles them into the same random queue positions), each replaying a
known pair's probe and candidates. Their judgements measure each adjudicator's accuracy
against the truth, and how often a decision changed after the scores were shown; they are
never exported as decisions.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from dedup.adjudication.queue import DECIDED, CaseNotFound, load_case, new_case, new_case_id
from dedup.adjudication.tables import (
    CaseCandidate,
    CaseRow,
    CatchPair,
    JudgementRow,
    ServiceSetting,
)
from dedup.errors import AdjudicationError

CATCH_RATE_KEY = "catch_rate"


def catch_rate(db: Session) -> float:
    row = db.get(ServiceSetting, CATCH_RATE_KEY)
    return 0.0 if row is None else float(row.value)


def set_catch_rate(db: Session, rate: float) -> None:
    if not 0.0 <= rate <= 0.5:
        raise AdjudicationError("the catch-trial rate is a fraction between 0 and 0.5")
    row = db.get(ServiceSetting, CATCH_RATE_KEY)
    if row is None:
        db.add(ServiceSetting(key=CATCH_RATE_KEY, value=repr(rate)))
    else:
        row.value = repr(rate)


def add_catch_pair(db: Session, source_case_id: str, by: str, now: datetime) -> CatchPair:
    """Make a decided real case a known pair; its final decision is the truth."""
    row = db.get(CaseRow, source_case_id)
    if row is None:
        raise CaseNotFound(f"no case {source_case_id}")
    if row.catch_pair_id is not None:
        raise AdjudicationError("a catch trial cannot be the source of another")
    case = load_case(db, row)
    if case.state not in DECIDED or case.final is None:
        raise AdjudicationError(f"case {source_case_id} is {case.state}; only decided cases")
    if db.execute(select(CatchPair).where(CatchPair.source_case_id == source_case_id)).first():
        raise AdjudicationError(f"case {source_case_id} is already a catch pair")
    pair = CatchPair(
        source_case_id=source_case_id,
        probe_id=row.probe_id,
        truth_outcome=case.final.outcome.value,
        truth_duplicate_of=case.final.duplicate_of,
        created_by=by,
        created_at=now,
        active=True,
    )
    db.add(pair)
    db.flush()
    return pair


def planned(db: Session, real: int, rng: random.Random) -> list[CatchPair]:
    """The known pairs to replay among ``real`` new cases (a pair may come twice)."""
    rate = catch_rate(db)
    pairs = list(db.execute(select(CatchPair).where(CatchPair.active)).scalars())
    if rate <= 0 or not pairs or real == 0:
        return []
    # Expected rate * real catch trials; the fractional part is drawn, so small batches get some.
    wanted = rate * real
    count = int(wanted) + (1 if rng.random() < wanted - int(wanted) else 0)
    return [rng.choice(pairs) for _ in range(count)]


def add_trial_case(db: Session, pair: CatchPair, batch_id: str, pos: int, now: datetime) -> None:
    """A catch case replaying ``pair`` at queue position ``pos``, filed under ``batch_id`` like
    the real cases around it."""
    case_id = new_case_id()
    db.add(CaseRow(**new_case(case_id, f"catch:{case_id}", pair.probe_id, batch_id, pair.id,
                              pos, now)))  # fmt: skip
    db.flush()
    for source in db.execute(
        select(CaseCandidate).where(CaseCandidate.case_id == pair.source_case_id)
    ).scalars():
        db.add(
            CaseCandidate(
                case_id=case_id,
                candidate_id=source.candidate_id,
                score=source.score,
                rank=source.rank,
                source=source.source,
                # as the real case showed them: a trial must not be told by its layout
                identity_id=source.identity_id,
            )
        )


@dataclass(frozen=True)
class Accuracy:
    adjudicator: str
    trials: int
    correct: int
    changed_after_scores: int  # judgements that differ from the blind one

    @property
    def rate(self) -> float | None:
        return None if self.trials == 0 else self.correct / self.trials


def accuracy(db: Session) -> list[Accuracy]:
    """Each adjudicator's judgements on catch trials against the known truth."""
    rows = db.execute(
        select(JudgementRow, CatchPair)
        .join(CaseRow, CaseRow.case_id == JudgementRow.case_id)
        .join(CatchPair, CatchPair.id == CaseRow.catch_pair_id)
        .where(JudgementRow.stage.in_(["first", "second"]))
    ).all()
    trials: Counter[str] = Counter()
    correct: Counter[str] = Counter()
    changed: Counter[str] = Counter()
    for judgement, pair in rows:
        trials[judgement.adjudicator] += 1
        if (judgement.outcome, judgement.duplicate_of) == (
            pair.truth_outcome,
            pair.truth_duplicate_of,
        ):
            correct[judgement.adjudicator] += 1
        if judgement.blind_outcome is not None and (
            judgement.blind_outcome,
            judgement.blind_duplicate_of,
        ) != (judgement.outcome, judgement.duplicate_of):
            changed[judgement.adjudicator] += 1
    return [Accuracy(a, trials[a], correct[a], changed[a]) for a in sorted(trials)]

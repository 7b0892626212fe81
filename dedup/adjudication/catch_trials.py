"""Catch trials: decided real cases replayed into the queue, to measure each adjudicator.

A supervisor marks a decided real case as a known pair (its final decision is the truth) and
sets a rate. Each import then seeds about ``rate × new cases`` catch cases among the batch's
new ones (``intake`` shuffles them into the same random queue positions), each replaying a
known pair's probe and candidates as copies under fresh ids (``catch_subjects`` maps them
back), so that no id tells a trial from the real case. Their judgements measure each
adjudicator's accuracy against the truth, and how often a decision changed after the scores
were shown; they are never exported as decisions.
"""

from __future__ import annotations

import random
import string
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from dedup.adjudication.queue import DECIDED, CaseNotFound, load_case, new_case, new_case_id
from dedup.adjudication.queue_erasure import delete_cases
from dedup.adjudication.tables import (
    CaseCandidate,
    CaseRow,
    CatchPair,
    CatchSubject,
    JudgementRow,
    ServiceSetting,
    Subject,
    SubjectImage,
)
from dedup.errors import AdjudicationError
from dedup.proportions import TrialAccuracy

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
    the real cases around it. Its probe and candidates are copies of the real subjects under
    fresh ids (``copy_subjects``): an adjudicator who saw the real case sees other ids."""
    case_id = new_case_id()
    sources = list(
        db.execute(
            select(CaseCandidate).where(CaseCandidate.case_id == pair.source_case_id)
        ).scalars()
    )
    fresh = fresh_ids(db, [pair.probe_id, *(c.candidate_id for c in sources)])
    db.add(CaseRow(**new_case(case_id, f"catch:{case_id}", fresh[pair.probe_id], batch_id,
                              pair.id, pos, now)))  # fmt: skip
    db.flush()
    copy_subjects(db, case_id, fresh)
    labels = fresh_ids(db, [c.identity_id for c in sources if c.identity_id not in fresh])
    for source in sources:
        identity = source.identity_id
        db.add(
            CaseCandidate(
                case_id=case_id,
                candidate_id=fresh[source.candidate_id],
                score=source.score,
                rank=source.rank,
                source=source.source,
                # grouped as the real case showed them, under fresh labels
                identity_id=None if identity is None else fresh.get(identity, labels.get(identity)),
            )
        )


def fresh_ids(db: Session, real: Iterable[str | None]) -> dict[str, str]:
    """A fresh random id for each real id, of the same shape (each digit a random digit, each
    letter a random letter of its case; the rest kept), so that it looks like any other
    enrollment id, and held by no subject the queue has."""
    out: dict[str, str] = {}
    for original in dict.fromkeys(r for r in real if r is not None):
        for _ in range(100):
            candidate = "".join(_random_like(ch) for ch in original)
            if candidate not in out.values() and db.get(Subject, candidate) is None:
                out[original] = candidate
                break
        else:
            raise AdjudicationError(f"no fresh id of the shape of {original!r} is free")
    return out


def _random_like(ch: str) -> str:
    pool = next((p for p in _POOLS if ch in p), None)
    return ch if pool is None else _RNG.choice(pool)


_POOLS = (string.digits, string.ascii_lowercase, string.ascii_uppercase)
_RNG = random.SystemRandom()


def copy_subjects(db: Session, case_id: str, fresh: dict[str, str]) -> None:
    """Copy each real subject (display fields, capture, quality, images) under its fresh id,
    and record the mapping (``CatchSubject``) for accuracy, erasure and the audit log."""
    for real, copy in fresh.items():
        subject = db.get(Subject, real)
        db.add(
            Subject(
                enrollment_id=copy,
                batch_id=None if subject is None else subject.batch_id,
                captured_at=None if subject is None else subject.captured_at,
                center_id=None if subject is None else subject.center_id,
                display="{}" if subject is None else subject.display,
                quality="{}" if subject is None else subject.quality,
            )
        )
        db.add(CatchSubject(subject_id=copy, case_id=case_id, source_id=real))
    db.flush()
    for real, copy in fresh.items():
        for image in db.execute(
            select(SubjectImage).where(SubjectImage.enrollment_id == real)
        ).scalars():
            db.add(
                SubjectImage(
                    enrollment_id=copy, kind=image.kind, media_type=image.media_type,
                    data=image.data,
                )
            )  # fmt: skip


def withdraw_trials_showing(db: Session, copies: Iterable[str]) -> int:
    """Delete the catch trials showing any of ``copies``: an import names one of them as a
    real enrollment (a fresh id can match a registry id the queue had not seen yet), and the
    real subject must not be shadowed by the copy. How many trials went."""
    wanted = sorted(set(copies))
    cases = sorted(set(db.scalars(select(CatchSubject.case_id).where(
        CatchSubject.subject_id.in_(wanted)))))  # fmt: skip
    delete_cases(db, cases)
    return len(cases)


def sources_of(db: Session, subject_ids: Iterable[str]) -> dict[str, str]:
    """The real enrollment behind each catch-trial copy among ``subject_ids``."""
    wanted = sorted(set(subject_ids))
    if not wanted:
        return {}
    rows = db.execute(
        select(CatchSubject.subject_id, CatchSubject.source_id).where(
            CatchSubject.subject_id.in_(wanted)
        )
    )
    return {copy: real for copy, real in rows}


@dataclass(frozen=True)
class Accuracy(TrialAccuracy):
    adjudicator: str
    trials: int
    correct: int
    changed_after_scores: int  # judgements that differ from the blind one


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
    real = sources_of(db, (j.duplicate_of for j, _ in rows if j.duplicate_of is not None))
    for judgement, pair in rows:
        trials[judgement.adjudicator] += 1
        named = judgement.duplicate_of
        # A trial's judgement names a copy: the truth names the real enrollment.
        if (judgement.outcome, None if named is None else real.get(named, named)) == (
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

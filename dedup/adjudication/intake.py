"""Filling the queue: importing a batch's candidates, and seeding catch trials into it.

Import is idempotent per batch (a second import of the same batch creates nothing) and per
probe (an enrollment already in a case gets no second one). New cases take random positions
after every existing case, and catch trials are shuffled in among them, so an adjudicator
cannot tell a catch trial by where it sits in the queue. Catch trials replay a decided real
case whose final decision is the known answer; their judgements measure each adjudicator's
accuracy, and they are never exported as decisions.
"""

from __future__ import annotations

import json
import random
import secrets
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import InstrumentedAttribute, Session

from dedup.adjudication.cases import CaseState
from dedup.adjudication.payloads import BatchImport, ImportResult
from dedup.adjudication.queue import DECIDED, CaseNotFound, load_case
from dedup.adjudication.tables import (
    Batch,
    CaseCandidate,
    CaseRow,
    CatchPair,
    JudgementRow,
    ServiceSetting,
    Subject,
    SubjectImage,
)
from dedup.errors import AdjudicationError

CATCH_RATE_KEY = "catch_rate"


def import_batch(
    db: Session,
    batch_id: str,
    payload: BatchImport,
    by: str,
    now: datetime,
    max_image_bytes: int,
    rng: random.Random | None = None,
    part: int = 1,
    parts: int = 1,
) -> ImportResult:
    """One case per probe with candidates; importing the same batch (part) again creates
    nothing. A large batch comes in ``parts`` requests, each holding whole probes: every
    candidate row of a probe in the same part."""
    if not 1 <= part <= parts:
        raise AdjudicationError(f"part {part} of {parts}: parts are numbered 1 to {parts}")
    earlier = list(db.scalars(select(Batch).where(Batch.batch_id == batch_id).with_for_update()))
    if any(b.parts != parts or b.model_id != payload.model_id for b in earlier):
        raise AdjudicationError(
            f"batch {batch_id} was imported as {earlier[0].parts} part(s) of model "
            f"{earlier[0].model_id}; this part says {parts} of {payload.model_id}"
        )
    done = next((b for b in earlier if b.part == part), None)
    if done is not None:
        return ImportResult(
            batch_id=batch_id,
            already_imported=True,
            cases_created=0,
            cases_skipped=done.cases,
            catch_trials_seeded=0,
        )
    images = _checked_images(payload, max_image_bytes)
    by_probe: dict[str, list[tuple[str, float, int, str]]] = {}
    for row in payload.candidates:
        if row.probe_id == row.candidate_id:
            raise AdjudicationError(f"probe {row.probe_id} is listed as its own candidate")
        by_probe.setdefault(row.probe_id, []).append(
            (row.candidate_id, row.score, row.rank, row.source)
        )
    named = {c for rows in by_probe.values() for c, *_ in rows} | set(by_probe)
    _add_subjects(db, payload, images, named)

    taken = present(db, CaseRow.enqueue_key, by_probe)
    split = present(db, CaseRow.enqueue_key, taken, CaseRow.batch_id == batch_id) if earlier else ()
    if split:
        raise AdjudicationError(
            f"probe {min(split)} already has a case from an earlier part of batch {batch_id}: "
            "send all of a probe's candidates in one part"
        )
    fresh = [p for p in sorted(by_probe) if p not in taken]
    rng = rng or random.Random(secrets.randbits(64))
    catch = _catch_plan(db, len(fresh), rng)
    positions = _positions(db, len(fresh) + len(catch), rng)
    rows: list[CaseCandidate] = []
    for probe, pos in zip(fresh, positions[: len(fresh)], strict=True):
        case_id = _new_case_id()
        db.add(_new_case(case_id, probe, probe, batch_id, None, pos, now))
        best: dict[str, tuple[float, int, str]] = {}
        for candidate, score, rank, source in by_probe[probe]:
            if candidate not in best or score > best[candidate][0]:
                best[candidate] = (score, rank, source)
        rows += [
            CaseCandidate(case_id=case_id, candidate_id=c, score=s, rank=r, source=src)
            for c, (s, r, src) in best.items()
        ]
    db.flush()  # cases before the rows that refer to them
    db.add_all(rows)
    for pair, pos in zip(catch, positions[len(fresh) :], strict=True):
        _add_catch_case(db, pair, batch_id, pos, now)
    db.add(
        Batch(
            batch_id=batch_id,
            part=part,
            parts=parts,
            model_id=payload.model_id,
            imported_at=now,
            imported_by=by,
            cases=len(fresh),
            candidates=len(payload.candidates),
        )
    )
    db.flush()
    return ImportResult(
        batch_id=batch_id,
        already_imported=False,
        cases_created=len(fresh),
        cases_skipped=len(by_probe) - len(fresh),
        catch_trials_seeded=len(catch),
    )


# Values bound per IN list: under SQLite's 32,766 variables and PostgreSQL's 65,535.
IN_CHUNK = 10_000


def present(
    db: Session,
    column: InstrumentedAttribute[str],
    values: Iterable[str],
    *where: ColumnElement[bool],
) -> set[str]:
    """Which of ``values`` the column holds (in rows matching ``where``), asked in chunks: a
    batch can name hundreds of thousands."""
    wanted = sorted(set(values))
    found: set[str] = set()
    for start in range(0, len(wanted), IN_CHUNK):
        chunk = wanted[start : start + IN_CHUNK]
        found.update(db.scalars(select(column).where(column.in_(chunk), *where)))
    return found


def import_details(result: ImportResult) -> dict[str, str]:
    """What an import's audit entry records."""
    return {
        "cases_created": str(result.cases_created),
        "already_imported": str(result.already_imported).lower(),
        "catch_trials": str(result.catch_trials_seeded),
    }


def _checked_images(
    payload: BatchImport, max_bytes: int
) -> dict[tuple[str, str], tuple[str, bytes]]:
    images: dict[tuple[str, str], tuple[str, bytes]] = {}
    for subject in payload.subjects:
        for kind, image in subject.images.items():
            try:
                data = image.data()
            except ValueError as exc:
                raise AdjudicationError(f"{subject.enrollment_id} {kind}: {exc}") from None
            if len(data) > max_bytes:
                raise AdjudicationError(
                    f"{subject.enrollment_id} {kind}: {len(data)} bytes is over the limit of "
                    f"{max_bytes} (adjudication.max_image_bytes)"
                )
            images[(subject.enrollment_id, kind)] = (image.media_type, data)
    return images


def _add_subjects(
    db: Session,
    payload: BatchImport,
    images: dict[tuple[str, str], tuple[str, bytes]],
    named: set[str],
) -> None:
    given = {s.enrollment_id: s for s in payload.subjects}
    known = present(db, Subject.enrollment_id, given)
    for enrollment_id, subject in given.items():
        if enrollment_id in known:
            continue  # first import wins: a subject's record never changes under a case
        db.add(
            Subject(
                enrollment_id=enrollment_id,
                batch_id=subject.batch_id,
                captured_at=subject.captured_at,
                center_id=subject.center_id,
                display=json.dumps(subject.display, sort_keys=True),
                quality=json.dumps(subject.quality, sort_keys=True),
            )
        )
    db.flush()  # subjects before their images
    for enrollment_id, subject in given.items():
        if enrollment_id in known:
            continue
        for kind in subject.images:
            media_type, data = images[(enrollment_id, kind)]
            db.add(SubjectImage(enrollment_id=enrollment_id, kind=kind, media_type=media_type,
                                data=data))  # fmt: skip
    db.flush()


def _new_case_id() -> str:
    return secrets.token_hex(8)


def _new_case(
    case_id: str,
    key: str,
    probe: str,
    batch_id: str,
    catch_pair: int | None,
    pos: int,
    now: datetime,
) -> CaseRow:
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


def _positions(db: Session, count: int, rng: random.Random) -> list[int]:
    """``count`` fresh queue positions after every existing one, in random order."""
    start = (db.execute(select(func.max(CaseRow.queue_pos))).scalar() or 0) + 1
    slots = list(range(start, start + count))
    rng.shuffle(slots)
    return slots


# ---------------------------------------------------------------- catch trials


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


def _catch_plan(db: Session, real: int, rng: random.Random) -> list[CatchPair]:
    rate = catch_rate(db)
    pairs = list(db.execute(select(CatchPair).where(CatchPair.active)).scalars())
    if rate <= 0 or not pairs or real == 0:
        return []
    # Expected rate * real catch trials; the fractional part is drawn, so small batches get some.
    wanted = rate * real
    count = int(wanted) + (1 if rng.random() < wanted - int(wanted) else 0)
    return [rng.choice(pairs) for _ in range(count)]


def _add_catch_case(db: Session, pair: CatchPair, batch_id: str, pos: int, now: datetime) -> None:
    case_id = _new_case_id()
    db.add(_new_case(case_id, f"catch:{case_id}", pair.probe_id, batch_id, pair.id, pos, now))
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

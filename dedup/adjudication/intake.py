"""Filling the queue: importing a batch's candidates, with the catch trials seeded into it.

Import is idempotent per batch (a second import of the same batch creates nothing) and per
probe (an enrollment already in a case gets no second one). New cases take random positions
after every existing case, and catch trials (see ``catch_trials``) are shuffled in among them,
so an adjudicator cannot tell a catch trial by where it sits in the queue.
"""

from __future__ import annotations

import json
import random
import secrets
from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import InstrumentedAttribute, Session

from dedup.adjudication import catch_trials
from dedup.adjudication.payloads import BatchImport, ImportResult
from dedup.adjudication.queue import new_case, new_case_id
from dedup.adjudication.tables import (
    Batch,
    CaseCandidate,
    CaseRow,
    Subject,
    SubjectImage,
)
from dedup.errors import AdjudicationError


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
    identity: dict[str, str | None] = {}
    for row in payload.candidates:
        if row.probe_id == row.candidate_id:
            raise AdjudicationError(f"probe {row.probe_id} is listed as its own candidate")
        by_probe.setdefault(row.probe_id, []).append(
            (row.candidate_id, row.score, row.rank, row.source)
        )
        if row.identity_id not in (None, row.candidate_id):
            identity[row.candidate_id] = row.identity_id
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
    catch = catch_trials.planned(db, len(fresh), rng)
    positions = _positions(db, len(fresh) + len(catch), rng)
    rows: list[CaseCandidate] = []
    for probe, pos in zip(fresh, positions[: len(fresh)], strict=True):
        case_id = new_case_id()
        db.add(new_case(case_id, probe, probe, batch_id, None, pos, now))
        best: dict[str, tuple[float, int, str]] = {}
        for candidate, score, rank, source in by_probe[probe]:
            if candidate not in best or score > best[candidate][0]:
                best[candidate] = (score, rank, source)
        rows += [
            CaseCandidate(
                case_id=case_id,
                candidate_id=c,
                score=s,
                rank=r,
                source=src,
                identity_id=identity.get(c),
            )
            for c, (s, r, src) in best.items()
        ]
    db.flush()  # cases before the rows that refer to them
    db.add_all(rows)
    for pair, pos in zip(catch, positions[len(fresh) :], strict=True):
        catch_trials.add_trial_case(db, pair, batch_id, pos, now)
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


def _positions(db: Session, count: int, rng: random.Random) -> list[int]:
    """``count`` fresh queue positions after every existing one, in random order."""
    start = (db.execute(select(func.max(CaseRow.queue_pos))).scalar() or 0) + 1
    slots = list(range(start, start + count))
    rng.shuffle(slots)
    return slots

"""Filling the queue: importing a batch's candidates, with the catch trials seeded into it.

One case per group of the batch's probes that matched each other: the connected groups of
the graph whose edges are the ``batch`` rows (a probe that matched only the gallery is a
group of one). Its members are the group; its candidates every candidate of a member, the
other members included, so that an adjudicator can decide "duplicate of B" for a group.

Import is idempotent per batch (a second import of the same batch creates nothing) and per
enrollment (a group with a member already in a case gets no case). New cases take random
positions after every existing case, and catch trials (see ``catch_trials``) are shuffled in
among them, so an adjudicator cannot tell a catch trial by where it sits in the queue.
"""

from __future__ import annotations

import json
import random
import secrets
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, func, insert, select, text
from sqlalchemy.orm import InstrumentedAttribute, Session

from dedup.adjudication import catch_trials
from dedup.adjudication.payloads import BatchImport, CandidateIn, ImportResult
from dedup.adjudication.queue import new_case, new_case_id
from dedup.adjudication.tables import (
    Batch,
    CaseCandidate,
    CaseMember,
    CaseRow,
    CatchSubject,
    Subject,
    SubjectImage,
)
from dedup.contracts.schemas import CandidateSource
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
    """One case per group of probes that matched each other (see the module); importing the
    same batch (part) again creates nothing. A large batch comes in ``parts`` requests, each
    holding whole groups: every candidate row of every member in the same part."""
    if not 1 <= part <= parts:
        raise AdjudicationError(f"part {part} of {parts}: parts are numbered 1 to {parts}")
    _one_import_at_a_time(db)
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
    by_probe: dict[str, list[CandidateIn]] = {}
    identity: dict[str, str] = {}
    for row in payload.candidates:
        if row.probe_id == row.candidate_id:
            raise AdjudicationError(f"probe {row.probe_id} is listed as its own candidate")
        by_probe.setdefault(row.probe_id, []).append(row)
        if row.identity_id not in (None, row.candidate_id):
            identity[row.candidate_id] = row.identity_id
    named = {r.candidate_id for r in payload.candidates} | set(by_probe)
    catch_trials.withdraw_trials_showing(db, present(db, CatchSubject.subject_id, named))
    _add_subjects(db, payload, images, named)

    groups = probe_groups(payload.candidates)
    members = [m for group in groups for m in group]
    # Taken: a member of a real case, or a case's key (so a new case's key is free).
    taken = present(db, CaseMember.enrollment_id, members) | present(
        db, CaseRow.enqueue_key, members
    )
    if earlier and taken:
        of_batch = select(CaseRow.case_id).where(CaseRow.batch_id == batch_id)
        split = present(db, CaseMember.enrollment_id, taken, CaseMember.case_id.in_(of_batch))
        if split:
            raise AdjudicationError(
                f"probe {min(split)} already has a case from an earlier part of batch "
                f"{batch_id}: send all of a probe's candidates, and those of the probes of "
                "the batch it matched, in one part"
            )
    fresh = [group for group in groups if taken.isdisjoint(group)]
    rng = rng or random.Random(secrets.randbits(64))
    catch = catch_trials.planned(db, len(fresh), rng)
    positions = _positions(db, len(fresh) + len(catch), rng)
    cases: list[dict[str, Any]] = []
    members_of: list[dict[str, Any]] = []
    candidates: list[dict[str, Any]] = []
    for group, pos in zip(fresh, positions[: len(fresh)], strict=True):
        case_id = new_case_id()
        cases.append(new_case(case_id, group[0], group[0], batch_id, None, pos, now))
        members_of += [{"case_id": case_id, "enrollment_id": m} for m in group]
        candidates += case_candidates(case_id, group, by_probe, identity)
    # Cases before the rows that refer to them.
    for table, rows in ((CaseRow, cases), (CaseMember, members_of), (CaseCandidate, candidates)):
        bulk_insert(db, table, rows)
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
        cases_skipped=len(groups) - len(fresh),
        catch_trials_seeded=len(catch),
    )


def probe_groups(rows: Iterable[CandidateIn]) -> list[tuple[str, ...]]:
    """The probes in connected groups under the ``batch`` rows (both ends of such a row are
    probes of the batch), each group sorted, the groups in the order of their first member.

    >>> def row(p: str, c: str, source: str) -> CandidateIn:
    ...     return CandidateIn(probe_id=p, candidate_id=c, score=0.9, rank=1, source=source)
    >>> probe_groups([row("C", "B", "batch"), row("A", "G1", "gallery"), row("B", "D", "batch")])
    [('A',), ('B', 'C', 'D')]
    """
    parent: dict[str, str] = {}

    def root(node: str) -> str:
        parent.setdefault(node, node)
        while parent[node] != node:
            parent[node] = parent[parent[node]]  # path halving
            node = parent[node]
        return node

    for row in rows:
        probe = root(row.probe_id)
        if row.source == CandidateSource.BATCH:
            other = root(row.candidate_id)
            if other != probe:
                parent[max(probe, other)] = min(probe, other)
    groups: dict[str, list[str]] = {}
    for node in list(parent):
        groups.setdefault(root(node), []).append(node)
    return sorted(tuple(sorted(group)) for group in groups.values())


def case_candidates(
    case_id: str,
    group: tuple[str, ...],
    by_probe: dict[str, list[CandidateIn]],
    identity: dict[str, str],
) -> list[dict[str, Any]]:
    """The candidate rows of a group's case: every candidate of a member at its best score,
    and every member but the first (the case's probe), ranked by score; ``identity`` is the
    identity a candidate belongs to, where it is another enrollment's. A member that only
    ever named others (its match with them one-sided) is shown at its best match within the
    group."""
    inside = set(group)
    best: dict[str, CandidateIn] = {}
    for member in group:
        for row in by_probe.get(member, ()):
            c = row.candidate_id
            if c != group[0] and (c not in best or row.score > best[c].score):
                best[c] = row
    for member in group[1:]:
        if member not in best:
            best[member] = max(
                (r for r in by_probe[member] if r.candidate_id in inside), key=lambda r: r.score
            )
    ranked = sorted(best.items(), key=lambda item: (-item[1].score, item[1].rank, item[0]))
    return [
        {
            "case_id": case_id,
            "candidate_id": candidate,
            "score": row.score,
            "rank": rank,
            "source": CandidateSource.BATCH.value if candidate in inside else row.source.value,
            "identity_id": identity.get(candidate),
        }
        for rank, (candidate, row) in enumerate(ranked, start=1)
    ]


# The PostgreSQL advisory lock that orders imports (any 64-bit number no other code uses).
IMPORT_LOCK = 0x646564757067  # "dedupg"


def _one_import_at_a_time(db: Session) -> None:
    """Imports of different batches can name the same enrollments (a batch sent again under
    another id): they take turns, so that each sees the members the other made and an
    enrollment lands in one case. A group's first member is also held by the unique
    ``enqueue_key``; the others only by this. SQLite's write lock orders them already."""
    if db.get_bind().dialect.name == "postgresql":
        db.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": IMPORT_LOCK})


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
    # First import wins: a subject's record never changes under a case.
    new = [subject for enrollment_id, subject in given.items() if enrollment_id not in known]
    subjects = [
        {
            "enrollment_id": subject.enrollment_id,
            "batch_id": subject.batch_id,
            "captured_at": subject.captured_at,
            "center_id": subject.center_id,
            "display": json.dumps(subject.display, sort_keys=True),
            "quality": json.dumps(subject.quality, sort_keys=True),
        }
        for subject in new
    ]
    pictures = [
        {"enrollment_id": s.enrollment_id, "kind": kind, "media_type": media_type, "data": data}
        for s in new
        for kind in s.images
        for media_type, data in (images[(s.enrollment_id, kind)],)
    ]
    bulk_insert(db, Subject, subjects)  # subjects before their images
    bulk_insert(db, SubjectImage, pictures)


def bulk_insert(db: Session, model: type[Any], rows: list[dict[str, Any]]) -> None:
    """Insert ``rows`` into ``model``'s table as one executemany (multi-row statements under
    each database's bound-parameter limit), not one object per row through the ORM's unit of
    work: a night's import holds hundreds of thousands of rows."""
    if rows:
        db.execute(insert(model.__table__), rows)


def _positions(db: Session, count: int, rng: random.Random) -> list[int]:
    """``count`` fresh queue positions after every existing one, in random order."""
    start = (db.execute(select(func.max(CaseRow.queue_pos))).scalar() or 0) + 1
    slots = list(range(start, start + count))
    rng.shuffle(slots)
    return slots

"""The review queue on a real database, written once and run on SQLite and PostgreSQL."""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TypeVar

import pytest
from prometheus_client import generate_latest
from sqlalchemy import Engine, func, select, update
from sqlalchemy.orm import Session

from dedup.adjudication import catch_trials, database, intake, queue, views
from dedup.adjudication.cases import CaseState, Judgement, Outcome
from dedup.adjudication.context import Context
from dedup.adjudication.payloads import BatchImport, ImportResult
from dedup.adjudication.queue import Claim
from dedup.adjudication.queue_metrics import service_registry
from dedup.adjudication.tables import (
    CaseCandidate,
    CaseMember,
    CaseRow,
    CatchSubject,
    JudgementRow,
    Subject,
    SubjectImage,
)
from dedup.errors import AdjudicationError, StaleLease
from dedup.settings import AdjudicationSettings
from tests.review_support import batch_payload

T = TypeVar("T")
T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
LEASE = timedelta(minutes=10)


def run(engine: Engine, work: Callable[[Session], T]) -> T:
    with database.sessions(engine)() as db, db.begin():
        return work(db)


def imported(
    engine: Engine, probes: int, batch: str = "b1", rng: random.Random | None = None
) -> ImportResult:
    payload = BatchImport.model_validate(batch_payload(probes, prefix=batch.upper() + "P"))
    return run(
        engine,
        lambda db: intake.import_batch(db, batch, payload, "operator", T0, 1 << 20, rng),
    )


def claim(engine: Engine, who: str, at: datetime = T0) -> Claim | None:
    return run(engine, lambda db: queue.claim_next(db, who, at, LEASE))


def judge(engine: Engine, got: Claim, judgement: Judgement, at: datetime = T0) -> CaseState:
    assert got.case.lease is not None
    token = got.case.lease.token
    return run(engine, lambda db: queue.judge_case(db, got.case_id, token, judgement, at)).state


def states(engine: Engine) -> dict[str, int]:
    with database.sessions(engine)() as db:
        rows = db.execute(select(CaseRow.state, func.count()).group_by(CaseRow.state)).all()
    return {state: n for state, n in rows}


def test_one_case_per_probe_and_importing_again_creates_nothing(review_engine: Engine) -> None:
    first = imported(review_engine, 5)
    again = imported(review_engine, 5)
    assert (first.cases_created, first.already_imported) == (5, False)
    assert (again.cases_created, again.already_imported) == (0, True)
    # The same probes in another batch get no second case either.
    payload = BatchImport.model_validate(batch_payload(5, prefix="B1P"))
    other = run(review_engine, lambda db: intake.import_batch(db, "b2", payload, "op", T0, 1 << 20))
    assert (other.cases_created, other.cases_skipped) == (0, 5)
    assert states(review_engine) == {"open": 5}
    with database.sessions(review_engine)() as db:
        assert db.scalar(select(func.count()).select_from(Subject)) == 15
        assert db.scalar(select(func.count()).select_from(SubjectImage)) == 15


def test_a_bad_image_rejects_the_whole_import_with_its_reason(review_engine: Engine) -> None:
    body = batch_payload(2)
    body["subjects"][0]["images"]["chip"]["data_base64"] = "aGVsbG8gd29ybGQ="  # not a PNG
    payload = BatchImport.model_validate(body)
    with pytest.raises(AdjudicationError, match="P00000 chip: image data is not image/png"):
        run(review_engine, lambda db: intake.import_batch(db, "b", payload, "op", T0, 1 << 20))
    assert states(review_engine) == {}
    too_big = BatchImport.model_validate(batch_payload(1))
    with pytest.raises(AdjudicationError, match="over the limit"):
        run(review_engine, lambda db: intake.import_batch(db, "b", too_big, "op", T0, 10))


def test_not_duplicate_needs_one_review(review_engine: Engine) -> None:
    imported(review_engine, 1)
    got = claim(review_engine, "ann")
    assert got is not None and got.case.state is CaseState.IN_REVIEW
    assert judge(review_engine, got, Judgement("ann", Outcome.NOT_DUPLICATE)) is (
        CaseState.DECIDED_NOT_DUPLICATE
    )
    assert claim(review_engine, "bob") is None


def test_a_duplicate_needs_a_second_different_adjudicator(review_engine: Engine) -> None:
    imported(review_engine, 1)
    got = claim(review_engine, "ann")
    assert got is not None
    target = got.case.candidates[0]
    state = judge(review_engine, got, Judgement("ann", Outcome.DUPLICATE, target))
    assert state is CaseState.AWAITING_SECOND_REVIEW
    assert claim(review_engine, "ann") is None  # never her own case twice
    second = claim(review_engine, "bob")
    assert second is not None and second.case_id == got.case_id
    assert judge(review_engine, second, Judgement("bob", Outcome.DUPLICATE, target)) is (
        CaseState.DECIDED_DUPLICATE
    )
    [decision] = run(review_engine, lambda db: queue.decisions(db, "b1"))
    assert decision.final is not None and decision.final.duplicate_of == target
    assert decision.decided_by == ("ann", "bob")


def test_disagreement_and_cannot_decide_go_to_a_supervisor(review_engine: Engine) -> None:
    imported(review_engine, 2)
    got = claim(review_engine, "ann")
    assert got is not None
    with pytest.raises(AdjudicationError, match="needs a reason"):
        judge(review_engine, got, Judgement("ann", Outcome.CANNOT_DECIDE))
    assert judge(review_engine, got, Judgement("ann", Outcome.CANNOT_DECIDE, reason="twins?")) is (
        CaseState.ESCALATED
    )
    other = claim(review_engine, "ann")
    assert other is not None
    judge(review_engine, other, Judgement("ann", Outcome.DUPLICATE, other.case.candidates[0]))
    second = claim(review_engine, "bob")
    assert second is not None
    assert judge(review_engine, second, Judgement("bob", Outcome.NOT_DUPLICATE)) is (
        CaseState.ESCALATED
    )
    escalated = run(review_engine, lambda db: [r.case_id for r in views.escalated(db)])
    assert sorted(escalated) == sorted([got.case_id, other.case_id])
    decided = run(
        review_engine,
        lambda db: (
            queue.supervise_case(db, got.case_id, Judgement("sue", Outcome.NOT_DUPLICATE), T0).state
        ),
    )
    assert decided is CaseState.DECIDED_BY_SUPERVISOR


def test_an_expired_lease_returns_the_case_and_the_stale_token_changes_nothing(
    review_engine: Engine,
) -> None:
    imported(review_engine, 1)
    got = claim(review_engine, "ann")
    assert got is not None
    assert claim(review_engine, "bob", T0 + LEASE - timedelta(seconds=1)) is None
    again = claim(review_engine, "bob", T0 + LEASE)
    assert again is not None and again.case_id == got.case_id
    with pytest.raises(StaleLease):
        judge(review_engine, got, Judgement("ann", Outcome.NOT_DUPLICATE), T0 + LEASE)
    with database.sessions(review_engine)() as db:
        assert db.scalar(select(func.count()).select_from(JudgementRow)) == 0
    assert judge(review_engine, again, Judgement("bob", Outcome.NOT_DUPLICATE), T0 + LEASE) is (
        CaseState.DECIDED_NOT_DUPLICATE
    )


def test_claiming_again_resumes_the_held_case(review_engine: Engine) -> None:
    imported(review_engine, 3)
    first = claim(review_engine, "ann")
    again = claim(review_engine, "ann")
    assert first is not None and again is not None
    assert again.case_id == first.case_id and again.resumed
    assert states(review_engine) == {"open": 2, "in_review": 1}


def test_queue_depth_counts_an_expired_lease_as_returned(review_engine: Engine) -> None:
    imported(review_engine, 2)
    claim(review_engine, "ann")
    depth = run(review_engine, lambda db: queue.queue_depth(db, T0))
    later = run(review_engine, lambda db: queue.queue_depth(db, T0 + LEASE))
    assert depth.by_state["in_review"] == 1 and depth.by_state["open"] == 1
    assert later.by_state["in_review"] == 0 and later.by_state["open"] == 2
    assert depth.oldest_open == T0


def decide_all(engine: Engine, outcome: Outcome = Outcome.NOT_DUPLICATE) -> None:
    while (got := claim(engine, "ann")) is not None:
        judge(engine, got, Judgement("ann", outcome))


def test_catch_trials_are_seeded_measured_and_never_exported(review_engine: Engine) -> None:
    imported(review_engine, 2, batch="old")
    decide_all(review_engine)
    decided = run(review_engine, lambda db: [r.case_id for r in views.recently_decided(db)])
    with database.sessions(review_engine)() as db, db.begin():
        for case_id in decided:
            catch_trials.add_catch_pair(db, case_id, "sue", T0)
        # the decided cases' candidates were shown as one identity each
        db.execute(
            update(CaseCandidate)
            .where(CaseCandidate.case_id.in_(decided))
            .values(identity_id="I-old")
        )
    run(review_engine, lambda db: catch_trials.set_catch_rate(db, 0.5))
    result = imported(review_engine, 10, batch="new", rng=random.Random(7))
    assert result.catch_trials_seeded == 5
    with database.sessions(review_engine)() as db:  # grouped as its source, under fresh labels
        shown = db.execute(
            select(CaseCandidate.case_id, CaseCandidate.identity_id, CaseCandidate.candidate_id)
            .join(CaseRow, CaseRow.case_id == CaseCandidate.case_id)
            .where(CaseRow.catch_pair_id.is_not(None))
        ).all()
        probes = set(db.scalars(select(CaseRow.probe_id).where(CaseRow.catch_pair_id.is_not(None))))
        real_ids = set(db.scalars(select(CaseMember.enrollment_id))) | set(
            db.scalars(
                select(CaseCandidate.candidate_id)
                .join(CaseRow, CaseRow.case_id == CaseCandidate.case_id)
                .where(CaseRow.catch_pair_id.is_(None))
            )
        )
    assert shown and "I-old" not in {label for _, label, _ in shown}
    assert len({(case, label) for case, label, _ in shown}) == 5  # one identity per trial
    copies = probes | {candidate for _, _, candidate in shown}
    assert copies.isdisjoint(real_ids | {"I-old"})
    # Catch cases carry the batch's id, like its own cases, so the queue cannot tell them apart.
    with database.sessions(review_engine)() as db:
        in_batch = db.scalar(
            select(func.count()).select_from(CaseRow).where(CaseRow.batch_id == "new")
        )
        catch = db.scalar(
            select(func.count()).select_from(CaseRow).where(CaseRow.catch_pair_id.is_not(None))
        )
    assert in_batch == 15 and catch == 5
    # bob gets every catch trial right except the ones he calls duplicates.
    while (got := claim(review_engine, "bob")) is not None:
        judge(review_engine, got, Judgement("bob", Outcome.NOT_DUPLICATE))
    [accuracy] = run(review_engine, catch_trials.accuracy)
    assert (accuracy.adjudicator, accuracy.trials, accuracy.correct) == ("bob", 5, 5)
    exported = run(review_engine, lambda db: queue.decisions(db, None))
    assert len(exported) == 12
    named = {d.enrollment_id for d in exported} | {
        d.final.duplicate_of for d in exported if d.final is not None
    }
    assert named.isdisjoint(copies)
    imported(review_engine, 1, batch="third")
    with database.sessions(review_engine)() as db, db.begin():
        pending = db.scalars(
            select(CaseRow.case_id).where(
                CaseRow.batch_id == "third", CaseRow.catch_pair_id.is_(None)
            )
        ).one()
        with pytest.raises(AdjudicationError, match="only decided cases"):
            catch_trials.add_catch_pair(db, pending, "sue", T0)


def test_a_wrong_catch_trial_judgement_lowers_accuracy(review_engine: Engine) -> None:
    imported(review_engine, 1, batch="old")
    decide_all(review_engine)
    [case_id] = run(review_engine, lambda db: [r.case_id for r in views.recently_decided(db)])
    run(review_engine, lambda db: catch_trials.add_catch_pair(db, case_id, "sue", T0))
    run(review_engine, lambda db: catch_trials.set_catch_rate(db, 0.5))
    imported(review_engine, 2, batch="new", rng=random.Random(1))
    while (got := claim(review_engine, "bob")) is not None:
        candidate = got.case.candidates[0]
        judge(review_engine, got, Judgement("bob", Outcome.DUPLICATE, candidate))
    [accuracy] = run(review_engine, catch_trials.accuracy)
    assert accuracy.trials == 1 and accuracy.correct == 0 and accuracy.rate == 0.0
    context = Context(database.sessions(review_engine), AdjudicationSettings())
    scraped = generate_latest(service_registry(context)).decode()  # what /metrics shows
    assert 'dedup_review_catch_trial_judgements_total{result="wrong"} 1.0' in scraped
    assert 'dedup_review_catch_trial_judgements_total{result="correct"} 0.0' in scraped


def test_a_catch_trial_shows_copies_that_map_back_to_the_truth(review_engine: Engine) -> None:
    imported(review_engine, 1, batch="old")
    got = claim(review_engine, "ann")
    assert got is not None
    truth = got.case.candidates[0]
    judge(review_engine, got, Judgement("ann", Outcome.DUPLICATE, truth))
    second = claim(review_engine, "cy")
    assert second is not None
    judge(review_engine, second, Judgement("cy", Outcome.DUPLICATE, truth))
    source = second.case_id
    run(review_engine, lambda db: catch_trials.add_catch_pair(db, source, "sue", T0))
    run(review_engine, lambda db: catch_trials.set_catch_rate(db, 0.5))
    imported(review_engine, 2, batch="new", rng=random.Random(1))
    while (got := claim(review_engine, "bob")) is not None:
        judge(review_engine, got, Judgement("bob", Outcome.DUPLICATE, got.case.candidates[0]))
    with database.sessions(review_engine)() as db:
        trial = db.scalars(select(CaseRow).where(CaseRow.catch_pair_id.is_not(None))).one()
        copied = db.execute(select(CatchSubject.subject_id, CatchSubject.source_id))
        copies = {copy: real for copy, real in copied}
        copied_images = db.scalar(
            select(func.count())
            .select_from(SubjectImage)
            .where(SubjectImage.enrollment_id.in_(copies))
        )
    assert copies[trial.probe_id] == "OLDP00000" and truth in copies.values()
    assert not {trial.probe_id, *copies}.intersection({"OLDP00000", truth})
    assert all(len(copy) == len(copies[copy]) for copy in copies)  # shaped like a real id
    assert copied_images == len(copies)
    [accuracy] = run(review_engine, catch_trials.accuracy)
    assert (accuracy.trials, accuracy.correct) == (1, 1)  # the copy's id maps to the truth
    # Erasing the real candidate takes the trial and every copy in it, pair and all.
    run(review_engine, lambda db: queue.erase_enrollment(db, truth))
    with database.sessions(review_engine)() as db:
        assert db.get(CaseRow, trial.case_id) is None
        assert db.scalar(select(func.count()).select_from(CatchSubject)) == 0
        left = set(db.scalars(select(Subject.enrollment_id))) | set(
            db.scalars(select(SubjectImage.enrollment_id))
        )
    assert left.isdisjoint(copies)


def test_erasure_removes_an_enrollment_from_the_queue(review_engine: Engine) -> None:
    imported(review_engine, 2)
    got = claim(review_engine, "ann")
    assert got is not None
    candidate = got.case.candidates[0]
    done = run(review_engine, lambda db: queue.erase_enrollment(db, candidate))
    assert done.candidate_rows_removed == 1 and done.subject_removed
    gone = run(review_engine, lambda db: queue.erase_enrollment(db, got.case.probe_id))
    assert gone.cases_removed == 1

    def left(db: Session) -> set[str]:
        ids = set(db.scalars(select(Subject.enrollment_id)))
        ids |= set(db.scalars(select(SubjectImage.enrollment_id)))
        ids |= set(db.scalars(select(CaseRow.probe_id)))
        return ids

    remaining = run(review_engine, left)
    assert candidate not in remaining and got.case.probe_id not in remaining
    assert states(review_engine) == {"open": 1}


def test_a_batch_naming_more_ids_than_a_query_can_bind_imports(review_engine: Engine) -> None:
    # 66,000 subjects: over PostgreSQL's 65,535 bound parameters per statement.
    body = BatchImport.model_validate(batch_payload(33_000, 1, prefix="L", images=False))
    result = run(review_engine, lambda db: intake.import_batch(db, "big", body, "op", T0, 1 << 20))
    again = run(review_engine, lambda db: intake.import_batch(db, "big2", body, "op", T0, 1 << 20))
    assert result.cases_created == 33_000 and again.cases_skipped == 33_000
    with database.sessions(review_engine)() as db:
        assert db.scalar(select(func.count()).select_from(Subject)) == 66_000


def test_a_large_batch_arrives_in_parts_each_imported_once(review_engine: Engine) -> None:
    whole = batch_payload(6, prefix="W")
    first = {**whole, "candidates": whole["candidates"][:6], "subjects": whole["subjects"][:9]}
    second = {**whole, "candidates": whole["candidates"][6:], "subjects": whole["subjects"][9:]}

    def send(body: dict[str, object], part: int, parts: int = 2) -> ImportResult:
        payload = BatchImport.model_validate(body)
        return run(
            review_engine,
            lambda db: intake.import_batch(db, "w", payload, "op", T0, 1 << 20, None, part, parts),
        )

    assert send(first, 1).cases_created == 3
    assert send(first, 1).already_imported  # sent again after a lost answer: nothing new
    assert send(second, 2).cases_created == 3
    assert states(review_engine) == {"open": 6}
    with pytest.raises(AdjudicationError, match="imported as 2 part"):
        send(second, 3, parts=3)
    with pytest.raises(AdjudicationError, match="numbered 1 to 2"):
        send(second, 3)


def test_a_probe_split_across_parts_is_refused(review_engine: Engine) -> None:
    whole = batch_payload(2, prefix="S")
    rows = whole["candidates"]  # S00000 has rows 0 and 1, S00001 rows 2 and 3
    first = {**whole, "candidates": rows[:1]}
    second = {**whole, "candidates": rows[1:]}
    one, two = (BatchImport.model_validate(b) for b in (first, second))
    run(review_engine, lambda db: intake.import_batch(db, "s", one, "op", T0, 1 << 20, None, 1, 2))
    with pytest.raises(AdjudicationError, match="probe S00000 already has a case"):
        run(
            review_engine,
            lambda db: intake.import_batch(db, "s", two, "op", T0, 1 << 20, None, 2, 2),
        )
    assert states(review_engine) == {"open": 1}

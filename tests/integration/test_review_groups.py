"""Cases that decide groups of a batch's probes, the export of one decision per member, and a
supervisor's revision of a decision already made; on SQLite and PostgreSQL."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import TypeVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from dedup.adjudication import catch_trials, database, intake, queue
from dedup.adjudication.cases import CaseState, Judgement, Outcome
from dedup.adjudication.payloads import BatchImport, ImportResult
from dedup.adjudication.tables import CaseCandidate, CaseMember, CaseRow, CatchPair, JudgementRow
from dedup.errors import AdjudicationError
from tests.review_support import expected_cases, migrated, rows_payload, sqlite_url

T = TypeVar("T")
T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
LEASE = timedelta(minutes=10)
Row = tuple[str, str, str, float]

# A and B of one batch matched each other (both ways); each also matched someone in the gallery.
PAIR: list[Row] = [
    ("A", "B", "batch", 0.95),
    ("A", "G1", "gallery", 0.90),
    ("B", "A", "batch", 0.95),
    ("B", "G2", "gallery", 0.93),
    ("B", "G1", "gallery", 0.80),
]


def run(engine: Engine, work: Callable[[Session], T]) -> T:
    with database.sessions(engine)() as db, db.begin():
        return work(db)


def send(
    engine: Engine, rows: list[Row], batch: str = "b1", part: int = 1, parts: int = 1
) -> ImportResult:
    payload = BatchImport.model_validate(rows_payload(rows, images=False))
    return run(
        engine,
        lambda db: intake.import_batch(db, batch, payload, "op", T0, 1 << 20, None, part, parts),
    )


def groups(engine: Engine) -> dict[str, tuple[str, ...]]:
    """Each real case's probe and its members."""
    with database.sessions(engine)() as db:
        found: dict[str, list[str]] = {}
        for probe, member in db.execute(
            select(CaseRow.probe_id, CaseMember.enrollment_id)
            .join(CaseMember, CaseMember.case_id == CaseRow.case_id)
            .order_by(CaseMember.enrollment_id)
        ):
            found.setdefault(probe, []).append(member)
        return {probe: tuple(members) for probe, members in found.items()}


def candidates(engine: Engine, probe: str) -> list[tuple[str, str, float, int]]:
    with database.sessions(engine)() as db:
        return [
            (c.candidate_id, c.source, c.score, c.rank)
            for c in db.scalars(
                select(CaseCandidate)
                .join(CaseRow, CaseRow.case_id == CaseCandidate.case_id)
                .where(CaseRow.probe_id == probe, CaseRow.catch_pair_id.is_(None))
                .order_by(CaseCandidate.rank)
            )
        ]


def judge_next(engine: Engine, who: str, verdict: Callable[[str], Judgement]) -> str | None:
    """``who`` claims the next case and judges it ``verdict(probe)``; its id (None: none)."""
    got = run(engine, lambda db: queue.claim_next(db, who, T0, LEASE))
    if got is None:
        return None
    assert got.case.lease is not None
    token, judgement = got.case.lease.token, verdict(got.case.probe_id)
    run(engine, lambda db: queue.judge_case(db, got.case_id, token, judgement, T0))
    return got.case_id


def decide(engine: Engine, outcome: Outcome, of: str | None = None) -> str:
    """ann, then (for a duplicate) bob, decide the next case; its id."""
    case_id = judge_next(engine, "ann", lambda _: Judgement("ann", outcome, of))
    assert case_id is not None
    if outcome is Outcome.DUPLICATE:
        assert judge_next(engine, "bob", lambda _: Judgement("bob", outcome, of)) == case_id
    return case_id


# ---------------------------------------------------------------- one case per group


def test_a_pair_that_matched_each_other_is_one_case_of_two(review_engine: Engine) -> None:
    result = send(review_engine, PAIR)
    assert (result.cases_created, result.cases_skipped) == (1, 0)
    assert groups(review_engine) == {"A": ("A", "B")}
    # The other member is a candidate (source batch), so "duplicate of B" can be decided;
    # every member's candidates are there at their best score, ranked by score.
    assert candidates(review_engine, "A") == [
        ("B", "batch", 0.95, 1),
        ("G2", "gallery", 0.93, 2),
        ("G1", "gallery", 0.90, 3),
    ]


def test_a_chain_is_one_case_and_a_one_sided_member_is_shown(review_engine: Engine) -> None:
    # A named B, C named B: nobody named C, which still is a member and a candidate.
    rows: list[Row] = [
        ("A", "B", "batch", 0.91),
        ("C", "B", "batch", 0.97),
        ("D", "G", "gallery", 0.9),
    ]
    assert send(review_engine, rows).cases_created == 2
    assert groups(review_engine) == {"A": ("A", "B", "C"), "D": ("D",)}
    assert candidates(review_engine, "A") == [("B", "batch", 0.97, 1), ("C", "batch", 0.97, 2)]
    assert candidates(review_engine, "D") == [("G", "gallery", 0.9, 1)]


def test_importing_a_group_again_creates_nothing(review_engine: Engine) -> None:
    send(review_engine, PAIR)
    assert send(review_engine, PAIR).already_imported
    # The same enrollments under another batch id: every group already has its case.
    other = send(review_engine, PAIR, batch="b2")
    assert (other.cases_created, other.cases_skipped) == (0, 1)
    # A group of which one member already is in a case is skipped as a whole.
    grown = send(review_engine, [("B", "N", "batch", 0.9), ("M", "G9", "gallery", 0.9)], "b3")
    assert (grown.cases_created, grown.cases_skipped) == (1, 1)
    assert groups(review_engine) == {"A": ("A", "B"), "M": ("M",)}
    with database.sessions(review_engine)() as db:
        assert db.scalar(select(func.count()).select_from(CaseRow)) == 2


def test_a_group_split_across_parts_is_refused(review_engine: Engine) -> None:
    send(review_engine, [("A", "B", "batch", 0.9)], part=1, parts=2)
    with pytest.raises(AdjudicationError, match="probe B already has a case from an earlier"):
        send(review_engine, [("B", "C", "batch", 0.9)], part=2, parts=2)
    assert groups(review_engine) == {"A": ("A", "B")}
    # A part whose groups are whole is imported.
    assert send(review_engine, [("C", "D", "batch", 0.9)], part=2, parts=2).cases_created == 1


BATCHES = itertools.count()
NODES = [f"E{n}" for n in range(12)]
edges = st.lists(
    st.tuples(
        st.sampled_from(NODES),
        st.sampled_from(NODES),
        st.booleans(),
        st.sampled_from([0.8, 0.85, 0.9, 0.95]),
    ).filter(lambda e: e[0] != e[1]),
    min_size=1,
    max_size=25,
)


@pytest.fixture(scope="module")
def sqlite_review_engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    """One SQLite database for every example of a property (each with ids of its own)."""
    engine = migrated(sqlite_url(tmp_path_factory.mktemp("groups")))
    yield engine
    engine.dispose()


@settings(max_examples=40, deadline=None)
@given(drawn=edges)
def test_every_probe_lands_in_the_case_of_its_connected_group(
    sqlite_review_engine: Engine, drawn: list[tuple[str, str, bool, float]]
) -> None:
    # Ids of their own per example: one database serves every example.
    tag = f"x{next(BATCHES)}-"
    rows: list[Row] = [
        (tag + p, tag + c if in_batch else f"{tag}G-{c}", "batch" if in_batch else "gallery", s)
        for p, c, in_batch, s in drawn
    ]
    result = send(sqlite_review_engine, rows, batch=tag)
    expected = expected_cases(rows)
    assert result.cases_created == len(expected)
    made = {
        probe: members
        for probe, members in groups(sqlite_review_engine).items()
        if probe.startswith(tag)
    }
    # Every probe in exactly one case, the cases the connected groups.
    assert made == {probe: tuple(sorted(members)) for probe, (members, _) in expected.items()}
    for probe, (_, shown) in expected.items():
        found = candidates(sqlite_review_engine, probe)
        assert {c: (source, score) for c, source, score, _ in found} == shown
        assert [rank for *_, rank in found] == list(range(1, len(found) + 1))


# ---------------------------------------------------------------- export per member


def duplicate(who: str, probe: str) -> Judgement:
    """The group of A is a duplicate of its member B; everyone else of G5."""
    return Judgement(who, Outcome.DUPLICATE, "B" if probe == "A" else "G5")


def test_the_export_has_a_row_per_member_with_the_case_s_decision(review_engine: Engine) -> None:
    send(review_engine, [*PAIR, ("S", "G5", "gallery", 0.9)])
    pending = run(review_engine, lambda db: queue.decisions(db, "b1"))
    assert [(d.enrollment_id, d.state, d.final, d.revision) for d in pending] == [
        ("A", CaseState.OPEN, None, 0),
        ("B", CaseState.OPEN, None, 0),
        ("S", CaseState.OPEN, None, 0),
    ]
    for who in ("ann", "ann", "bob", "bob"):
        assert judge_next(review_engine, who, partial(duplicate, who)) is not None
    assert judge_next(review_engine, "bob", partial(duplicate, "bob")) is None
    done = run(review_engine, lambda db: queue.decisions(db, "b1"))
    a, b, s = done
    assert (a.enrollment_id, b.enrollment_id, s.enrollment_id) == ("A", "B", "S")
    assert a.case_id == b.case_id != s.case_id
    # "Duplicate of B" for the group: A is B's duplicate; B is the one the others duplicate.
    for d in (a, b):
        assert d.state is CaseState.DECIDED_DUPLICATE and d.final is not None
        assert (d.final.outcome, d.final.duplicate_of) == (Outcome.DUPLICATE, "B")
        assert d.decided_by == ("ann", "bob") and d.decided_at == T0 and d.batch_id == "b1"
    assert s.final is not None and s.final.duplicate_of == "G5"
    assert run(review_engine, lambda db: queue.decisions(db, "nope")) == []
    assert run(review_engine, lambda db: queue.decisions(db, None)) == done


# ---------------------------------------------------------------- revision


def test_a_revision_turns_a_duplicate_into_not_duplicate(review_engine: Engine) -> None:
    send(review_engine, PAIR)
    case_id = decide(review_engine, Outcome.DUPLICATE, "G1")
    later = T0 + timedelta(days=2)
    change = Judgement("sue", Outcome.NOT_DUPLICATE, reason="twins: different ears")
    after = run(review_engine, lambda db: queue.revise_case(db, case_id, change, later))
    assert (after.state, after.final, after.revision) == (
        CaseState.DECIDED_BY_SUPERVISOR,
        change,
        1,
    )
    exported = run(review_engine, lambda db: queue.decisions(db, "b1"))
    assert [(d.enrollment_id, d.revision, d.final, d.decided_at) for d in exported] == [
        ("A", 1, change, later),
        ("B", 1, change, later),
    ]
    assert exported[0].decided_by == ("ann", "bob", "sue")
    with database.sessions(review_engine)() as db:
        stages = db.scalars(
            select(JudgementRow.stage)
            .where(JudgementRow.case_id == case_id)
            .order_by(JudgementRow.id)
        ).all()
        assert stages == ["first", "second", "revision"]
        assert db.get(CaseRow, case_id).revision == 1  # type: ignore[union-attr]
    # Revised again (back to a duplicate, of another candidate): the latest one holds.
    again = Judgement("sam", Outcome.DUPLICATE, "G2", reason="the scar matches")
    run(review_engine, lambda db: queue.revise_case(db, case_id, again, later))
    [a, _] = run(review_engine, lambda db: queue.decisions(db, "b1"))
    assert (a.final, a.revision, a.decided_by) == (again, 2, ("ann", "bob", "sue", "sam"))


def test_a_revision_after_a_supervisor_s_decision_overrides_it(review_engine: Engine) -> None:
    send(review_engine, PAIR)
    got = run(review_engine, lambda db: queue.claim_next(db, "ann", T0, LEASE))
    assert got is not None and got.case.lease is not None
    token = got.case.lease.token
    doubt = Judgement("ann", Outcome.CANNOT_DECIDE, reason="dark photo")
    run(review_engine, lambda db: queue.judge_case(db, got.case_id, token, doubt, T0))
    boss = Judgement("sue", Outcome.NOT_DUPLICATE)
    run(review_engine, lambda db: queue.supervise_case(db, got.case_id, boss, T0))
    change = Judgement("sue", Outcome.DUPLICATE, "B", reason="new photo")
    run(review_engine, lambda db: queue.revise_case(db, got.case_id, change, T0))
    [a, b] = run(review_engine, lambda db: queue.decisions(db, "b1"))
    assert a.final == b.final == change and a.revision == 1 and a.decided_by == ("ann", "sue")


def test_only_a_decided_real_case_is_revised(review_engine: Engine) -> None:
    send(review_engine, PAIR)
    [case_id] = run(review_engine, lambda db: list(db.scalars(select(CaseRow.case_id))))
    change = Judgement("sue", Outcome.NOT_DUPLICATE, reason="why not")
    with pytest.raises(AdjudicationError, match="only a decided case can be revised"):
        run(review_engine, lambda db: queue.revise_case(db, case_id, change, T0))
    with pytest.raises(queue.CaseNotFound):
        run(review_engine, lambda db: queue.revise_case(db, "00ff", change, T0))
    decide(review_engine, Outcome.NOT_DUPLICATE)
    with pytest.raises(AdjudicationError, match="needs a reason"):
        unexplained = Judgement("sue", Outcome.DUPLICATE, "B")
        run(review_engine, lambda db: queue.revise_case(db, case_id, unexplained, T0))
    # Nothing was recorded by the refusals.
    [d, _] = run(review_engine, lambda db: queue.decisions(db, "b1"))
    assert d.revision == 0 and d.final is not None and d.final.outcome is Outcome.NOT_DUPLICATE


def test_a_revised_catch_pair_takes_the_new_truth(review_engine: Engine) -> None:
    send(review_engine, PAIR)
    case_id = decide(review_engine, Outcome.NOT_DUPLICATE)
    run(review_engine, lambda db: catch_trials.add_catch_pair(db, case_id, "sue", T0))
    run(review_engine, lambda db: catch_trials.set_catch_rate(db, 0.5))
    send(review_engine, [(f"N{i}", f"G{i}", "gallery", 0.9) for i in range(4)], batch="b2")
    change = Judgement("sue", Outcome.DUPLICATE, "G2", reason="found the earlier photo")
    run(review_engine, lambda db: queue.revise_case(db, case_id, change, T0))
    with database.sessions(review_engine)() as db:
        pair = db.scalars(select(CatchPair)).one()
        assert (pair.truth_outcome, pair.truth_duplicate_of) == ("duplicate", "G2")
        trial = db.scalars(
            select(CaseRow.case_id).where(CaseRow.catch_pair_id.is_not(None))
        ).first()
    assert trial is not None
    with pytest.raises(AdjudicationError, match="catch trial"):
        run(review_engine, lambda db: queue.revise_case(db, trial, change, T0))


def test_imports_naming_the_same_enrollments_take_turns(pg_engine: Engine) -> None:
    """On PostgreSQL two imports run side by side: the second waits for the first, then
    finds its member taken, so an enrollment never lands in two cases."""
    first = BatchImport.model_validate(rows_payload([("A", "B", "batch", 0.9)], images=False))
    # B again, with a probe that sorts after it (so no case key is shared), no subjects.
    again = BatchImport.model_validate({**rows_payload([("Z", "B", "batch", 0.9)]), "subjects": []})
    results: list[ImportResult] = []
    with database.sessions(pg_engine)() as db, db.begin():
        intake.import_batch(db, "b1", first, "op", T0, 1 << 20)
        rival = threading.Thread(
            target=lambda: results.append(
                run(pg_engine, lambda other: intake.import_batch(other, "b2", again, "op", T0, 1))
            )
        )
        rival.start()
        rival.join(timeout=1.0)
        assert rival.is_alive()  # waiting for the first import to end
    rival.join(timeout=30)
    [second] = results
    assert (second.cases_created, second.cases_skipped) == (0, 1)
    assert groups(pg_engine) == {"A": ("A", "B")}

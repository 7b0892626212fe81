"""Outcomes follow the searches, the decisions and the identities, one rule for every case."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from dedup.contracts.schemas import OutcomeStatus
from dedup.matching.identities import assign
from dedup.matching.outcomes import Decision, Outcome, decision_links, settle

AT = datetime(2026, 12, 1, 22, 0, tzinfo=UTC)


def decided(member: str, case: str, duplicate_of: str | None, revision: int = 0) -> Decision:
    outcome = "duplicate" if duplicate_of else "not_duplicate"
    state = "decided_duplicate" if duplicate_of else "decided_not_duplicate"
    return Decision(member, "b2", case, state, outcome, duplicate_of, AT, ("ann", "bob"), revision)


def waiting(member: str, case: str, state: str = "open") -> Decision:
    return Decision(member, "b2", case, state, None, None, None, (), 0)


ORDER = ["g1", "g2", "p1", "p2", "p3"]
STAGED = {"g1": "b1", "g2": "b1", "p1": "b2", "p2": "b2", "p3": "b2"}


def outcomes_of(
    decisions: list[Decision], erased: frozenset[str] = frozenset()
) -> dict[str, Outcome]:
    identity = assign([e for e in ORDER if e not in erased], decision_links(decisions, set(erased)))
    latest = {d.enrollment_id: d for d in decisions}
    return settle(STAGED, {"p1", "p2", "p3"}, latest, identity, set(erased))


def test_no_candidate_is_unique_and_an_undecided_case_is_pending() -> None:
    got = outcomes_of([waiting("p1", "c1"), waiting("p2", "c2", "escalated")])
    assert got["g1"].status is OutcomeStatus.UNIQUE
    assert got["p1"].status is OutcomeStatus.PENDING_REVIEW
    assert got["p2"].status is OutcomeStatus.ESCALATED
    # p3 has candidates but no case yet (not imported): pending, not unique
    assert got["p3"].status is OutcomeStatus.PENDING_REVIEW
    assert got["p1"].decided_by == () and got["p1"].decided_at is None


def test_a_duplicate_names_the_earliest_capture_of_its_identity() -> None:
    got = outcomes_of([decided("p1", "c1", "g2"), decided("p2", "c2", "p1")])
    assert got["p1"].status is OutcomeStatus.DUPLICATE and got["p1"].duplicate_of == "g2"
    # p2 was decided a duplicate of p1, who is g2: it names the identity's first capture
    assert got["p2"].duplicate_of == "g2" and got["p2"].identity_id == "g2"
    assert got["p1"].decided_by == ("ann", "bob") and got["p1"].case_id == "c1"
    assert got["g2"].status is OutcomeStatus.UNIQUE and got["g2"].identity_id == "g2"


def test_one_decision_of_an_in_batch_group_applies_to_every_member() -> None:
    # p1, p2 and p3 matched each other: one case, decided "duplicate of p1"
    got = outcomes_of([decided(m, "c1", "p1") for m in ("p1", "p2", "p3")])
    assert got["p1"].status is OutcomeStatus.NOT_DUPLICATE  # the first capture of the person
    assert {got[m].duplicate_of for m in ("p2", "p3")} == {"p1"}
    assert {got[m].status for m in ("p2", "p3")} == {OutcomeStatus.DUPLICATE}


def test_a_revision_to_not_duplicate_splits_and_the_state_follows() -> None:
    first = outcomes_of([decided("p1", "c1", "g1")])
    revised = outcomes_of([decided("p1", "c1", None, revision=1)])
    assert first["p1"].status is OutcomeStatus.DUPLICATE
    assert revised["p1"].status is OutcomeStatus.NOT_DUPLICATE
    assert revised["p1"].identity_id == "p1" and revised["p1"].duplicate_of is None


def test_links_to_or_from_an_erased_enrollment_are_not_made() -> None:
    assert decision_links([decided("p1", "c1", "g1")], erased={"g1"}) == []
    got = outcomes_of([decided("p1", "c1", "g1")], erased=frozenset({"g1"}))
    assert got["g1"].status is OutcomeStatus.ERASED and got["g1"].identity_id is None
    assert got["p1"].status is OutcomeStatus.NOT_DUPLICATE


def test_event_ids_name_a_transition_not_a_run() -> None:
    one = outcomes_of([decided("p1", "c1", "g1")])["p1"]
    assert one.event_id(None) == outcomes_of([decided("p1", "c1", "g1")])["p1"].event_id(None)
    back = one.event_id(one.event_id(None))
    assert back != one.event_id(None)  # the same state reached again later is a new event
    other = outcomes_of([decided("p1", "c1", "g2")])["p1"]
    assert other.event_id(None) != one.event_id(None)


members = st.sampled_from(["p1", "p2", "p3"])
targets = st.sampled_from(ORDER)


@given(st.lists(st.tuples(members, st.one_of(st.none(), targets)), max_size=6))
def test_every_staged_enrollment_has_one_consistent_state(
    raw: list[tuple[str, str | None]],
) -> None:
    decisions = [decided(m, f"c-{m}", t) for m, t in dict(raw).items()]
    got = outcomes_of(decisions)
    assert set(got) == set(STAGED)
    for enrollment, outcome in got.items():
        if outcome.status is OutcomeStatus.DUPLICATE:
            # a duplicate points at an earlier enrollment that founded its identity
            assert outcome.duplicate_of == outcome.identity_id != enrollment
            assert outcome.duplicate_of is not None
            assert ORDER.index(outcome.duplicate_of) < ORDER.index(enrollment)
        else:
            assert outcome.duplicate_of is None
        if outcome.status is OutcomeStatus.NOT_DUPLICATE:
            assert outcome.identity_id == enrollment

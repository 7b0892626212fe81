"""The review rules: four eyes on a duplicate, one adjudicator for not-duplicate, supervisors for
disagreements and doubts, leases that expire and refuse stale completions, and a supervisor's
revision of a decision already made."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from dedup.adjudication.cases import (
    DECIDED,
    Case,
    CaseState,
    Judgement,
    Outcome,
    claim,
    judge,
    revise,
    supervise,
)
from dedup.errors import AdjudicationError, StaleLease

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
LEASE = timedelta(minutes=15)
CASE = Case("P1", ("G7", "G9"))


def held(case: Case, who: str, token: str = "t", at: datetime = T0) -> Case:
    return claim(case, who, token, at, LEASE)


def dup(who: str, of: str = "G7") -> Judgement:
    return Judgement(who, Outcome.DUPLICATE, duplicate_of=of)


def test_not_duplicate_needs_one_adjudicator() -> None:
    decided = judge(held(CASE, "ana"), Judgement("ana", Outcome.NOT_DUPLICATE), "t", T0)
    assert decided.state is CaseState.DECIDED_NOT_DUPLICATE
    assert decided.final == Judgement("ana", Outcome.NOT_DUPLICATE) and decided.lease is None


def test_a_duplicate_needs_a_second_different_adjudicator_to_confirm_it() -> None:
    first = judge(held(CASE, "ana"), dup("ana"), "t", T0)
    assert first.state is CaseState.AWAITING_SECOND_REVIEW and first.final is None
    assert not first.can_claim("ana", T0)
    with pytest.raises(AdjudicationError, match="cannot be claimed by ana"):
        held(first, "ana")
    confirmed = judge(held(first, "ben", "u"), dup("ben"), "u", T0)
    assert confirmed.state is CaseState.DECIDED_DUPLICATE
    assert (confirmed.first, confirmed.final) == (dup("ana"), dup("ben"))


@pytest.mark.parametrize(
    "second",
    [
        Judgement("ben", Outcome.NOT_DUPLICATE),
        Judgement("ben", Outcome.DUPLICATE, duplicate_of="G9"),
        Judgement("ben", Outcome.CANNOT_DECIDE, reason="photos too dark"),
    ],
)
def test_a_second_review_that_does_not_confirm_goes_to_a_supervisor(second: Judgement) -> None:
    first = judge(held(CASE, "ana"), dup("ana"), "t", T0)
    escalated = judge(held(first, "ben", "u"), second, "u", T0)
    assert escalated.state is CaseState.ESCALATED and escalated.final is None
    decided = supervise(escalated, Judgement("sue", Outcome.NOT_DUPLICATE))
    assert decided.state is CaseState.DECIDED_BY_SUPERVISOR
    assert decided.final == Judgement("sue", Outcome.NOT_DUPLICATE)


def test_cannot_decide_needs_a_reason_and_escalates() -> None:
    case = held(CASE, "ana")
    with pytest.raises(AdjudicationError, match="needs a reason"):
        judge(case, Judgement("ana", Outcome.CANNOT_DECIDE, reason="  "), "t", T0)
    escalated = judge(case, Judgement("ana", Outcome.CANNOT_DECIDE, reason="twins?"), "t", T0)
    assert escalated.state is CaseState.ESCALATED
    with pytest.raises(AdjudicationError, match="duplicate or not duplicate"):
        supervise(escalated, Judgement("sue", Outcome.CANNOT_DECIDE, reason="no"))
    with pytest.raises(AdjudicationError, match="not escalated"):
        supervise(CASE, Judgement("sue", Outcome.NOT_DUPLICATE))


def test_a_duplicate_must_name_one_of_the_case_s_candidates() -> None:
    case = held(CASE, "ana")
    with pytest.raises(AdjudicationError, match="one of the case's candidates"):
        judge(case, dup("ana", of="G1"), "t", T0)
    with pytest.raises(AdjudicationError, match="only a duplicate names"):
        judge(case, Judgement("ana", Outcome.NOT_DUPLICATE, duplicate_of="G7"), "t", T0)


def test_an_expired_lease_returns_the_case_to_where_it_was() -> None:
    case = held(CASE, "ana")
    later = T0 + LEASE
    assert case.effective(later).state is CaseState.OPEN and case.can_claim("ben", later)
    assert not case.can_claim("ben", T0 + LEASE / 2)  # still held
    second = held(judge(held(CASE, "ana"), dup("ana"), "t", T0), "ben", "u")
    assert second.effective(later).state is CaseState.AWAITING_SECOND_REVIEW


def test_a_stale_token_or_an_expired_lease_changes_nothing() -> None:
    case = held(CASE, "ana", "t1")
    verdict = Judgement("ana", Outcome.NOT_DUPLICATE)
    with pytest.raises(StaleLease):
        judge(case, verdict, "wrong", T0)
    with pytest.raises(StaleLease):
        judge(case, verdict, "t1", T0 + LEASE)  # expired
    taken_over = held(case, "ben", "t2", T0 + LEASE)
    with pytest.raises(StaleLease):
        judge(taken_over, verdict, "t1", T0 + LEASE)  # ana's old token
    with pytest.raises(StaleLease):
        judge(taken_over, Judgement("ana", Outcome.NOT_DUPLICATE), "t2", T0 + LEASE)
    assert judge(taken_over, Judgement("ben", Outcome.NOT_DUPLICATE), "t2", T0 + LEASE).final


def test_decided_cases_cannot_be_claimed_again() -> None:
    decided = judge(held(CASE, "ana"), Judgement("ana", Outcome.NOT_DUPLICATE), "t", T0)
    for who in ("ana", "ben"):
        assert not decided.can_claim(who, T0 + 10 * LEASE)
        with pytest.raises(AdjudicationError):
            held(decided, who)


def decided_duplicate() -> Case:
    first = judge(held(CASE, "ana"), dup("ana"), "t", T0)
    return judge(held(first, "ben", "u"), dup("ben"), "u", T0)


def test_a_revision_changes_a_decided_case_and_counts_the_change() -> None:
    decided = decided_duplicate()
    assert decided.revision == 0
    turned = revise(decided, Judgement("sue", Outcome.NOT_DUPLICATE, reason="twins"))
    assert turned.state is CaseState.DECIDED_BY_SUPERVISOR and turned.revision == 1
    assert turned.final == Judgement("sue", Outcome.NOT_DUPLICATE, reason="twins")
    assert (turned.first, turned.second) == (decided.first, decided.second)  # history kept
    back = revise(turned, Judgement("sam", Outcome.DUPLICATE, "G9", reason="same scar"))
    assert back.revision == 2 and back.final == Judgement(
        "sam", Outcome.DUPLICATE, "G9", "same scar"
    )
    not_dup = judge(held(CASE, "ana"), Judgement("ana", Outcome.NOT_DUPLICATE), "t", T0)
    found = revise(not_dup, Judgement("sue", Outcome.DUPLICATE, "G7", "seen twice"))
    assert found.state is CaseState.DECIDED_BY_SUPERVISOR and found.final is not None
    assert found.final.duplicate_of == "G7" and found.revision == 1


@pytest.mark.parametrize(
    "state",
    [s for s in CaseState if s not in DECIDED],
)
def test_only_a_decided_case_is_revised(state: CaseState) -> None:
    with pytest.raises(AdjudicationError, match="only a decided case can be revised"):
        revise(Case("P1", ("G7",), state), Judgement("sue", Outcome.NOT_DUPLICATE, reason="r"))


def test_a_revision_needs_a_reason_a_decision_and_a_change() -> None:
    decided = decided_duplicate()
    for blank in (None, "", "   "):
        with pytest.raises(AdjudicationError, match="needs a reason"):
            revise(decided, Judgement("sue", Outcome.NOT_DUPLICATE, reason=blank))
    with pytest.raises(AdjudicationError, match="duplicate or not duplicate"):
        revise(decided, Judgement("sue", Outcome.CANNOT_DECIDE, reason="unsure"))
    with pytest.raises(AdjudicationError, match="one of the case's candidates"):
        revise(decided, Judgement("sue", Outcome.DUPLICATE, "G1", reason="other"))
    with pytest.raises(AdjudicationError, match="must change the decision"):
        revise(decided, Judgement("sue", Outcome.DUPLICATE, "G7", reason="agree"))

"""The rules of a review case, as pure functions over immutable ``Case`` values.

One case per group of a batch's probes that matched each other (one probe, when it matched
only the gallery); a decision of the case applies to every member. Its states:

- ``open``: in the queue. A claim makes it ``in_review`` under a lease.
- First review: "not duplicate" decides it (``decided_not_duplicate``); "duplicate of X" makes
  it ``awaiting_second_review``; "cannot decide", with a reason, makes it ``escalated``.
- ``awaiting_second_review``: claimed by another adjudicator (never the first), it is
  ``decided_duplicate`` when the second review confirms X, and ``escalated`` otherwise.
- ``escalated``: a supervisor decides it (``decided_by_supervisor``).
- A decided case can be revised by a supervisor, with a reason (``revise``): it becomes
  ``decided_by_supervisor`` with the new decision, and its ``revision`` counts the changes.

A second reviewer who disagrees (not duplicate, or duplicate of another candidate) or cannot
decide sends the case to a supervisor: no duplicate is ever recorded on one person's word, and
no disagreement is settled by a vote of two. A claim is a lease (``lease_until``,
``lease_token``): an expired lease returns the case to the queue as it was before the claim,
and a completion with a token that no longer holds the case changes nothing (``StaleLease``).

The storage layer (SQLite, PostgreSQL) applies exactly these functions inside its
transactions, so the rules are tested once, here.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from dedup.errors import AdjudicationError, StaleLease


class CaseState(StrEnum):
    OPEN = "open"
    IN_REVIEW = "in_review"
    AWAITING_SECOND_REVIEW = "awaiting_second_review"
    DECIDED_DUPLICATE = "decided_duplicate"
    DECIDED_NOT_DUPLICATE = "decided_not_duplicate"
    ESCALATED = "escalated"
    DECIDED_BY_SUPERVISOR = "decided_by_supervisor"


# States an adjudicator can claim a case from (besides an expired lease).
CLAIMABLE = frozenset({CaseState.OPEN, CaseState.AWAITING_SECOND_REVIEW})


class Outcome(StrEnum):
    DUPLICATE = "duplicate"
    NOT_DUPLICATE = "not_duplicate"
    CANNOT_DECIDE = "cannot_decide"


@dataclass(frozen=True)
class Judgement:
    adjudicator: str
    outcome: Outcome
    duplicate_of: str | None = None  # the candidate enrollment, for DUPLICATE
    reason: str | None = None  # required for CANNOT_DECIDE

    def same_finding(self, other: Judgement) -> bool:
        return (self.outcome, self.duplicate_of) == (other.outcome, other.duplicate_of)


@dataclass(frozen=True)
class Lease:
    holder: str
    token: str
    until: datetime
    # The state the case returns to when the lease expires.
    returns_to: CaseState


@dataclass(frozen=True)
class Case:
    probe_id: str
    candidates: tuple[str, ...]
    state: CaseState = CaseState.OPEN
    lease: Lease | None = None
    first: Judgement | None = None
    second: Judgement | None = None
    final: Judgement | None = None  # the decision that closed the case (its latest revision)
    revision: int = 0  # how often a supervisor changed the decision after it was made

    def lease_expired(self, now: datetime) -> bool:
        return self.lease is not None and self.lease.until <= now

    def effective(self, now: datetime) -> Case:
        """The case as the queue sees it at ``now``: an expired lease has returned it."""
        if self.state is CaseState.IN_REVIEW and self.lease_expired(now):
            assert self.lease is not None
            return dataclasses.replace(self, state=self.lease.returns_to, lease=None)
        return self

    def can_claim(self, adjudicator: str, now: datetime) -> bool:
        """Whether ``adjudicator`` may take this case now (never their own first judgement)."""
        case = self.effective(now)
        if case.state not in CLAIMABLE:
            return False
        return not (
            case.state is CaseState.AWAITING_SECOND_REVIEW
            and case.first is not None
            and case.first.adjudicator == adjudicator
        )


def claim(case: Case, adjudicator: str, token: str, now: datetime, lease: timedelta) -> Case:
    """``adjudicator`` takes the case for ``lease``; the token proves it on completion."""
    current = case.effective(now)
    if not current.can_claim(adjudicator, now):
        raise AdjudicationError(
            f"case {case.probe_id} cannot be claimed by {adjudicator} in state {current.state}"
        )
    held = Lease(adjudicator, token, now + lease, returns_to=current.state)
    return dataclasses.replace(current, state=CaseState.IN_REVIEW, lease=held)


def judge(case: Case, judgement: Judgement, token: str, now: datetime) -> Case:
    """Record an adjudicator's judgement on a case they hold; the case's next state."""
    lease = case.lease
    if (
        case.state is not CaseState.IN_REVIEW
        or lease is None
        or lease.token != token
        or lease.holder != judgement.adjudicator
        or lease.until <= now
    ):
        raise StaleLease(
            f"case {case.probe_id} is not held by {judgement.adjudicator} with this lease; "
            "nothing was recorded"
        )
    check_judgement(case, judgement)
    released = dataclasses.replace(case, lease=None)
    if lease.returns_to is CaseState.OPEN:
        return _first_review(released, judgement)
    return _second_review(released, judgement)


def supervise(case: Case, judgement: Judgement) -> Case:
    """A supervisor's decision on an escalated case (``CANNOT_DECIDE`` is not one)."""
    if case.state is not CaseState.ESCALATED:
        raise AdjudicationError(f"case {case.probe_id} is {case.state}, not escalated")
    if judgement.outcome is Outcome.CANNOT_DECIDE:
        raise AdjudicationError("a supervisor's decision is duplicate or not duplicate")
    check_judgement(case, judgement)
    return dataclasses.replace(case, state=CaseState.DECIDED_BY_SUPERVISOR, final=judgement)


DECIDED = frozenset(
    {
        CaseState.DECIDED_DUPLICATE,
        CaseState.DECIDED_NOT_DUPLICATE,
        CaseState.DECIDED_BY_SUPERVISOR,
    }
)


def revise(case: Case, judgement: Judgement) -> Case:
    """A supervisor's change of a decision already made: the case is decided by them, with
    ``judgement`` as its decision, one revision later. The reason is required (whoever
    reads the change later must see why), and a revision must change the decision."""
    if case.state not in DECIDED:
        raise AdjudicationError(
            f"case {case.probe_id} is {case.state}: only a decided case can be revised"
        )
    if judgement.outcome is Outcome.CANNOT_DECIDE:
        raise AdjudicationError("a revision decides: duplicate or not duplicate")
    check_judgement(case, judgement)
    if not (judgement.reason or "").strip():
        raise AdjudicationError("a revision needs a reason")
    if case.final is not None and judgement.same_finding(case.final):
        raise AdjudicationError(
            f"case {case.probe_id} is already decided {judgement.outcome}"
            + (f" of {judgement.duplicate_of}" if judgement.duplicate_of else "")
            + ": a revision must change the decision"
        )
    return dataclasses.replace(
        case, state=CaseState.DECIDED_BY_SUPERVISOR, final=judgement, revision=case.revision + 1
    )


def _first_review(case: Case, judgement: Judgement) -> Case:
    if judgement.outcome is Outcome.NOT_DUPLICATE:
        return dataclasses.replace(
            case, state=CaseState.DECIDED_NOT_DUPLICATE, first=judgement, final=judgement
        )
    if judgement.outcome is Outcome.DUPLICATE:
        return dataclasses.replace(case, state=CaseState.AWAITING_SECOND_REVIEW, first=judgement)
    return dataclasses.replace(case, state=CaseState.ESCALATED, first=judgement)


def _second_review(case: Case, judgement: Judgement) -> Case:
    first = case.first
    if first is None or first.adjudicator == judgement.adjudicator:
        raise AdjudicationError(
            f"case {case.probe_id}: a duplicate must be confirmed by a second, different "
            "adjudicator"
        )
    if judgement.same_finding(first):
        return dataclasses.replace(
            case, state=CaseState.DECIDED_DUPLICATE, second=judgement, final=judgement
        )
    return dataclasses.replace(case, state=CaseState.ESCALATED, second=judgement)


def check_judgement(case: Case, judgement: Judgement) -> None:
    """Raise ``AdjudicationError`` when a judgement is malformed for this case."""
    if judgement.outcome is Outcome.DUPLICATE:
        if judgement.duplicate_of not in case.candidates:
            raise AdjudicationError(
                f"case {case.probe_id}: a duplicate must name one of the case's candidates"
            )
    elif judgement.duplicate_of is not None:
        raise AdjudicationError(f"only a duplicate names a candidate ({judgement.outcome})")
    if judgement.outcome is Outcome.CANNOT_DECIDE and not (judgement.reason or "").strip():
        raise AdjudicationError("'cannot decide' needs a reason for the supervisor")

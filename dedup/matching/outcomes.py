"""What the registry reads per enrollment, from the searches and the adjudicators' decisions.

Pure: the ``apply`` job (``pipelines.apply``) reads the lake and the review queue's
decisions, calls ``settle``, and writes what changed. Every staged enrollment of a searched
batch has exactly one state (``OutcomeStatus``):

- ``unique``: the search found no candidate for it;
- ``pending_review``: it has candidates and its case is not decided (or not imported yet);
- ``escalated``: its case waits for a supervisor;
- ``duplicate``: decided; its identity (``identities``) has an earlier member, which
  ``duplicate_of`` names (the identity's own id: its earliest enrollment);
- ``not_duplicate``: decided; no earlier enrollment is the same person (it may found an
  identity that later enrollments join);
- ``erased``: erased on request.

A decided state follows the identity rather than the case's words alone, so one rule covers a
probe decided against the gallery, the members of an in-batch group (one decision for all),
and a later decision that merges or splits identities: the state is re-derived each time.

Decisions are named ``case:<case_id>@<revision>``: a supervisor's revision is a new
decision, so the link of the old one is withdrawn and the new one applied, once.

>>> decided = Decision("p", "b2", "c1", "decided_duplicate", "duplicate", "g", None, ("x", "y"), 0)
>>> [link.decision for link in decision_links([decided], erased=set())]
['case:c1@0']
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from dedup.contracts.schemas import OutcomeStatus
from dedup.matching.identities import Link

DECIDED_STATES = frozenset({"decided_duplicate", "decided_not_duplicate", "decided_by_supervisor"})
ESCALATED_STATE = "escalated"
ERASURE_CAUSE = "erasure:"


@dataclass(frozen=True)
class Decision:
    """One member's row of the review queue's export (``queue.Decision``, as plain values)."""

    enrollment_id: str
    batch_id: str
    case_id: str
    state: str  # a CaseState value
    outcome: str | None  # "duplicate" | "not_duplicate" for a decided case, else None
    duplicate_of: str | None
    decided_at: datetime | None
    decided_by: tuple[str, ...]
    revision: int

    @property
    def ref(self) -> str:
        return f"case:{self.case_id}@{self.revision}"

    @property
    def decided(self) -> bool:
        return self.state in DECIDED_STATES and self.outcome is not None


@dataclass(frozen=True)
class Outcome:
    """An enrollment's state; ``changed_at`` is set by whoever records it."""

    enrollment_id: str
    batch_id: str
    status: OutcomeStatus
    duplicate_of: str | None = None
    identity_id: str | None = None
    case_id: str | None = None
    decided_by: tuple[str, ...] = ()
    decided_at: datetime | None = None

    def event_id(self, previous: str | None) -> str:
        """The id of the event of reaching this state from the event ``previous`` (None for
        the first): the same transition always has the same id, so a state recorded twice
        (a re-run, a crash between writes) is recorded once, and returning to an earlier
        state later is a new event."""
        parts = (
            previous or "",
            self.enrollment_id,
            self.status.value,
            self.duplicate_of or "",
            self.identity_id or "",
            self.case_id or "",
            ",".join(self.decided_by),
            "" if self.decided_at is None else self.decided_at.isoformat(),
        )
        return hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()[:32]


def decision_links(decisions: Iterable[Decision], erased: set[str]) -> list[Link]:
    """The confirmed duplicate links the decisions make: every member of a case decided
    "duplicate of X" is linked to X. A link naming an erased enrollment is not made (its
    members stay joined by the erasure's bridge links)."""
    links = []
    for d in decisions:
        if not d.decided or d.outcome != "duplicate" or d.duplicate_of is None:
            continue
        if d.enrollment_id == d.duplicate_of or {d.enrollment_id, d.duplicate_of} & erased:
            continue
        links.append(Link(d.ref, d.enrollment_id, d.duplicate_of))
    return links


def settle(
    staged: Mapping[str, str],
    with_candidates: set[str],
    decisions: Mapping[str, Decision],
    identity: Mapping[str, str],
    erased: set[str],
) -> dict[str, Outcome]:
    """Each enrollment's state. ``staged``: enrollment -> batch, for every staged enrollment
    of a searched batch; ``with_candidates``: the probes the searches found candidates for;
    ``decisions``: the latest decision per member enrollment; ``identity``: enrollment ->
    identity id; ``erased``: enrollments erased on request."""
    out: dict[str, Outcome] = {}
    for enrollment, batch in staged.items():
        if enrollment in erased:
            out[enrollment] = Outcome(enrollment, batch, OutcomeStatus.ERASED)
            continue
        own = identity.get(enrollment, enrollment)
        decision = decisions.get(enrollment)
        if decision is None:
            status = (
                OutcomeStatus.PENDING_REVIEW
                if enrollment in with_candidates
                else OutcomeStatus.UNIQUE
            )
            out[enrollment] = Outcome(enrollment, batch, status, identity_id=own)
            continue
        if decision.decided:
            status = OutcomeStatus.DUPLICATE if own != enrollment else OutcomeStatus.NOT_DUPLICATE
        elif decision.state == ESCALATED_STATE:
            status = OutcomeStatus.ESCALATED
        else:
            status = OutcomeStatus.PENDING_REVIEW
        decided = decision.decided
        out[enrollment] = Outcome(
            enrollment,
            batch,
            status,
            duplicate_of=own if status is OutcomeStatus.DUPLICATE else None,
            identity_id=own,
            case_id=decision.case_id,
            decided_by=decision.decided_by if decided else (),
            decided_at=decision.decided_at if decided else None,
        )
    return out

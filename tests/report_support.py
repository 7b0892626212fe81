"""One night's candidate rows and decided outcomes, which the batch report's tests share."""

from __future__ import annotations

from dedup.reporting.nights import Candidate, Outcome


def outcome(eid: str, status: str, batch: str = "b2", identity: str | None = None) -> Outcome:
    return Outcome(eid, batch, status, identity_id=identity or eid)


# b2's probes: p1 decided not duplicate (both its candidates false), p2 decided a duplicate
# of g2 (one true pair, one false), p3 and p4 one person found within the batch (both ways),
# p5 still pending.
OUTCOMES = {
    o.enrollment_id: o
    for o in [
        outcome("g1", "unique", "b1"),
        outcome("g2", "unique", "b1"),
        outcome("g3", "unique", "b1"),
        outcome("p1", "not_duplicate"),
        outcome("p2", "duplicate", identity="g2"),
        outcome("p3", "not_duplicate", identity="p3"),
        outcome("p4", "duplicate", identity="p3"),
        outcome("p5", "pending_review"),
    ]
}
CANDIDATES = [
    Candidate("p1", "g1", 0.91, "gallery"),
    Candidate("p1", "g3", 0.92, "gallery"),
    Candidate("p2", "g2", 0.97, "gallery"),
    Candidate("p2", "g1", 0.905, "gallery"),
    Candidate("p3", "p4", 0.96, "batch"),
    Candidate("p4", "p3", 0.96, "batch"),
    Candidate("p5", "g1", 0.93, "gallery"),
]

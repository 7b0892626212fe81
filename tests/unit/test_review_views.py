"""Candidates grouped by identity (``views.by_identity``): the captures of one person together,
best first, groups by best score, and by rank while scores are hidden."""

from __future__ import annotations

from dedup.adjudication.views import CandidateView, IdentityGroup, SubjectView, by_identity


def candidate(eid: str, score: float, rank: int, identity: str | None = None) -> CandidateView:
    return CandidateView(SubjectView(eid, None, None, {}, {}, ()), score, rank, "gallery", identity)


def layout(groups: tuple[IdentityGroup, ...]) -> list[tuple[str, list[str]]]:
    return [(g.identity_id, [c.subject.enrollment_id for c in g.captures]) for g in groups]


# Ranks that disagree with scores (they come from different searches): X is rank 1 but
# scores below Y's best capture.
CANDIDATES = (
    candidate("X", 0.90, 1),
    candidate("Y2", 0.80, 2, "I-Y"),
    candidate("Y1", 0.95, 3, "I-Y"),
    candidate("Z", 0.85, 4, "Z"),  # an identity named by its own id is still its own
)


def test_captures_of_one_identity_are_one_group_best_score_first() -> None:
    groups = by_identity(CANDIDATES)
    assert layout(groups) == [("I-Y", ["Y1", "Y2"]), ("X", ["X"]), ("Z", ["Z"])]
    assert [(g.best_score, g.best_rank) for g in groups] == [(0.95, 2), (0.90, 1), (0.85, 4)]
    assert groups[0].best.subject.enrollment_id == "Y1"


def test_while_scores_are_hidden_the_order_is_by_rank_alone() -> None:
    groups = by_identity(CANDIDATES, by_score=False)
    assert layout(groups) == [("X", ["X"]), ("I-Y", ["Y2", "Y1"]), ("Z", ["Z"])]
    # Any scores give the same hidden order: it says nothing about them.
    rescored = [candidate(c.subject.enrollment_id, 1.0 - c.score, c.rank, c.identity_id)
                for c in CANDIDATES]  # fmt: skip
    assert layout(by_identity(rescored, by_score=False)) == layout(groups)


def test_ties_fall_back_to_rank_then_id_so_every_read_agrees() -> None:
    tied = [candidate("B", 0.9, 2), candidate("A", 0.9, 2), candidate("C", 0.9, 1)]
    assert layout(by_identity(tied)) == [("C", ["C"]), ("A", ["A"]), ("B", ["B"])]
    assert layout(by_identity(reversed(tied))) == layout(by_identity(tied))
    assert by_identity([]) == ()

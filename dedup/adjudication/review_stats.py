"""How adjudicators decide, for the supervisor and the batch report: how often a decision
changed after the scores were shown, and in which direction (automation bias), and how long a
case takes from claim to judgement.

A judgement's blind outcome is the one recorded before the scores were shown. The machine's
suggestion is "duplicate of the top-scored candidate": a change *towards* it ends there from
elsewhere (not duplicate -> duplicate of the top candidate), a change *away* starts there and
leaves it; any other change (duplicate of one candidate -> of another below the top, or ->
cannot decide from not duplicate) is counted as *other*.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from dedup.adjudication.tables import CaseCandidate, JudgementRow

# Judgements an adjudicator made while holding the case (a supervisor's are not timed).
HELD_STAGES = ("first", "second")


@dataclass(frozen=True)
class ScoreInfluence:
    """One adjudicator's (or, with ``adjudicator`` None, everyone's) blind and final
    judgements compared."""

    adjudicator: str | None
    blind: int  # judgements with a blind one recorded before the scores were shown
    changed: int
    towards: int  # to "duplicate of the top-scored candidate"
    away: int  # from it

    @property
    def other(self) -> int:
        return self.changed - self.towards - self.away

    @property
    def changed_rate(self) -> float | None:
        return None if self.blind == 0 else self.changed / self.blind


@dataclass(frozen=True)
class CaseTimes:
    """Seconds from claim to judgement of one adjudicator (None: everyone)."""

    adjudicator: str | None
    judgements: int
    median_seconds: float | None
    p90_seconds: float | None


def score_influence(db: Session) -> tuple[list[ScoreInfluence], ScoreInfluence]:
    """Per adjudicator (by name) and overall."""
    rows = list(
        db.scalars(
            select(JudgementRow).where(
                JudgementRow.stage.in_(HELD_STAGES), JudgementRow.blind_outcome.is_not(None)
            )
        )
    )
    top = top_candidates(db)
    per: dict[str | None, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    for j in rows:
        suggestion = ("duplicate", top.get(j.case_id))
        blind, final = (j.blind_outcome, j.blind_duplicate_of), (j.outcome, j.duplicate_of)
        counts = [1, blind != final, blind != final and final == suggestion,
                  blind != final and blind == suggestion]  # fmt: skip
        for key in (j.adjudicator, None):
            per[key] = [a + int(b) for a, b in zip(per[key], counts, strict=True)]
    found = {k: ScoreInfluence(k, *v) for k, v in per.items()}
    overall = found.pop(None, ScoreInfluence(None, 0, 0, 0, 0))
    return [found[k] for k in sorted(k for k in found if k is not None)], overall


def top_candidates(db: Session) -> dict[str, str]:
    """Each case's top-scored candidate (ties: the better rank, then the id)."""
    best: dict[str, tuple[float, int, str]] = {}
    judged = select(JudgementRow.case_id).where(JudgementRow.blind_outcome.is_not(None))
    for case_id, candidate, score, rank in db.execute(
        select(
            CaseCandidate.case_id, CaseCandidate.candidate_id, CaseCandidate.score,
            CaseCandidate.rank,
        ).where(CaseCandidate.case_id.in_(judged))
    ):  # fmt: skip
        key = (-score, rank, candidate)
        if case_id not in best or key < best[case_id]:
            best[case_id] = key
    return {case_id: key[2] for case_id, key in best.items()}


def case_times(db: Session) -> tuple[list[CaseTimes], CaseTimes]:
    """Claim-to-judgement seconds per adjudicator and overall (judgements made before the
    claim time was kept have none and are left out)."""
    seconds: dict[str, list[float]] = defaultdict(list)
    for who, at, claimed in db.execute(
        select(JudgementRow.adjudicator, JudgementRow.at, JudgementRow.claimed_at).where(
            JudgementRow.stage.in_(HELD_STAGES), JudgementRow.claimed_at.is_not(None)
        )
    ):
        if claimed is not None:
            seconds[who].append(max(0.0, (at - claimed).total_seconds()))
    every = [s for values in seconds.values() for s in values]
    return [times_of(who, seconds[who]) for who in sorted(seconds)], times_of(None, every)


def times_of(adjudicator: str | None, seconds: Sequence[float]) -> CaseTimes:
    """The median and the 90th percentile (nearest rank) of ``seconds``.

    >>> times_of("ann", [10, 20, 30, 40, 50, 60, 70, 80, 90, 100])
    CaseTimes(adjudicator='ann', judgements=10, median_seconds=55.0, p90_seconds=90)
    """
    if not seconds:
        return CaseTimes(adjudicator, 0, None, None)
    ordered = sorted(seconds)
    p90 = ordered[max(0, math.ceil(0.9 * len(ordered)) - 1)]
    return CaseTimes(adjudicator, len(ordered), float(statistics.median(ordered)), p90)

"""Predicted against observed false candidates, night by night and cumulative.

The threshold calibration predicts, for each night, how many false candidate pairs its
threshold lets through (``expected_false``, from the fitted impostor tail and the gallery's
size) and the FPIR it was calibrated to (``target_fpir``). The adjudicators' applied
decisions say what happened:

- **False candidate pairs**: pairs whose two enrollments are decided and are not one
  identity. A pair with an end not decided yet is *undecided*; a pair with an erased end is
  left out. The in-batch search finds (a, b) and (b, a): one pair, as the prediction counts
  B(B-1)/2 pairs within a batch.
- **Observed FPIR**: of the batch's decided searches that found no true mate among their
  gallery candidates (the non-mated searches, as far as decisions can tell: a mate the
  search missed is invisible here), the share that returned at least one gallery candidate.
  Searches whose probe or a gallery candidate is still open are counted as undecided.
- **Drift**: ``max(o / max(e, 0.5), e / max(o, 0.5))`` of observed ``o`` and predicted ``e``
  false candidates: how many times one exceeds the other, a count under 0.5 counted as 0.5.
  It *alerts* where it exceeds 3, no pair is undecided, and one side is at least 5: the
  same figure and conditions as the alert ``DedupFalseCandidatesDrift``, which Prometheus
  computes from the match job's and the report step's pushed figures.

The cumulative row of a night sums every night up to and including it; its drift is that of
the sums, so a steady 2x under-prediction that no single small night shows still appears.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

from dedup.contracts.schemas import CandidateSource, OutcomeStatus
from dedup.proportions import clopper_pearson

DECIDED = frozenset({OutcomeStatus.NOT_DUPLICATE, OutcomeStatus.DUPLICATE})
OPEN = frozenset({OutcomeStatus.PENDING_REVIEW, OutcomeStatus.ESCALATED})
SEARCHED = frozenset({OutcomeStatus.UNIQUE, *DECIDED})
# The alert's constants (deploy/prometheus/alerts.yaml, DedupFalseCandidatesDrift).
DRIFT_FACTOR = 3.0
DRIFT_FLOOR = 0.5
DRIFT_MIN_COUNT = 5.0
Number = TypeVar("Number", int, float)


@dataclass(frozen=True)
class Candidate:
    probe_id: str
    candidate_id: str
    score: float
    source: str


@dataclass(frozen=True)
class Outcome:
    """An ``outcomes`` row, as far as the report needs it."""

    enrollment_id: str
    batch_id: str
    status: str
    identity_id: str | None = None
    duplicate_of: str | None = None

    @property
    def identity(self) -> str:
        return self.identity_id or self.duplicate_of or self.enrollment_id


@dataclass(frozen=True)
class Observed:
    """False candidate pairs found by adjudicators' decisions, and pairs not decided yet."""

    false: int
    decided: int
    undecided: int


@dataclass(frozen=True)
class Searches:
    """The batch's searches as decisions classify them (gallery candidates only)."""

    nonmated: int  # decided, no gallery candidate of the probe's own identity
    false_positive: int  # of those, the ones with at least one gallery candidate
    undecided: int  # the probe or one of its gallery candidates is still open

    @property
    def fpir(self) -> float | None:
        return self.false_positive / self.nonmated if self.nonmated else None

    @property
    def fpir_interval(self) -> tuple[float, float] | None:
        return clopper_pearson(self.false_positive, self.nonmated) if self.nonmated else None


@dataclass(frozen=True)
class Night:
    """One night's (or, cumulative, the nights' so far) predicted and observed figures;
    the observed ones are None where decisions were never applied."""

    batch_id: str
    expected_false: float | None
    observed_false: int | None
    undecided: int | None
    target_fpir: float | None = None
    searches: Searches | None = None

    @property
    def drift(self) -> float | None:
        return drift_factor(self.expected_false, self.observed_false)

    @property
    def drift_alerts(self) -> bool:
        """What ``DedupFalseCandidatesDrift`` says of these figures."""
        drift, e, o = self.drift, self.expected_false, self.observed_false
        if drift is None or e is None or o is None or self.undecided is None:
            return False
        return drift > DRIFT_FACTOR and self.undecided == 0 and max(e, o) >= DRIFT_MIN_COUNT

    def to_json(self) -> dict[str, object]:
        s = self.searches
        return {
            "batch_id": self.batch_id,
            "expected_false": self.expected_false,
            "observed_false": self.observed_false,
            "undecided": self.undecided,
            "drift": self.drift,
            "drift_alerts": self.drift_alerts,
            "target_fpir": self.target_fpir,
            "observed_fpir": None if s is None else s.fpir,
            "observed_fpir_ci": None if s is None else s.fpir_interval,
            "nonmated_searches": None if s is None else s.nonmated,
            "false_positive_searches": None if s is None else s.false_positive,
            "undecided_searches": None if s is None else s.undecided,
        }


def drift_factor(expected: float | None, observed: float | None) -> float | None:
    """How many times one of predicted and observed exceeds the other (counts under 0.5
    count as 0.5); None without both."""
    if expected is None or observed is None:
        return None
    return max(observed / max(expected, DRIFT_FLOOR), expected / max(observed, DRIFT_FLOOR))


def candidate_pairs(candidates: Iterable[Candidate]) -> dict[tuple[str, str, str], Candidate]:
    """One entry per pair: an in-batch pair found from both ends is counted once."""
    pairs: dict[tuple[str, str, str], Candidate] = {}
    for row in candidates:
        a, b = row.probe_id, row.candidate_id
        if row.source == CandidateSource.BATCH and b < a:
            a, b = b, a
        pairs.setdefault((a, b, row.source), row)
    return pairs


def observed_false(candidates: Iterable[Candidate], outcomes: Mapping[str, Outcome]) -> Observed:
    """Pairs adjudicators found false: the probe's outcome is decided and the two
    enrollments are not of one identity. A pair whose ends are not both decided (or whose
    candidate has no outcome) is undecided; one with an erased end is not counted."""
    false = decided = undecided = 0
    for probe_id, candidate_id, _ in candidate_pairs(candidates):
        ends = (outcomes.get(probe_id), outcomes.get(candidate_id))
        if any(o is not None and o.status == OutcomeStatus.ERASED for o in ends):
            continue
        probe, candidate = ends
        if (
            probe is None
            or candidate is None
            or probe.status not in DECIDED
            or candidate.status in OPEN
        ):
            undecided += 1
        else:
            decided += 1
            false += probe.identity != candidate.identity
    return Observed(false, decided, undecided)


def searches(
    batch_id: str, candidates: Iterable[Candidate], outcomes: Mapping[str, Outcome]
) -> Searches:
    """The batch's searches by what decisions made of their gallery candidates."""
    found: dict[str, list[str]] = {}
    for row in candidates:
        if row.source == CandidateSource.GALLERY:
            found.setdefault(row.probe_id, []).append(row.candidate_id)
    nonmated = false_positive = undecided = 0
    for probe in outcomes.values():
        if probe.batch_id != batch_id or probe.status == OutcomeStatus.ERASED:
            continue
        ends = [outcomes.get(c) for c in found.get(probe.enrollment_id, [])]
        kept = [o for o in ends if o is None or o.status != OutcomeStatus.ERASED]
        if probe.status not in SEARCHED or any(o is None or o.status in OPEN for o in kept):
            undecided += 1
        elif all(o.identity != probe.identity for o in kept if o is not None):
            nonmated += 1
            false_positive += bool(kept)
    return Searches(nonmated, false_positive, undecided)


def nights(
    match_figures: Mapping[str, Mapping[str, object]],
    candidates: Mapping[str, Sequence[Candidate]],
    outcomes: Mapping[str, Outcome] | None,
) -> list[Night]:
    """Every night with a match step, in the order given (when each match step finished)."""
    out = []
    for batch, figures in match_figures.items():
        rows = candidates.get(batch, [])
        pairs = None if outcomes is None else observed_false(rows, outcomes)
        out.append(
            Night(
                batch,
                number(figures.get("expected_false")),
                None if pairs is None else pairs.false,
                None if pairs is None else pairs.undecided,
                number(figures.get("target_fpir")),
                None if outcomes is None else searches(batch, rows, outcomes),
            )
        )
    return out


def cumulative(listed: Sequence[Night]) -> list[Night]:
    """For each night, the sums of it and every night before it (a figure no night has is
    None; the target FPIR is the latest night's)."""
    out: list[Night] = []
    for night in listed:
        last = out[-1] if out else None
        out.append(
            Night(
                night.batch_id,
                _add(None if last is None else last.expected_false, night.expected_false),
                _add(None if last is None else last.observed_false, night.observed_false),
                _add(None if last is None else last.undecided, night.undecided),
                night.target_fpir,
                _add_searches(None if last is None else last.searches, night.searches),
            )
        )
    return out


def number(value: object) -> float | None:
    """A figure as a float; None for anything that is not a number (a missing figure)."""
    return float(value) if isinstance(value, int | float) else None


def _add(total: Number | None, value: Number | None) -> Number | None:
    if value is None:
        return total
    return value if total is None else total + value


def _add_searches(total: Searches | None, value: Searches | None) -> Searches | None:
    if value is None or total is None:
        return value or total
    return Searches(
        total.nonmated + value.nonmated,
        total.false_positive + value.false_positive,
        total.undecided + value.undecided,
    )


def published_nights(
    listed: Sequence[Night],
    matched_at: Mapping[str, dt.datetime],
    now: dt.datetime,
    retention_days: int,
    batch_id: str,
) -> list[Night]:
    """The nights whose observed figures a report publishes: ``batch_id``'s, and those whose
    match step finished within ``retention_days`` of ``now``. An older night's figures were
    pruned from the metrics (``dedup.observability.retention``); publishing them again each
    night would bring every night ever matched back."""
    kept = now - dt.timedelta(days=retention_days)
    return [
        n
        for n in listed
        if n.batch_id == batch_id or (n.batch_id in matched_at and matched_at[n.batch_id] >= kept)
    ]

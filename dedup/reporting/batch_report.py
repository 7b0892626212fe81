"""The figures of one batch's report, computed from plain rows (the lake is read elsewhere).

What a registry operator reads the morning after a night: rows by outcome and by reject
reason, each step's time and throughput, candidates by source and score band, the review
threshold and the FPIR target it was calibrated to, the false candidates predicted against
those adjudicators found, catch-trial accuracy (with its exact interval), and how
adjudicators decide (changes after the scores, time per case). Only counts, scores and times: no
enrollment id, name or image ever reaches a report.

>>> bands = score_bands([0.905, 0.93, 0.99], ["gallery", "batch", "gallery"], 0.9)
>>> [(b.label, b.gallery, b.batch) for b in bands if b.gallery or b.batch]
[('0.900-0.920', 1, 0), ('0.920-0.950', 0, 1), ('0.950-1.000', 1, 0)]
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from dedup.contracts.schemas import CandidateSource, OutcomeStatus
from dedup.proportions import TrialAccuracy
from dedup.reporting.nights import (
    Candidate,
    Night,
    Observed,
    Outcome,
    candidate_pairs,
    cumulative,
    nights,
    number,
    observed_false,
)

Figure = float | int | str | None
# Band edges above the review threshold: false candidates crowd just above it.
BAND_STEPS = (0.02, 0.05, 0.10)
STEP_ORDER = ("stage", "embed", "match", "enqueue", "apply")


@dataclass(frozen=True)
class StepRun:
    """A ``batch_runs`` row: a step of the night that finished, and its figures."""

    step: str
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    figures: Mapping[str, Figure]


@dataclass(frozen=True)
class CatchTrials(TrialAccuracy):
    """Catch-trial accuracy over all adjudicators (no one's name is in a report)."""

    adjudicators: int
    trials: int
    correct: int
    changed_after_scores: int


@dataclass(frozen=True)
class ReviewHabits:
    """How all adjudicators together decided (no one's name): held judgements whose blind
    one came before the scores, how many changed after the scores and which way (towards the
    top-scored candidate, away from it), and seconds from claim to judgement."""

    blind: int
    changed: int
    towards: int
    away: int
    timed: int
    median_seconds: float | None
    p90_seconds: float | None


@dataclass(frozen=True)
class Band:
    label: str
    low: float
    high: float
    gallery: int
    batch: int


@dataclass(frozen=True)
class StepFigures:
    step: str
    seconds: float | None
    rows_in: int | None
    rows_out: int | None
    rows_per_second: float | None
    started_at: str | None
    finished_at: str | None


@dataclass(frozen=True)
class BatchReport:
    batch_id: str
    generated_at: str
    rows: int
    staged: int
    rejected_by_reason: dict[str, int]
    # None: the batch's decisions have not been applied yet (no outcomes table).
    outcomes: dict[str, int] | None
    steps: list[StepFigures]
    candidates: dict[str, int]
    bands: list[Band]
    threshold: float | None
    target_fpir: float | None
    expected_false: float | None
    observed: Observed | None
    catch_trials: CatchTrials | None
    nights: list[Night] = field(default_factory=list)
    habits: ReviewHabits | None = None
    # Each night's sums with every night before it (``nights``, cumulative).
    cumulative: list[Night] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        from dataclasses import asdict

        out = asdict(self)
        out["catch_trials"] = None if self.catch_trials is None else {
            **asdict(self.catch_trials), "rate": self.catch_trials.rate,
            "interval": self.catch_trials.interval, "few_trials": self.catch_trials.few,
        }  # fmt: skip
        out["nights"] = [n.to_json() for n in self.nights]
        out["cumulative"] = [n.to_json() for n in self.cumulative]
        return out


def score_bands(scores: Sequence[float], sources: Sequence[str], threshold: float) -> list[Band]:
    """Candidate rows per score band above ``threshold``, split by source; the last band
    runs to 1."""
    edges = [threshold, *(threshold + step for step in BAND_STEPS if threshold + step < 1.0)]
    edges.append(1.0)
    bands = []
    for index, (low, high) in enumerate(itertools.pairwise(edges)):
        last = index == len(edges) - 2
        inside = [
            source
            for score, source in zip(scores, sources, strict=True)
            if low <= score < high or (last and score >= high)
        ]
        bands.append(
            Band(
                f"{low:.3f}-{high:.3f}",
                low,
                high,
                inside.count(CandidateSource.GALLERY),
                inside.count(CandidateSource.BATCH),
            )
        )
    return bands


def outcome_counts(outcomes: Iterable[Outcome], batch_id: str) -> dict[str, int]:
    """The batch's enrollments by outcome status, every status listed."""
    counts = Counter(o.status for o in outcomes if o.batch_id == batch_id)
    return {status.value: counts.get(status.value, 0) for status in OutcomeStatus}


def decided_scores(
    candidates: Iterable[Candidate], outcomes: Mapping[str, Outcome]
) -> tuple[list[float], list[float]]:
    """Scores of the candidates of probes decided duplicate, and of those decided not."""
    duplicate, not_duplicate = [], []
    for row in candidates:
        probe = outcomes.get(row.probe_id)
        if probe is not None and probe.status == OutcomeStatus.DUPLICATE:
            duplicate.append(row.score)
        elif probe is not None and probe.status == OutcomeStatus.NOT_DUPLICATE:
            not_duplicate.append(row.score)
    return duplicate, not_duplicate


def step_figures(run: StepRun) -> StepFigures:
    """A step's time (its figures' ``seconds``, else finished - started) and throughput."""
    seconds = number(run.figures.get("seconds"))
    if seconds is None and run.started_at and run.finished_at:
        seconds = (run.finished_at - run.started_at).total_seconds()
    rows_in, rows_out = number(run.figures.get("rows_in")), number(run.figures.get("rows_out"))
    rate = rows_in / seconds if rows_in is not None and seconds else None
    return StepFigures(
        step=run.step,
        seconds=None if seconds is None else round(seconds, 3),
        rows_in=None if rows_in is None else int(rows_in),
        rows_out=None if rows_out is None else int(rows_out),
        rows_per_second=None if rate is None else round(rate, 3),
        started_at=None if run.started_at is None else run.started_at.isoformat(),
        finished_at=None if run.finished_at is None else run.finished_at.isoformat(),
    )


def _order(step: str) -> tuple[int, str]:
    return (STEP_ORDER.index(step) if step in STEP_ORDER else len(STEP_ORDER), step)


@dataclass(frozen=True)
class ReportInputs:
    """What the report is computed from, as plain rows (``pipelines/report.py`` reads them)."""

    batch_id: str
    # The batch's manifest rows by verdict: reason code, or None for a staged row.
    verdicts: Mapping[str | None, int]
    # The batch's ``batch_runs`` rows.
    steps: Sequence[StepRun]
    # Candidate rows by batch: this batch's, and every other night's with a match step.
    candidates: Mapping[str, Sequence[Candidate]]
    # Outcomes by enrollment id; None when decisions have never been applied (no table).
    outcomes: Mapping[str, Outcome] | None
    catch_trials: CatchTrials | None = None
    habits: ReviewHabits | None = None
    # The match step's figures of every night that has one (``batch_runs``), by batch; this
    # batch's falls back to what its match job left in its work folder.
    match_figures: Mapping[str, Mapping[str, Figure]] = field(default_factory=dict)
    # When each of those nights' match step finished (``batch_runs``), by batch.
    matched_at: Mapping[str, dt.datetime] = field(default_factory=dict)


def build_report(inputs: ReportInputs, now: dt.datetime) -> BatchReport:
    """The batch's report from its rows."""
    batch = inputs.batch_id
    match = inputs.match_figures.get(batch, {})
    threshold = number(match.get("threshold"))
    rows = inputs.candidates.get(batch, [])
    sources = Counter(row.source for row in rows)
    outcomes = inputs.outcomes
    listed = nights(inputs.match_figures, inputs.candidates, outcomes)
    return BatchReport(
        batch_id=batch,
        generated_at=now.isoformat(),
        rows=sum(inputs.verdicts.values()),
        staged=inputs.verdicts.get(None, 0),
        rejected_by_reason=rejected_by_reason(inputs.verdicts),
        outcomes=None if outcomes is None else outcome_counts(outcomes.values(), batch),
        steps=[step_figures(s) for s in sorted(inputs.steps, key=lambda s: _order(s.step))],
        candidates={
            "total": len(rows),
            "pairs": len(candidate_pairs(rows)),
            **{source.value: sources.get(source.value, 0) for source in CandidateSource},
        },
        bands=[]
        if threshold is None
        else score_bands([r.score for r in rows], [r.source for r in rows], threshold),
        threshold=threshold,
        target_fpir=number(match.get("target_fpir")),
        expected_false=number(match.get("expected_false")),
        observed=None if outcomes is None else observed_false(rows, outcomes),
        catch_trials=inputs.catch_trials,
        nights=listed,
        habits=inputs.habits,
        cumulative=cumulative(listed),
    )


def rejected_by_reason(verdicts: Mapping[str | None, int]) -> dict[str, int]:
    """The rejected rows by reason code (sorted by code)."""
    return {
        str(reason): n for reason, n in sorted(verdicts.items(), key=lambda i: i[0] or "") if reason
    }

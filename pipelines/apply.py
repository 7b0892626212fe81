"""The apply job: the adjudicators' decisions become ``outcomes`` and ``identities``.

It reads every decision from the review queue (through the service's own export operation,
which is audited), the staged enrollments and their candidates from the lake, and works out
each enrollment's state (``dedup.matching.outcomes``) and identity
(``dedup.matching.identities``). Then it writes what changed, in this order:

1. ``outcome_events`` and ``identity_events`` (insert-only, keyed by the event: a state or a
   merge recorded once, however often the job runs);
2. the audit entries of the identity events, in the review database (once per event);
3. ``links``, ``identities`` and ``outcomes`` (each replaced whole, only when it changed).

A crash between any two writes leaves the latest states as they were, and the events already
written are found again by their ids: a re-run writes the rest and the same tables result.
Nothing changes when nothing new was decided, so running it every night costs one read.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from rich.console import RenderableType

from dedup.adjudication import operations
from dedup.adjudication.access import Actor, Role
from dedup.adjudication.applied import IdentityEvent, record_identity_events
from dedup.adjudication.context import opened
from dedup.contracts.schemas import (
    IDENTITIES,
    IDENTITY_EVENTS,
    LINKS,
    OUTCOME_EVENTS,
    OUTCOMES,
    STATUS_STAGED,
    TABLES,
    OutcomeStatus,
)
from dedup.crash_points import crash_point
from dedup.matching.identities import Link, assign, changes
from dedup.matching.outcomes import ERASURE_CAUSE, Decision, Outcome, decision_links, settle
from dedup.observability.job_metrics import job_metrics
from dedup.settings import Settings
from pipelines.job_report import Figures, JobReport
from pipelines.lake.batch_run import BatchRun
from pipelines.lake.delta_rs import DeltaRsTables
from pipelines.lake.location import Lake
from pipelines.lake.readers import STAGING_COLUMNS, staging_order_of
from pipelines.match import searched

PIPELINE_ACTOR = "pipeline"
STATUS_ERASED = OutcomeStatus.ERASED.value


@dataclass(frozen=True, kw_only=True)
class ApplyReport(JobReport):
    decisions: int  # member rows read from the queue
    decided: int
    outcomes_changed: int
    merges: int
    splits: int
    by_status: dict[str, int]

    def summary(self) -> list[RenderableType]:
        counts = ", ".join(f"{n} {status}" for status, n in sorted(self.by_status.items()))
        return [
            f"apply: {self.decided} of {self.decisions} queued enrollments decided; "
            f"{self.outcomes_changed} outcomes changed, {self.merges} identity merges, "
            f"{self.splits} splits",
            f"outcomes: {counts or 'none yet'}",
        ]

    def figures(self) -> Figures:
        """Rows in: the queue's member rows read; out: the outcomes that changed."""
        return {
            **self.timing(self.decisions, self.outcomes_changed),
            "decided": self.decided,
            "merges": self.merges,
            "splits": self.splits,
            **{f"outcomes.{status}": n for status, n in sorted(self.by_status.items())},
        }


def read_decisions(settings: Settings) -> list[Decision]:
    """Every member row of the review queue's export, of every batch."""
    with opened(settings) as context:
        pipeline = Actor.local(PIPELINE_ACTOR, Role.OPERATOR)
        exported = operations.export_decisions(context, pipeline, None)
    return [
        Decision(
            enrollment_id=d.enrollment_id,
            batch_id=d.batch_id,
            case_id=d.case_id,
            state=d.state.value,
            outcome=None if d.final is None else d.final.outcome.value,
            duplicate_of=None if d.final is None else d.final.duplicate_of,
            decided_at=d.decided_at,
            decided_by=tuple(d.decided_by),
            revision=d.revision,
        )
        for d in exported
    ]


@dataclass(frozen=True)
class LakeState:
    """What the apply job reads from the lake."""

    staged: dict[str, str]  # enrollment -> batch, staged enrollments of searched batches
    erased: dict[str, str]  # enrollment -> batch
    order: list[str]  # staging order, erased enrollments left out
    with_candidates: set[str]
    outcomes: dict[str, dict[str, Any]]
    identities: dict[str, dict[str, Any]]
    links: list[dict[str, Any]]


def read_lake(settings: Settings) -> LakeState:
    tables = DeltaRsTables(Lake.of(settings))
    rows = tables.read(
        "enrollments",
        [*STAGING_COLUMNS, "status"],
        pc.field("status").isin([STATUS_STAGED, STATUS_ERASED]),
    )
    listed = [] if rows is None else rows.to_pylist()
    outcomes = _by_key(tables.read("outcomes", OUTCOMES.names), "enrollment_id")
    erased = {r["enrollment_id"]: r["batch_id"] for r in listed if r["status"] == STATUS_ERASED}
    erased |= {e: r["batch_id"] for e, r in outcomes.items() if r["status"] == STATUS_ERASED}
    batches = {r["batch_id"] for r in listed}
    done = {b for b in batches if searched(BatchRun(b, settings))}
    staged = {
        r["enrollment_id"]: r["batch_id"]
        for r in listed
        if r["status"] == STATUS_STAGED
        and r["batch_id"] in done
        and r["enrollment_id"] not in erased
    }
    probes = tables.read("candidates", ["probe_id"], pc.field("model_id") == settings.model)
    links = tables.read("links", LINKS.names)
    return LakeState(
        staged=staged,
        erased=erased,
        order=staging_order_of(
            [r for r in listed if r["status"] == STATUS_STAGED and r["enrollment_id"] not in erased]
        ),
        with_candidates=set() if probes is None else set(probes["probe_id"].to_pylist()),
        outcomes=outcomes,
        identities=_by_key(tables.read("identities", IDENTITIES.names), "enrollment_id"),
        links=[] if links is None else links.to_pylist(),
    )


def _by_key(table: pa.Table | None, key: str) -> dict[str, dict[str, Any]]:
    return {} if table is None else {r[key]: r for r in table.to_pylist()}


def links_in_force(lake: LakeState, decisions: Iterable[Decision]) -> list[Link]:
    """The decisions' links and the erasures' bridges, between enrollments still staged."""
    bridges = [
        Link(r["cause"], r["probe_id"], r["duplicate_of"])
        for r in lake.links
        if r["cause"].startswith(ERASURE_CAUSE)
    ]
    placed = set(lake.order)
    made = [
        link
        for link in [*bridges, *decision_links(decisions, set(lake.erased))]
        if link.probe in placed and link.duplicate_of in placed
    ]
    return sorted(set(made), key=lambda link: (link.decision, link.probe, link.duplicate_of))


def run_apply(settings: Settings, night: str | None = None) -> ApplyReport:
    """Apply every decision of every batch's cases to outcomes and identities. Decisions for
    one batch arrive over several nights, and one decision can merge identities of several
    batches, so there is no applying one batch alone: ``night`` only names the run (the
    nightly batch it belongs to) in its report and its metrics."""
    with job_metrics(settings.metrics, "apply", night or "all") as metrics:
        return metrics.done(_apply(settings, night))


def _apply(settings: Settings, night: str | None) -> ApplyReport:
    started = time.perf_counter()
    decisions = read_decisions(settings)
    lake = read_lake(settings)
    links = links_in_force(lake, decisions)
    identity = assign(lake.order, links)
    latest = {d.enrollment_id: d for d in decisions}
    known = {**lake.staged, **lake.erased}
    settled = settle(known, lake.with_candidates, latest, identity, set(lake.erased))
    now = datetime.now(UTC)
    tables = DeltaRsTables(Lake.of(settings))

    changed = {e: o for e, o in settled.items() if not _same(o, lake.outcomes.get(e))}
    events = _outcome_events(changed, lake.outcomes, now)
    # the event that recorded each changed state, which its outcomes row names
    ids, event_ids = events["enrollment_id"].to_pylist(), events["event_id"].to_pylist()
    recorded = dict(zip(ids, event_ids, strict=True))
    tables.insert_new("outcome_events", events)
    before = {e: r["identity_id"] for e, r in lake.identities.items()}
    cause = _cause(links, lake.links, decisions)
    identity_events = [
        IdentityEvent(_event_id(c.kind, c.identity, c.others, cause), c.kind, c.identity,
                      c.others, cause)
        for c in changes(before, identity)
    ]  # fmt: skip
    tables.insert_new("identity_events", _identity_event_rows(identity_events, now))
    crash_point("apply.after_events")
    if identity_events:
        with opened(settings) as context:
            pipeline = Actor.local(PIPELINE_ACTOR, Role.OPERATOR)
            record_identity_events(context, pipeline, identity_events)
    crash_point("apply.after_audit")
    _replace_if_changed(tables, "links", _link_rows(links, lake.links, now), lake.links, "link_id")
    identity_rows = [
        {
            "enrollment_id": e,
            "identity_id": i,
            "since": _since(lake.identities.get(e), i, now),
        }
        for e, i in identity.items()
    ]
    _replace_if_changed(
        tables, "identities", identity_rows, list(lake.identities.values()), "enrollment_id"
    )
    crash_point("apply.after_identities")
    outcome_rows = [
        _outcome_row(o, lake.outcomes.get(e), recorded.get(e), now) for e, o in settled.items()
    ]
    _replace_if_changed(
        tables, "outcomes", outcome_rows, list(lake.outcomes.values()), "enrollment_id"
    )
    by_status: dict[str, int] = {}
    for outcome in settled.values():
        by_status[outcome.status.value] = by_status.get(outcome.status.value, 0) + 1
    return ApplyReport(
        batch_id=night or "*",
        seconds=time.perf_counter() - started,
        decisions=len(decisions),
        decided=sum(d.decided for d in decisions),
        outcomes_changed=len(changed),
        merges=sum(e.kind == "merge" for e in identity_events),
        splits=sum(e.kind == "split" for e in identity_events),
        by_status=by_status,
    )


COMPARED = ("batch_id", "status", "duplicate_of", "identity_id", "case_id", "decided_at")


def _same(outcome: Outcome, row: Mapping[str, Any] | None) -> bool:
    if row is None:
        return False
    mine = _outcome_values(outcome)
    return all(mine[c] == row[c] for c in COMPARED) and tuple(row["decided_by"] or ()) == tuple(
        outcome.decided_by
    )


def _outcome_values(outcome: Outcome) -> dict[str, Any]:
    return {
        "enrollment_id": outcome.enrollment_id,
        "batch_id": outcome.batch_id,
        "status": outcome.status.value,
        "duplicate_of": outcome.duplicate_of,
        "identity_id": outcome.identity_id,
        "case_id": outcome.case_id,
        "decided_by": list(outcome.decided_by),
        "decided_at": outcome.decided_at,
    }


def _outcome_events(
    changed: Mapping[str, Outcome], current: Mapping[str, Mapping[str, Any]], now: datetime
) -> pa.Table:
    rows = []
    for enrollment, outcome in sorted(changed.items()):
        previous = (current.get(enrollment) or {}).get("event_id")
        rows.append(
            {
                "event_id": outcome.event_id(previous),
                "previous_event": previous,
                **_outcome_values(outcome),
                "changed_at": now,
            }
        )
    return pa.Table.from_pylist(rows, schema=OUTCOME_EVENTS)


def _outcome_row(
    outcome: Outcome, current: Mapping[str, Any] | None, event_id: str | None, now: datetime
) -> dict[str, Any]:
    """The outcomes row: as it was, or (``event_id`` of its change given) the new state."""
    if event_id is None and current is not None:
        return dict(current)
    return {**_outcome_values(outcome), "changed_at": now, "event_id": event_id}


def _cause(links: list[Link], before: list[dict[str, Any]], decisions: list[Decision]) -> str:
    """The decisions whose links are new or withdrawn since the last run; a withdrawn one
    that a supervisor revised names its revision."""
    now = {link.decision for link in links}
    then = {r["cause"] for r in before}
    revision = {d.case_id: d.revision for d in decisions}
    named = []
    for ref in sorted(now ^ then):
        case, _, rev = ref.removeprefix("case:").partition("@")
        later = revision.get(case)
        if ref in then and rev.isdigit() and later is not None and later > int(rev):
            named.append(f"{ref} revised as case:{case}@{later}")
        else:
            named.append(ref)
    return ",".join(named)[:500] or "unchanged decisions"


def _event_id(kind: str, identity: str, others: tuple[str, ...], cause: str) -> str:
    text = "\x1f".join([kind, identity, ",".join(others), cause])
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def _identity_event_rows(events: list[IdentityEvent], now: datetime) -> pa.Table:
    rows = [
        {
            "event_id": e.event_id,
            "kind": e.kind,
            "identity_id": e.identity_id,
            "others": list(e.others),
            "cause": e.cause,
            "at": now,
        }
        for e in events
    ]
    return pa.Table.from_pylist(rows, schema=IDENTITY_EVENTS)


def _link_rows(
    links: list[Link], before: list[dict[str, Any]], now: datetime
) -> list[dict[str, Any]]:
    made = {r["link_id"]: r["made_at"] for r in before}
    rows = []
    for link in links:
        key = "\x1f".join([link.decision, link.probe, link.duplicate_of])
        link_id = hashlib.sha256(key.encode("utf-8")).hexdigest()[:32]
        rows.append(
            {
                "link_id": link_id,
                "probe_id": link.probe,
                "duplicate_of": link.duplicate_of,
                "cause": link.decision,
                "made_at": made.get(link_id, now),
            }
        )
    return rows


def _since(row: Mapping[str, Any] | None, identity: str, now: datetime) -> datetime:
    if row is not None and row["identity_id"] == identity:
        since: datetime = row["since"]
        return since
    return now


def _replace_if_changed(
    tables: DeltaRsTables,
    name: str,
    rows: list[dict[str, Any]],
    before: list[dict[str, Any]],
    key: str,
) -> None:
    """Replace the table with ``rows`` unless it holds exactly them already (a table never
    written is written, empty or not, so readers find it)."""
    if tables.open(name) is not None and _sorted(rows, key) == _sorted(before, key):
        return
    tables.replace(name, pa.Table.from_pylist(_sorted(rows, key), schema=TABLES[name]))


def _sorted(rows: list[dict[str, Any]], key: str) -> list[dict[str, Any]]:
    return sorted((dict(r) for r in rows), key=lambda r: r[key])

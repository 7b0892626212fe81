"""The review queue under real concurrency on PostgreSQL: 20 claimers work through 2,000
cases, every case is decided exactly once and none is lost, and a claimer killed mid-case has
its case return to the queue when its lease expires (and its stale token records nothing).

Each claimer is a thread with its own sessions, looping as the service does: one transaction
claims the next case (``FOR UPDATE SKIP LOCKED``) and appends an audit entry (which locks the
single audit head row, so the 20 claimers contend on it), another judges the case and appends
a second entry. Most cases are judged "not duplicate"; every tenth probe is judged a duplicate
of its first candidate, so it needs a second claim, by a different claimer, to confirm it
(four eyes). The killed claimer is a separate OS process that claims one case on a 2-second
lease, starts judging it (its transaction holds the case row) and is then killed with SIGKILL.
"""

from __future__ import annotations

import json
import os
import select as selectors
import signal
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import Any

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session, sessionmaker

from dedup.adjudication import audit_store, database, intake, queue
from dedup.adjudication.access import Actor, Role
from dedup.adjudication.cases import CaseState, Judgement, Outcome
from dedup.adjudication.payloads import BatchImport
from dedup.adjudication.tables import AuditRow, CaseRow, JudgementRow
from dedup.errors import StaleLease
from tests.review_support import ROOT, batch_payload

pytestmark = [pytest.mark.slow]

CLAIMERS = 20
# 2,000 cases: 1,000 probes with one candidate each and 1,000 with two.
BATCHES = (("one-candidate", "A", 1, 1_000), ("two-candidates", "B", 2, 1_000))
CASES = sum(probes for *_, probes in BATCHES)
DUPLICATE_EVERY = 10  # every tenth probe is judged a duplicate (and needs a second claim)
LEASE = timedelta(minutes=10)  # the live claimers' lease: never expires during the run
SHORT_LEASE = timedelta(seconds=2)  # the killed claimer's lease
THINK = 0.005  # seconds a claimer looks at its case before judging it
RUN_SECONDS = 150.0  # the claimers give up after this (a lost case then fails the test)
DECIDED = {CaseState.DECIDED_DUPLICATE.value, CaseState.DECIDED_NOT_DUPLICATE.value}

# The killed claimer: claims the first case on a short lease (with its audit entry), then
# starts judging it (holding the case row in an open transaction), reports, and blocks.
KILLED_CLAIMER = """
import json, sys, time
from datetime import UTC, datetime, timedelta
from dedup.adjudication import audit_store, database, queue
from dedup.adjudication.access import Actor, Role

sessions = database.sessions(database.connect(sys.argv[1], pool_size=2))
now = datetime.now(UTC)
with sessions() as db, db.begin():
    got = queue.claim_next(db, "killed", now, timedelta(seconds=float(sys.argv[2])))
    assert got is not None and got.case.lease is not None
    actor = Actor("killed", frozenset({Role.ADJUDICATOR}), "process")
    audit_store.record(db, actor, "case.claim", f"case:{got.case_id}", at=now)
db = sessions()
db.begin()
queue.locked_case(db, got.case_id)
lease = got.case.lease
print(json.dumps({"case_id": got.case_id, "token": lease.token,
                  "until": lease.until.isoformat()}), flush=True)
time.sleep(3600)
"""


@dataclass(frozen=True)
class Held:
    """One case a claimer held, from its claim to its judgement."""

    case_id: str
    holder: str
    token: str
    stage: str  # "first" or "second"
    judgement: Judgement
    claimed_at: datetime  # the claim's ``now``
    # Monotonic times: the lease was surely held from ``start`` (the claim had committed) to
    # ``end`` (the judgement's transaction had not begun), and the claimer was busy with the
    # case from ``began`` (before the claim's transaction) to ``done`` (judgement committed).
    began: float
    start: float
    end: float
    done: float


@dataclass
class Claimer:
    name: str
    held: list[Held] = field(default_factory=list)
    errors: list[BaseException] = field(default_factory=list)
    idle_polls: int = 0


def is_duplicate(probe_id: str) -> bool:
    return int(probe_id[1:]) % DUPLICATE_EVERY == 0


def decide(claim: queue.Claim, name: str) -> tuple[str, Judgement]:
    """The claimer's judgement: confirm a first "duplicate", else judge by the probe's rule."""
    case = claim.case
    assert case.lease is not None
    if case.lease.returns_to is CaseState.AWAITING_SECOND_REVIEW:
        assert case.first is not None and case.first.adjudicator != name
        return "second", Judgement(name, Outcome.DUPLICATE, case.first.duplicate_of)
    assert case.lease.returns_to is CaseState.OPEN
    if is_duplicate(case.probe_id):
        return "first", Judgement(name, Outcome.DUPLICATE, case.candidates[0])
    return "first", Judgement(name, Outcome.NOT_DUPLICATE)


def undecided(sessions: sessionmaker[Session]) -> int:
    with sessions() as db:
        return int(
            db.execute(
                select(func.count()).select_from(CaseRow).where(CaseRow.state.not_in(DECIDED))
            ).scalar_one()
        )


def work(
    sessions: sessionmaker[Session], claimer: Claimer, go: threading.Event, stop: threading.Event
) -> None:
    """Claim and judge until no case is left undecided (or the time is up, or one failed)."""
    actor = Actor(claimer.name, frozenset({Role.ADJUDICATOR}), f"thread:{claimer.name}")
    deadline = time.monotonic() + RUN_SECONDS
    go.wait()
    try:
        while time.monotonic() < deadline and not stop.is_set():
            began = time.monotonic()
            now = datetime.now(UTC)
            with sessions() as db, db.begin():
                got = queue.claim_next(db, claimer.name, now, LEASE)
                if got is not None:
                    audit_store.record(db, actor, "case.claim", f"case:{got.case_id}", at=now)
            if got is None:
                # Nothing claimable for this claimer now; cases held by others (or awaiting a
                # second review this claimer may not give) can still come back or open up.
                if undecided(sessions) == 0:
                    return
                claimer.idle_polls += 1
                time.sleep(0.05)
                continue
            start = time.monotonic()
            assert not got.resumed
            lease = got.case.lease
            assert lease is not None and lease.holder == claimer.name
            stage, judgement = decide(got, claimer.name)
            time.sleep(THINK)
            end = time.monotonic()
            with sessions() as db, db.begin():
                after = queue.judge_case(db, got.case_id, lease.token, judgement, datetime.now(UTC))
                details = {"outcome": judgement.outcome.value, "state": after.state.value}
                audit_store.record(db, actor, "case.judge", f"case:{got.case_id}", details=details)
            held = Held(got.case_id, claimer.name, lease.token, stage, judgement, now,
                        began, start, end, time.monotonic())  # fmt: skip
            claimer.held.append(held)
    except BaseException as exc:  # reported by the test, with the claimer's name
        claimer.errors.append(exc)
        stop.set()


def import_cases(sessions: sessionmaker[Session]) -> dict[str, str]:
    """The 2,000 cases, each with an audit entry per batch; probe of each case id."""
    operator = Actor("operator", frozenset({Role.OPERATOR}), "test")
    for batch_id, prefix, per_probe, probes in BATCHES:
        payload = BatchImport.model_validate(
            batch_payload(probes, candidates_per_probe=per_probe, prefix=prefix, images=False)
        )
        with sessions() as db, db.begin():
            result = intake.import_batch(
                db, batch_id, payload, "operator", datetime.now(UTC), 1 << 20
            )
            assert result.cases_created == probes
            audit_store.record(
                db, operator, "batch.import", f"batch:{batch_id}",
                details=intake.import_details(result),
            )  # fmt: skip
    with sessions() as db:
        return dict(db.execute(select(CaseRow.case_id, CaseRow.probe_id)).all())


def queue_positions(sessions: sessionmaker[Session]) -> dict[str, int]:
    with sessions() as db:
        return dict(db.execute(select(CaseRow.case_id, CaseRow.queue_pos)).all())


@dataclass(frozen=True)
class KilledClaim:
    case_id: str
    token: str
    until: datetime
    killed_at: datetime


def claim_and_kill(url: str, sessions: sessionmaker[Session]) -> KilledClaim:
    """A separate process claims a case on a short lease, starts judging it, and is killed."""
    process = subprocess.Popen(
        [sys.executable, "-c", KILLED_CLAIMER, url, str(SHORT_LEASE.total_seconds())],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None and process.stderr is not None
        ready, _, _ = selectors.select([process.stdout], [], [], 120)
        line = process.stdout.readline() if ready else ""
        if not line:
            process.kill()
            pytest.fail(f"the claimer process did not claim a case: {process.stderr.read()}")
        report: dict[str, Any] = json.loads(line)
        case_id, until = report["case_id"], datetime.fromisoformat(report["until"])
        with sessions() as db, db.begin():
            row = db.get(CaseRow, case_id)
            assert row is not None and queue.holds(row, "killed", datetime.now(UTC))
            assert row.lease_token == report["token"]
            # Mid-case: the process is judging it, so its transaction holds the case row.
            locked = db.execute(
                select(CaseRow.case_id).where(CaseRow.case_id == case_id)
                .with_for_update(skip_locked=True)
            ).first()  # fmt: skip
            assert locked is None
        os.kill(process.pid, signal.SIGKILL)
        killed_at = datetime.now(UTC)
        assert process.wait(timeout=30) == -signal.SIGKILL
        assert killed_at < until, "the claimer was killed only after its lease had expired"
        return KilledClaim(case_id, report["token"], until, killed_at)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()


def most_at_once(intervals: list[tuple[float, float]]) -> int:
    """The most intervals open at the same moment."""
    events = sorted([(a, 1) for a, _ in intervals] + [(b, -1) for _, b in intervals])
    most = now = 0
    for _, step in events:
        now += step
        most = max(most, now)
    return most


def judgement_rows(db: Session) -> dict[str, list[JudgementRow]]:
    rows: dict[str, list[JudgementRow]] = defaultdict(list)
    for row in db.execute(select(JudgementRow).order_by(JudgementRow.id)).scalars():
        rows[row.case_id].append(row)
    return rows


@pytest.fixture
def timings() -> Iterator[dict[str, float]]:
    """Where the test's time goes, in seconds (shown with ``-s``)."""
    found: dict[str, float] = {}
    yield found
    print(" ".join(f"{k}={v:.1f}" for k, v in found.items()))


def test_twenty_claimers_decide_two_thousand_cases_exactly_once(
    pg_engine: Engine, timings: dict[str, float]
) -> None:
    engine = pg_engine
    sessions = database.sessions(engine)
    url = engine.url.render_as_string(hide_password=False)
    assert engine.pool.size() >= CLAIMERS  # type: ignore[attr-defined]

    clock = time.monotonic()
    probe_of = import_cases(sessions)
    assert len(probe_of) == CASES
    queue_pos = queue_positions(sessions)
    timings["import"] = time.monotonic() - clock

    # A claimer process takes the first case on a short lease and dies mid-case.
    clock = time.monotonic()
    killed = claim_and_kill(url, sessions)
    timings["killed_claimer"] = time.monotonic() - clock

    # 20 claimers, started together, work the queue until every case is decided.
    clock = time.monotonic()
    claimers = [Claimer(f"adj{i:02d}") for i in range(CLAIMERS)]
    go, stop = threading.Event(), threading.Event()
    threads = [threading.Thread(target=work, args=(sessions, c, go, stop)) for c in claimers]
    for thread in threads:
        thread.start()
    go.set()
    for thread in threads:
        thread.join(RUN_SECONDS + 60)
    timings["claimers"] = time.monotonic() - clock
    assert not any(t.is_alive() for t in threads)
    # No claim, judgement or audit append failed: no StaleLease or Conflict (no live lease
    # was ever taken over), no deadlock, no serialisation error.
    failures = {c.name: repr(e) for c in claimers for e in c.errors}
    assert failures == {}

    clock = time.monotonic()
    held = [h for c in claimers for h in c.held]
    duplicates = {case for case, probe in probe_of.items() if is_duplicate(probe)}
    assert len(duplicates) == CASES // DUPLICATE_EVERY
    # One claim per case, plus a second for each duplicate; every token is distinct.
    assert len(held) == CASES + len(duplicates)
    assert len({h.token for h in held}) == len(held)
    per_case: dict[str, list[Held]] = defaultdict(list)
    for h in sorted(held, key=lambda h: h.start):
        per_case[h.case_id].append(h)
    assert set(per_case) == set(probe_of)
    for case_id, claims in per_case.items():
        assert [c.stage for c in claims] == (
            ["first", "second"] if case_id in duplicates else ["first"]
        ), case_id
        # Never two live leases on one case: each claim began after the previous one ended.
        for before, after in pairwise(claims):
            assert before.end <= after.start, case_id
            assert before.holder != after.holder, case_id  # four eyes
    # The claimers really ran at once: all 20 took part, and many held cases simultaneously.
    assert {h.holder for h in held} == {c.name for c in claimers}
    busy = most_at_once([(h.began, h.done) for h in held])
    holding = most_at_once([(h.start, h.end) for h in held])
    assert busy >= CLAIMERS // 2 and holding >= 2, (busy, holding)

    # The killed claimer's case stayed held until its lease expired, then came back to the
    # queue (as an open case, not as the dead claimer's) and was claimed and decided.
    # It was the first case in the queue, which every claimer would have taken if it could.
    first_in_queue = min(per_case, key=lambda case_id: queue_pos[case_id])
    assert first_in_queue == killed.case_id
    back = per_case[killed.case_id]
    assert back[0].stage == "first"
    assert all(h.claimed_at >= killed.until for h in back)
    # ...while the other claimers were busy claiming around it during the live lease.
    assert any(h.claimed_at < killed.until for h in held)

    with sessions() as db:
        rows = {r.case_id: r for r in db.execute(select(CaseRow)).scalars()}
        states = Counter(r.state for r in rows.values())
        assert states == {
            CaseState.DECIDED_DUPLICATE.value: len(duplicates),
            CaseState.DECIDED_NOT_DUPLICATE.value: CASES - len(duplicates),
        }
        assert all(r.lease_holder is None and r.lease_token is None for r in rows.values())
        # The judgements recorded are exactly those the claimers made, once each.
        judged = judgement_rows(db)
        assert set(judged) == set(probe_of)
        for case_id, claims in per_case.items():
            found = [
                (j.stage, Judgement(j.adjudicator, Outcome(j.outcome), j.duplicate_of))
                for j in judged[case_id]
            ]
            assert found == [(c.stage, c.judgement) for c in claims], case_id
        assert sum(len(j) for j in judged.values()) == len(held)
        assert all(j.adjudicator != "killed" for js in judged.values() for j in js)
        # The export sees 2,000 decisions, each by one adjudicator or (duplicates) two.
        decisions = queue.decisions(db)
        assert len(decisions) == CASES
        assert all(d.final is not None and d.state.value in DECIDED for d in decisions)
        assert sum(len(d.decided_by) for d in decisions) == len(held)

        # The stale token of the killed claimer records nothing now.
        case_before = rows[killed.case_id]
        snapshot = (case_before.state, case_before.version, len(judged[killed.case_id]))
    with sessions() as db, pytest.raises(StaleLease), db.begin():
        queue.judge_case(
            db,
            killed.case_id,
            killed.token,
            Judgement("killed", Outcome.NOT_DUPLICATE),
            killed.killed_at,  # even at a moment its lease was live
        )
    with sessions() as db:
        row = db.get(CaseRow, killed.case_id)
        assert row is not None
        count = db.execute(
            select(func.count()).where(JudgementRow.case_id == killed.case_id)
        ).scalar_one()
        assert (row.state, row.version, count) == snapshot

        # The audit chain holds, with consecutive sequence numbers despite the contention:
        # 2 imports, the killed claim, and a claim and a judgement for every case held.
        check = audit_store.verify_log(db)
        assert check.ok, check.problem
        expected = len(BATCHES) + 1 + 2 * len(held)
        assert check.entries == expected
        head = audit_store.stored_head(db)
        assert head is not None and head[0] == expected - 1
        seqs = list(db.execute(select(AuditRow.seq).order_by(AuditRow.seq)).scalars())
        assert seqs == list(range(expected))
        actions = Counter(
            (action, target)
            for action, target in db.execute(select(AuditRow.action, AuditRow.target))
        )
        for case_id, claims in per_case.items():
            claims_here = len(claims) + (case_id == killed.case_id)
            assert actions[("case.claim", f"case:{case_id}")] == claims_here, case_id
            assert actions[("case.judge", f"case:{case_id}")] == len(claims), case_id
    timings["checks"] = time.monotonic() - clock
    print(f"most busy at once={busy} most holding at once={holding} "
          f"idle polls={sum(c.idle_polls for c in claimers)}")  # fmt: skip

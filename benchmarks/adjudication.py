"""Review-service claim-and-decide latency: PostgreSQL against the embedded SQLite default.

The real service (``dedup.adjudication.service.create_app``) runs under uvicorn in a child
process on a free loopback port, once per backend; the load generator is this process: one
asyncio task and one ``httpx.AsyncClient`` (one keep-alive connection) per adjudicator
account, each logged in with its own password and TOTP code before the clock starts (argon2
at login is not timed). Each adjudicator then loops ``POST /api/v1/cases/claim`` then
``POST /api/v1/cases/{id}/judgement`` ("not_duplicate", so each case needs one review) until
the queue answers 204 or the time bound passes; ``--think-seconds`` adds the time a person
looks at the case between the two (not counted in the latencies). Accounts and cases are
written beforehand (``accounts.create_user``, and ``operations.import_candidates`` as the
import route does).

Both backends get the same cases, accounts, settings and load in one run. The PostgreSQL
server is a throwaway one (``scripts/postgres``, fsync off); SQLite runs in WAL mode on a
temporary file, as ``dedup serve`` configures it. The service keeps its default settings
except the login throttle (50 logins from one address would be throttled), and runs as one
uvicorn worker process unless ``--workers`` says more. Besides the latency table the run
prints, per backend, how many cores the service, PostgreSQL, the load generator and the
whole machine kept busy while measured, and the mean claim transaction from ``/metrics``.

    .venv/bin/python benchmarks/adjudication.py --cases 2000 --adjudicators 50 --max-seconds 120
    .venv/bin/python benchmarks/adjudication.py --think-seconds 5
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx
import numpy as np
from fastapi import FastAPI
from sqlalchemy import Engine, create_engine, func, select, text

from dedup.adjudication import accounts, audit_store, database, operations
from dedup.adjudication.access import Actor, Role
from dedup.adjudication.cases import CaseState
from dedup.adjudication.context import Context
from dedup.adjudication.credentials import totp_now
from dedup.adjudication.payloads import BatchImport
from dedup.adjudication.service import create_app
from dedup.adjudication.tables import CaseRow
from dedup.adjudication.web.guards import SESSION_COOKIE
from dedup.demo.review import synthetic_review_batch
from dedup.settings import AdjudicationSettings

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "correct horse battery staple"
URL_ENV = "DEDUP_BENCH_DATABASE_URL"
HOST = "127.0.0.1"
BACKENDS = ("sqlite", "postgresql")
OPERATIONS = ("claim", "judgement", "claim+decide")


def settings() -> AdjudicationSettings:
    """The defaults, except that 50 logins from one address in a minute are not throttled."""
    return AdjudicationSettings(logins_per_client_per_minute=10_000)


# ---------------------------------------------------------------- the server (child process)


def served_app() -> FastAPI:
    """The app on the database named in the environment (uvicorn's factory, per worker)."""
    engine = database.connect(os.environ[URL_ENV])  # the pool `dedup serve` uses
    return create_app(settings(), engine)


def serve(url: str, port: int, workers: int) -> None:
    import uvicorn

    os.environ[URL_ENV] = url
    if workers == 1:
        uvicorn.run(served_app(), host=HOST, port=port, log_level="warning", proxy_headers=False)
    else:  # workers are separate processes: they import this module by name (sys.path[0])
        uvicorn.run(
            f"{Path(__file__).stem}:served_app",
            factory=True,
            host=HOST,
            port=port,
            workers=workers,
            log_level="warning",
            proxy_headers=False,
        )


@contextmanager
def server(url: str, workers: int, log: Path) -> Iterator[tuple[str, int]]:
    """The service in a child process; yields its base URL and process id."""
    port = free_port()
    command = [sys.executable, __file__, "--serve", url, "--port", str(port)]
    command += ["--workers", str(workers)]
    with log.open("wb") as sink:
        child = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT)
    base = f"http://{HOST}:{port}"
    try:
        give_up = time.monotonic() + 60
        while True:
            if child.poll() is not None:
                raise SystemExit(f"the service exited early:\n{log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > give_up:
                raise SystemExit(f"the service did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.1)
        try:
            yield base, child.pid
        except BaseException:
            time.sleep(0.5)  # uvicorn logs a failure after it has answered 500
            print(f"the service's log ends:\n{log.read_text()[-5000:]}", file=sys.stderr)
            raise
    finally:
        child.send_signal(signal.SIGTERM)
        try:
            child.wait(timeout=30)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


# ---------------------------------------------------------------- databases and their contents


@contextmanager
def postgres_server() -> Iterator[tuple[str, int | None]]:
    """A throwaway server (``scripts/postgres``, as the tests use): its admin URL and pid.

    Its folder is directly under /tmp, so the ``postgres`` account can reach it as root."""
    script = str(ROOT / "scripts" / "postgres")
    folder = Path(tempfile.mkdtemp(prefix="bench-pg-"))
    done = subprocess.run(
        [script, "start", str(folder), str(free_port())],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"PostgreSQL did not start: {done.stderr.strip()}")
    pid = None
    with suppress(OSError, ValueError, IndexError):
        pid = int((folder / "data" / "postmaster.pid").read_text().split()[0])
    try:
        yield done.stdout.strip().splitlines()[-1], pid
    finally:
        subprocess.run([script, "stop", str(folder)], capture_output=True, check=False)
        shutil.rmtree(folder, ignore_errors=True)


def fresh_postgres_database(admin_url: str) -> str:
    name = f"bench_{uuid.uuid4().hex[:12]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return admin_url.rsplit("/", 1)[0] + f"/{name}"


def batch(cases: int, candidates: int) -> BatchImport:
    """``cases`` probes, each with its own ``candidates`` gallery candidates and a chip each."""
    return BatchImport.model_validate(synthetic_review_batch(cases, candidates))


def fill(engine: Engine, payload: BatchImport, adjudicators: int) -> dict[str, str]:
    """Accounts written directly, and the cases imported as the import route does; the
    adjudicators' TOTP secrets by username."""
    now = datetime.now(UTC)
    secrets: dict[str, str] = {}
    sessions = database.sessions(engine)
    with sessions() as db, db.begin():
        for n in range(adjudicators):
            username = f"adj{n:03d}"
            secrets[username] = accounts.create_user(
                db, username, PASSWORD, frozenset({Role.ADJUDICATOR}), now
            )
    # The import's audit entry also starts the chain before the logins race: on PostgreSQL,
    # concurrent first appends to an empty chain collide on its head row.
    operator = Actor("bench", frozenset({Role.OPERATOR}), HOST)
    operations.import_candidates(Context(sessions, settings()), operator, "bench", payload)
    return secrets


@dataclass(frozen=True)
class Check:
    decided: int
    open: int
    audit_entries: int
    audit_ok: bool


def check(engine: Engine) -> Check:
    """What the database says afterwards: decided cases, and whether the audit chain holds."""
    with database.sessions(engine)() as db:
        query = select(CaseRow.state, func.count()).group_by(CaseRow.state)
        states: dict[str, int] = {state: count for state, count in db.execute(query)}
        chain = audit_store.verify_log(db)
    return Check(
        states.get(CaseState.DECIDED_NOT_DUPLICATE.value, 0),
        sum(n for s, n in states.items() if s != CaseState.DECIDED_NOT_DUPLICATE.value),
        chain.entries,
        chain.ok,
    )


# ---------------------------------------------------------------- the load (this process)


@dataclass
class Samples:
    claim: list[float] = field(default_factory=list)
    judgement: list[float] = field(default_factory=list)
    pair: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    decisions: int = 0


async def login(client: httpx.AsyncClient, username: str, secret: str) -> None:
    body = {"username": username, "password": PASSWORD, "totp": totp_now(secret, datetime.now(UTC))}
    answer = await client.post("/api/v1/login", json=body)
    if answer.status_code != 200:
        raise SystemExit(f"login of {username} refused: {answer.status_code} {answer.text}")
    # The cookie is Secure, so httpx keeps it off plain http: send it by hand, as a browser
    # does on http://localhost. The service's settings stay the production defaults.
    session = next(
        v.split(";", 1)[0].split("=", 1)[1]
        for v in answer.headers.get_list("set-cookie")
        if v.startswith(f"{SESSION_COOKIE}=")
    )
    client.cookies.clear()
    client.headers["Cookie"] = f"{SESSION_COOKIE}={session}"
    client.headers["X-CSRF-Token"] = answer.json()["csrf_token"]


async def adjudicate(
    client: httpx.AsyncClient, deadline: float, out: Samples, think: float, rng: random.Random
) -> None:
    """Claim and decide until the queue is empty or the time is up; with ``think`` > 0, look
    at each case for 0.5 to 1.5 times ``think`` seconds between claim and decision (not
    counted in the latencies)."""
    while time.perf_counter() < deadline:
        started = time.perf_counter()
        claimed = await client.post("/api/v1/cases/claim")
        got = time.perf_counter()
        if claimed.status_code == 204:
            return
        if claimed.status_code != 200:
            out.errors[f"claim {claimed.status_code}"] += 1
            continue
        out.claim.append(got - started)
        case = claimed.json()
        if think > 0:
            await asyncio.sleep(think * rng.uniform(0.5, 1.5))
        body = {"lease_token": case["lease_token"], "outcome": "not_duplicate"}
        sent = time.perf_counter()
        judged = await client.post(f"/api/v1/cases/{case['case_id']}/judgement", json=body)
        done = time.perf_counter()
        if judged.status_code != 200:
            out.errors[f"judgement {judged.status_code}"] += 1
            continue
        out.judgement.append(done - sent)
        out.pair.append((got - started) + (done - sent))
        out.decisions += 1


@dataclass(frozen=True)
class Run:
    backend: str
    seconds: float
    samples: Samples
    timed_out: bool
    server_claim_ms: float | None  # mean claim transaction inside the service, from /metrics
    check: Check
    cores: dict[str, float]  # cores busy during the measured phase, by process (Linux only)


async def load(
    base: str,
    secrets: dict[str, str],
    max_seconds: float,
    name: str,
    processes: dict[str, int],
    think: float = 0.0,
) -> tuple[Samples, float, dict[str, float]]:
    clients = {u: httpx.AsyncClient(base_url=base, timeout=120) for u in secrets}
    try:
        started = time.perf_counter()
        await asyncio.gather(*(login(c, u, secrets[u]) for u, c in clients.items()))
        print(f"{name}: {len(clients)} logins {time.perf_counter() - started:.1f} s", flush=True)
        out = Samples()
        cpu_before = cpu_seconds(processes)
        started = time.perf_counter()
        deadline = started + max_seconds
        await asyncio.gather(
            *(
                adjudicate(c, deadline, out, think, random.Random(i))
                for i, c in enumerate(clients.values())
            )
        )
        seconds = time.perf_counter() - started
        cpu_after = cpu_seconds(processes)
        cores = {k: (cpu_after[k] - v) / seconds for k, v in cpu_before.items() if k in cpu_after}
        return out, seconds, cores
    finally:
        await asyncio.gather(*(c.aclose() for c in clients.values()))


def cpu_seconds(processes: dict[str, int]) -> dict[str, float]:
    """CPU seconds so far: each named process tree, this process, and the whole machine."""
    out: dict[str, float] = {}
    ticks = os.sysconf("SC_CLK_TCK")
    with suppress(OSError, ValueError):
        stats: dict[int, list[str]] = {}
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                with suppress(OSError):
                    raw = entry.joinpath("stat").read_text()
                    stats[int(entry.name)] = raw[raw.rindex(")") + 2 :].split()
        children: dict[int, list[int]] = {}
        for pid, fields in stats.items():
            children.setdefault(int(fields[1]), []).append(pid)
        for name, root in processes.items():
            tree, total = [root], 0
            while tree:  # the process, its live descendants, and the children they reaped
                pid = tree.pop()
                tree += children.get(pid, [])
                if pid in stats:
                    total += sum(int(f) for f in stats[pid][11:15])  # utime stime cutime cstime
            out[name] = total / ticks
    out["load generator"] = time.process_time()
    with suppress(OSError, ValueError):
        machine = [int(f) for f in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
        out["whole machine"] = (sum(machine) - machine[3] - machine[4]) / ticks  # not idle, iowait
    return out


def server_claim_ms(base: str) -> float | None:
    metrics = httpx.get(f"{base}/metrics", timeout=30).text
    found = {
        m.group(1): float(m.group(2))
        for m in re.finditer(r"^dedup_review_claim_seconds_(sum|count) (\S+)$", metrics, re.M)
    }
    if not found.get("count"):
        return None
    return 1000 * found["sum"] / found["count"]


def run_backend(
    backend: str,
    url: str,
    args: argparse.Namespace,
    payload: BatchImport,
    folder: Path,
    postmaster: int | None = None,
) -> Run:
    started = time.perf_counter()
    engine = database.connect(url)
    database.migrate(engine)
    secrets = fill(engine, payload, args.adjudicators)
    print(f"{backend}: schema, accounts, cases {time.perf_counter() - started:.1f} s", flush=True)
    with server(url, args.workers, folder / f"{backend}-server.log") as (base, pid):
        print(f"{backend}: service pid {pid} on {base}", flush=True)
        processes = {"service": pid} | ({"PostgreSQL": postmaster} if postmaster else {})
        samples, seconds, cores = asyncio.run(
            load(base, secrets, args.max_seconds, backend, processes, args.think_seconds)
        )
        print(f"{backend}: {samples.decisions} decisions {seconds:.1f} s", flush=True)
        claim_ms = server_claim_ms(base) if args.workers == 1 else None
    done = check(engine)
    engine.dispose()
    timed_out = seconds >= args.max_seconds and done.open > 0
    return Run(backend, seconds, samples, timed_out, claim_ms, done, cores)


# ---------------------------------------------------------------- the report


def percentiles_ms(values: list[float]) -> tuple[float, float, float]:
    if not values:
        return (float("nan"),) * 3
    p50, p95, p99 = np.percentile(np.asarray(values), [50, 95, 99]) * 1000
    return float(p50), float(p95), float(p99)


def report(runs: dict[str, Run], args: argparse.Namespace) -> None:
    cpu = "unknown CPU"
    with suppress(OSError, StopIteration):
        cpu = next(
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        )
    print(
        f"\nmachine: {platform.machine()}, {os.cpu_count()} cores ({cpu}), "
        f"Python {platform.python_version()}"
    )
    workers = "1 worker process" if args.workers == 1 else f"{args.workers} worker processes"
    print(
        f"service: uvicorn with {workers}, on {HOST}, plain HTTP; "
        f"load: {args.adjudicators} adjudicators (asyncio + httpx, one connection each) in "
        "another process"
    )
    print(
        f"{args.cases} cases of {args.candidates} candidates per backend, "
        f"bound {args.max_seconds:.0f} s per backend; think time {args.think_seconds:g} s; "
        "latency in ms, login and think time not included\n"
    )
    print(
        f"{'backend':<11}{'operation':<14}{'count':>7}{'seconds':>9}{'decisions/s':>13}"
        f"{'p50':>9}{'p95':>9}{'p99':>9}"
    )
    rates: dict[str, float] = {}
    figures: dict[tuple[str, str], tuple[float, float, float]] = {}
    for name, run in runs.items():
        s = run.samples
        rates[name] = s.decisions / run.seconds if run.seconds else 0.0
        for operation, values in zip(OPERATIONS, (s.claim, s.judgement, s.pair), strict=True):
            figures[name, operation] = percentiles_ms(values)
            p50, p95, p99 = figures[name, operation]
            print(
                f"{name:<11}{operation:<14}{len(values):>7}{run.seconds:>9.2f}"
                f"{rates[name]:>13.1f}{p50:>9.1f}{p95:>9.1f}{p99:>9.1f}"
            )
    if set(BACKENDS) <= set(runs):
        pg, lite = "postgresql", "sqlite"
        if rates[lite]:
            print(f"{'pg/sqlite':<11}{'decisions/s':<14}{'':>16}{rates[pg] / rates[lite]:>12.2f}x")
        for operation in OPERATIONS:
            pairs = zip(figures[pg, operation], figures[lite, operation], strict=True)
            ratios = "".join(f"{a / b:>8.2f}x" for a, b in pairs)
            print(f"{'pg/sqlite':<11}{operation:<14}{'':>29}{ratios}")
    print()
    for name, run in runs.items():
        c = run.check
        notes = [
            f"{c.decided} decided in the database ({run.samples.decisions} by the clients), "
            f"{c.open} not decided",
            f"audit chain {'holds' if c.audit_ok else 'BROKEN'} ({c.audit_entries} entries)",
        ]
        if run.cores:
            busy = ", ".join(f"{k} {v:.2f}" for k, v in run.cores.items())
            notes.append(f"cores busy while measured: {busy} (of {os.cpu_count()})")
        if run.server_claim_ms is not None:
            notes.append(f"claim transaction inside the service: mean {run.server_claim_ms:.1f} ms")
        if run.samples.errors:
            notes.append("errors: " + ", ".join(f"{k} x{n}" for k, n in run.samples.errors.items()))
        if run.timed_out:
            notes.append(f"stopped by the {args.max_seconds:.0f} s bound")
        print(f"{name}: " + "; ".join(notes))


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--cases", type=int, default=2000)
    parser.add_argument("--candidates", type=int, default=2, help="candidates per case")
    parser.add_argument("--adjudicators", type=int, default=50)
    parser.add_argument("--max-seconds", type=float, default=120, help="bound per backend")
    parser.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")
    parser.add_argument(
        "--think-seconds",
        type=float,
        default=0.0,
        help="time an adjudicator looks at a case before deciding (0: back to back)",
    )
    parser.add_argument("--backends", nargs="+", choices=BACKENDS, default=list(BACKENDS))
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.port, args.workers)
        return

    payload = batch(args.cases, args.candidates)
    runs: dict[str, Run] = {}
    folder = Path(tempfile.mkdtemp(prefix="bench-adjudication-"))
    try:
        for backend in args.backends:
            if backend == "sqlite":
                url = f"sqlite:///{folder / 'review.sqlite'}"
                runs[backend] = run_backend(backend, url, args, payload, folder)
            else:
                with postgres_server() as (admin, postmaster):
                    url = fresh_postgres_database(admin)
                    runs[backend] = run_backend(backend, url, args, payload, folder, postmaster)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    report(runs, args)


if __name__ == "__main__":
    main()

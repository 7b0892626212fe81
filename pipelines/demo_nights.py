"""``dedup demo``: two nights on the public portraits, decided through the API and applied.

The first night seeds the gallery with one photo of each person and shows every way a row
is rejected; the second brings the other photos and re-captures of everyone, which the search
catches against the gallery and within the batch. Two demo adjudicators then decide every
case through the review service's JSON API (a duplicate under four eyes), as the demo's
answer sheet says who is in each photo; the decisions are applied, and the outcomes and
identities printed. Running the demo again finds every step done and changes nothing.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from dedup.demo.batch import DemoBatch, build_demo_nights, read_demo_batch
from dedup.settings import Settings
from pipelines.lake.batch_run import BatchRun
from pipelines.review_client import ReviewClient, Verdict, decide_queue, served

NIGHTS = ("demo-0001", "demo-0002")
ADJUDICATORS = ("adjudicator-1", "adjudicator-2")


def demo_batches(folder: Path, fetch: Callable[[], Path]) -> tuple[DemoBatch, ...]:
    """The two nights' batches, built once (a re-run reads the same files)."""
    if all((folder / night / "expected.json").is_file() for night in NIGHTS):
        return tuple(read_demo_batch(folder / night) for night in NIGHTS)
    return build_demo_nights(folder, fetch())


def truth(batches: tuple[DemoBatch, ...]) -> dict[str, str]:
    """Who is in each staged photo of the demo, by enrollment id."""
    return {
        row.enrollment_id: row.person
        for batch in batches
        for row in batch.expected
        if row.expected_status == "staged" and row.person is not None
    }


def verdict_by(people: dict[str, str]) -> Callable[[dict[str, Any]], Verdict]:
    """An adjudicator who knows who is in each photo: the case's probe (and the group it
    decides) is a duplicate of the best-ranked candidate of the same person, one already
    enrolled (``gallery``) before another probe of the batch; none means not a duplicate."""

    def verdict(case: dict[str, Any]) -> Verdict:
        person = people.get(case["probe_id"])
        same = [c for c in case["candidates"] if person and people.get(c["candidate_id"]) == person]
        same.sort(key=lambda c: c["source"] != "gallery")  # stable: rank order kept within
        return ("duplicate", same[0]["candidate_id"]) if same else ("not_duplicate", None)

    return verdict


def decide_demo_queue(settings: Settings, workdir: Path, people: dict[str, str]) -> dict[str, int]:
    """The two demo adjudicators decide every open case through the API."""
    from dedup.adjudication import operations
    from dedup.adjudication.context import opened

    with opened(settings) as context:
        depth = operations.queue_depth(context).by_state
    if not depth.get("open") and not depth.get("awaiting_second_review"):
        return {}  # a re-run: everything was decided (and a code is good for one login)
    accounts = json.loads((workdir / "review-accounts.json").read_text(encoding="utf-8"))
    with served(settings) as url:
        first, second = (
            ReviewClient.login(url, name, accounts[name]["password"], accounts[name]["totp_secret"])
            for name in ADJUDICATORS
        )
        return decide_queue(first, second, verdict_by(people))


def outcome_tables(settings: Settings) -> list[Table]:
    """The outcomes and identities of the demo's enrollments, as tables for the console."""
    from pipelines.lake.delta_rs import DeltaRsTables
    from pipelines.lake.location import Lake

    lake = DeltaRsTables(Lake.of(settings))
    outcomes = lake.read("outcomes", ["enrollment_id", "batch_id", "status", "duplicate_of",
                                      "identity_id"])  # fmt: skip
    rows = [] if outcomes is None else sorted(
        outcomes.to_pylist(), key=lambda r: (r["batch_id"], r["enrollment_id"])
    )  # fmt: skip
    shown = Table(title="outcomes", title_justify="left")
    for column in ("enrollment", "batch", "status", "duplicate of", "identity"):
        shown.add_column(column)
    for row in rows:
        shown.add_row(row["enrollment_id"], row["batch_id"], row["status"],
                      row["duplicate_of"] or "", row["identity_id"] or "")  # fmt: skip
    members = Counter(r["identity_id"] for r in rows if r["identity_id"])
    people = Table(title="identities", title_justify="left")
    people.add_column("identity")
    people.add_column("enrollments", justify="right")
    for identity, count in sorted(members.items(), key=lambda item: (-item[1], item[0])):
        people.add_row(identity, str(count))
    return [shown, people]


def run_demo_nights(
    workdir: Path,
    settings: Settings,
    console: Console,
    fetch: Callable[[], Path],
    watcher: Any,
) -> None:
    """Both nights, the decisions through the API, apply, and the outcomes printed."""
    from pipelines.apply import run_apply
    from pipelines.cli.batch import check_answer_sheet, print_night
    from pipelines.nightly import Night, run_night

    batches = demo_batches(workdir / "batches", fetch)
    gallery = workdir / "gallery"
    for night, batch in zip(NIGHTS, batches, strict=True):
        rows = f": {len(batch.expected)} rows at {batch.manifest}"
        console.print(Text.assemble((f"night {night}", "bold"), rows))
        run = BatchRun(night, settings)
        print_night(run_night(run, Night(batch.manifest, gallery, ray=False), watcher))
        check_answer_sheet(settings.lake, night, batch.expected_reasons())
    from dedup.demo.review import demo_accounts

    accounts = demo_accounts(settings, workdir)
    decided = decide_demo_queue(settings, workdir, truth(batches))
    if decided:
        tally = ", ".join(f"{n} left {state}" for state, n in sorted(decided.items()))
        console.print(f"the demo adjudicators judged through the API: {tally}")
    for line in run_apply(settings, NIGHTS[-1]).summary():
        console.print(line)
    for table in outcome_tables(settings):
        console.print(table)
    console.print(accounts)

"""Erasure, end to end: after `dedup erase` (or the supervisor's erasure through the API) no
file of the lake, its history, its work folders, the gallery or the review database holds the
person's template or chip, and the rows that stay say only that the enrollment was erased.

The lake is the match tests' (two demo batches staged, embedded and matched, the second
enqueued for review), with the links, identities and outcomes the apply job would have
written for the person, built once per module and copied for each test."""

from __future__ import annotations

import dataclasses
import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from typer.testing import CliRunner

from dedup.contracts.schemas import IDENTITIES, LINKS, OUTCOME_EVENTS, OUTCOMES
from dedup.gallery.engines import ExactSweepEngine
from dedup.gallery.reader import open_gallery
from dedup.settings import Settings
from pipelines.cli import app
from pipelines.lake.batch_run import BatchRun
from pipelines.lake.delta_rs import DeltaRsTables
from tests.night_support import FIRST, SECOND, copy_lake, match

pytestmark = pytest.mark.usefixtures("one_faiss_thread")
T0 = pa.scalar(0, pa.timestamp("us", tz="UTC")).as_py()


@dataclasses.dataclass(frozen=True)
class Person:
    """The enrollment erased (a probe of the second batch with a case, and a candidate in
    others' cases), its earlier capture (``founder``) and a later one (``later``)."""

    erased: str
    founder: str
    later: str
    template: bytes  # float32, little-endian
    chip: bytes
    display: list[str]


@pytest.fixture(scope="module")
def matched(embedded_lake: Settings, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """(settings, person) of a matched, enqueued lake with the person's identity in it."""
    from pipelines.review_feed import enqueue_batch

    settings = copy_lake(embedded_lake, tmp_path_factory.mktemp("erasure"))
    match(settings, FIRST, ray=False)
    match(settings, SECOND, ray=False)
    enqueue_batch(BatchRun(SECOND, settings))
    tables = DeltaRsTables(settings.lake)
    rows = tables.read("candidates", ["batch_id", "probe_id", "candidate_id", "source"])
    assert rows is not None
    found = rows.to_pylist()
    gallery_hits = {(r["probe_id"], r["candidate_id"]) for r in found if r["source"] == "gallery"}
    batch_hits = {(r["probe_id"], r["candidate_id"]) for r in found if r["source"] == "batch"}
    templates = tables.read("templates", ["enrollment_id", "vector"])
    faces = tables.read("faces", ["enrollment_id", "chip_png"])
    enrollments = tables.read("enrollments", ["enrollment_id", "given_name", "family_name"])
    assert templates is not None and faces is not None and enrollments is not None
    # A recapture of the second batch (its chip and template are its own: an original photo
    # of the second batch is the first batch's one again), found in the gallery (its first
    # capture) and in the batch (its original).
    chips = [r["chip_png"] for r in faces.to_pylist()]
    own = {r["enrollment_id"] for r in faces.to_pylist() if chips.count(r["chip_png"]) == 1}
    erased, founder = sorted(
        (p, c) for p, c in gallery_hits if p in own and any(p in pair for pair in batch_hits)
    )[0]
    later = sorted(c if p == erased else p for p, c in batch_hits if erased in (p, c))[0]
    vector = next(r["vector"] for r in templates.to_pylist() if r["enrollment_id"] == erased)
    chip = next(r["chip_png"] for r in faces.to_pylist() if r["enrollment_id"] == erased)
    names = next(r for r in enrollments.to_pylist() if r["enrollment_id"] == erased)
    person = Person(
        erased,
        founder,
        later,
        np.asarray(vector, "<f4").tobytes(),
        chip,
        [str(names[k]) for k in ("given_name", "family_name") if names[k]],
    )
    _decided_identity(tables, person)
    return settings, person


def _decided_identity(tables: DeltaRsTables, person: Person) -> None:
    """What apply would write once both captures were decided duplicates of the founder."""
    x, first, later = person.erased, person.founder, person.later
    links = [("case:a@0", x, first), ("case:b@0", later, x)]
    tables.insert_new("links", pa.Table.from_pylist([
        {"link_id": i, "probe_id": p, "duplicate_of": d, "cause": i, "made_at": T0}
        for i, p, d in links], LINKS))  # fmt: skip
    tables.insert_new("identities", pa.Table.from_pylist([
        {"enrollment_id": e, "identity_id": first, "since": T0} for e in (x, first, later)
    ], IDENTITIES))  # fmt: skip
    outcomes = [
        {**dict.fromkeys(OUTCOMES.names), "enrollment_id": e, "batch_id": b, "status": s,
         "duplicate_of": d, "identity_id": first, "case_id": "a", "decided_by": ["ann", "bob"],
         "decided_at": T0, "changed_at": T0}
        for e, b, s, d in ((first, FIRST, "unique", None), (x, SECOND, "duplicate", first),
                           (later, SECOND, "duplicate", first))
    ]  # fmt: skip
    tables.insert_new("outcomes", pa.Table.from_pylist(outcomes, OUTCOMES))
    events = [{**o, "event_id": f"{o['enrollment_id']}@{s}", "status": s}
              for o in outcomes for s in ("pending_review", o["status"])]  # fmt: skip
    tables.insert_new("outcome_events", pa.Table.from_pylist(events, OUTCOME_EVENTS))


@pytest.fixture
def lake(matched: Any, tmp_path: Path) -> Iterator[tuple[Settings, Person]]:
    settings, person = matched
    root = Path(settings.lake).parent
    shutil.copytree(root / "lake", tmp_path / "lake")
    shutil.copytree(root / "gallery", tmp_path / "gallery")
    yield (
        settings.model_copy(
            update={"lake": str(tmp_path / "lake"), "gallery": str(tmp_path / "gallery")}
        ),
        person,
    )


def needles(person: Person) -> dict[str, bytes]:
    half = np.frombuffer(person.template, "<f4").astype("<f2").tobytes()
    return {
        "template": person.template,
        "template slice": person.template[128:192],
        "template fp16": half,
        "chip": person.chip,
        "chip slice": person.chip[len(person.chip) // 2 : len(person.chip) // 2 + 64],
    }


def holding(roots: list[Path], person: Person) -> list[str]:
    """Every file under the roots (recursively, hidden ones too) holding a needle."""
    found = []
    for root in roots:
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            data = path.read_bytes()
            found += [
                f"{path.relative_to(root)}: {n}" for n, b in needles(person).items() if b in data
            ]
    return found


def erase_cli(settings: Settings, enrollment_id: str, *extra: str) -> Any:
    return CliRunner().invoke(
        app,
        ["erase", "--enrollment-id", enrollment_id, "--reason", "court order 17/2026",
         "--lake", settings.lake, "--gallery", settings.gallery, *extra],
    )  # fmt: skip


def review_rows(settings: Settings) -> dict[str, list[tuple[Any, ...]]]:
    path = Path(settings.lake) / "adjudication.sqlite"
    with sqlite3.connect(path) as db:
        names = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        return {name: list(db.execute(f'SELECT * FROM "{name}"')) for name in names}


def naming(rows: dict[str, list[tuple[Any, ...]]], texts: list[str]) -> list[str]:
    return [
        f"{table}: {row}"
        for table, listed in rows.items()
        for row in listed
        if any(t in str(cell) for cell in row for t in texts)
    ]


def check_erased(settings: Settings, person: Person) -> None:
    x = person.erased
    lake, gallery = Path(settings.lake), Path(settings.gallery)
    # (a) and (b): no file holds the template or the chip, in any version or work folder
    assert holding([lake, gallery], person) == []
    # (b) no row of the review database names the person, but the audit log (which records
    # the erasure, and earlier views of the person's images, by enrollment id)
    rows = review_rows(settings)
    audit = rows.pop("audit_log")
    assert naming(rows, [x]) == []
    # (the person's display fields stay with their other captures, which are not erased)
    assert naming({"audit_log": audit}, person.display) == []
    erasure = [r for r in audit if r[4] == "enrollment.erase"]
    # every erasure request is audited, the second one (nothing left) too
    assert erasure and all(r[5] == f"enrollment:{x}" for r in erasure)
    assert all("court order 17/2026" in r[8] for r in erasure)
    # (c) the template is not among the top 100 of its own search
    probe = np.frombuffer(person.template, "<f4").reshape(1, -1)
    searched = open_gallery(gallery)
    _, ids = ExactSweepEngine().search(searched, probe, 100)
    assert x not in set(searched.enrollment_ids(ids[0][ids[0] >= 0]).tolist())
    assert x not in searched.ids_table()["enrollment_id"].to_pylist()
    # (d) what stays says only that the enrollment was erased
    tables = DeltaRsTables(settings.lake)
    [row] = [r for r in _all(tables, "enrollments") if r["enrollment_id"] == x]
    kept = {k for k, v in row.items() if v is not None}
    assert kept == {"batch_id", "row_index", "enrollment_id", "status", "staged_at"}
    assert row["status"] == "erased"
    [outcome] = [r for r in _all(tables, "outcomes") if r["enrollment_id"] == x]
    assert {k for k, v in outcome.items() if v is not None} == {
        "enrollment_id", "batch_id", "status", "changed_at"}  # fmt: skip
    assert outcome["status"] == "erased"
    events = [r for r in _all(tables, "outcome_events") if r["enrollment_id"] == x]
    assert [e["status"] for e in events] == ["erased"]
    for name, column in [("faces", "enrollment_id"), ("templates", "enrollment_id"),
                         ("candidates", "probe_id"), ("candidates", "candidate_id"),
                         ("identities", "enrollment_id"), ("links", "probe_id"),
                         ("links", "duplicate_of")]:  # fmt: skip
        assert [r for r in _all(tables, name) if r[column] == x] == [], name
    # the person's other captures stay one identity, under the founder's id
    identities = {r["enrollment_id"]: r["identity_id"] for r in _all(tables, "identities")}
    assert identities[person.founder] == identities[person.later] == person.founder
    bridges = [r for r in _all(tables, "links") if r["cause"] == f"erasure:{x}"]
    assert [(b["probe_id"], b["duplicate_of"]) for b in bridges] == [(person.later, person.founder)]


def _all(tables: DeltaRsTables, name: str) -> list[dict[str, Any]]:
    table = tables.open(name)
    return [] if table is None else table.to_pyarrow_table().to_pylist()


def test_before_an_erasure_the_files_do_hold_the_person(lake: tuple[Settings, Person]) -> None:
    # The scan finds what it looks for: the chip in faces and the review database, the
    # template in templates, the fp16 copy in the gallery.
    settings, person = lake
    found = holding([Path(settings.lake), Path(settings.gallery)], person)
    assert any(f.startswith("faces/") and "chip slice" in f for f in found)
    assert any(f.startswith("adjudication.sqlite") and "chip" in f for f in found)
    assert any(f.startswith("templates/") and "template slice" in f for f in found)
    assert any(f.startswith("segments/") and "template fp16" in f for f in found)
    assert any(f.startswith("_work/stage/") and "chip slice" in f for f in found)


def test_dedup_erase_removes_the_person_everywhere(lake: tuple[Settings, Person]) -> None:
    settings, person = lake
    done = erase_cli(settings, person.erased)
    assert done.exit_code == 0, done.output
    assert f"erased {person.erased}" in done.output and "1 faces rows" in done.output
    check_erased(settings, person)
    again = erase_cli(settings, person.erased)  # harmless, and says nothing was left
    assert again.exit_code == 0, again.output
    assert "nothing left" in again.output
    check_erased(settings, person)


def test_without_vacuum_the_old_versions_keep_the_chip(
    lake: tuple[Settings, Person], monkeypatch: pytest.MonkeyPatch
) -> None:
    settings, person = lake
    monkeypatch.setattr(DeltaRsTables, "vacuum", lambda self, name: [])
    assert erase_cli(settings, person.erased).exit_code == 0
    with pytest.raises(AssertionError):
        check_erased(settings, person)
    assert any(f.startswith("faces/") for f in holding([Path(settings.lake)], person))


def test_an_unknown_enrollment_is_a_clear_error(lake: tuple[Settings, Person]) -> None:
    settings, _ = lake
    done = erase_cli(settings, "nobody' OR '1'='1")
    assert done.exit_code == 2
    assert "no enrollment" in done.output


@pytest.mark.parametrize(
    "point",
    [
        "erasure.after_tombstone",
        "erasure.after_rows",
        "erasure.after_history",
        "erasure.before_queue",
    ],
)
def test_a_crash_part_way_is_finished_by_erasing_again(
    lake: tuple[Settings, Person], monkeypatch: pytest.MonkeyPatch, point: str
) -> None:
    settings, person = lake
    monkeypatch.setenv("DEDUP_CRASH_AT", point)
    crashed = erase_cli(settings, person.erased)
    assert crashed.exit_code == 2 and "crash injected" in crashed.output
    monkeypatch.delenv("DEDUP_CRASH_AT")
    done = erase_cli(settings, person.erased)
    assert done.exit_code == 0, done.output
    check_erased(settings, person)


def test_the_supervisors_erasure_through_the_api_does_the_same(
    lake: tuple[Settings, Person],
) -> None:
    from dedup.adjudication import database
    from dedup.adjudication.service import create_app
    from pipelines.erasure import LakeEraser
    from tests.review_support import review_world

    settings, person = lake
    engine = database.connect(settings.adjudication_database_url())
    world = review_world(engine)
    eraser = LakeEraser.from_settings(settings)
    wired = create_app(world.app.state.service.context.settings, engine, world.clock, eraser)
    world = dataclasses.replace(world, app=wired)
    sue = world.client("sue")
    refused = world.client("ann").post(
        f"/api/v1/erasures/{person.erased}", json={"reason": "court order 17/2026"}
    )
    assert refused.status_code == 403
    assert sue.post(f"/api/v1/erasures/{person.erased}", json={}).status_code == 422
    answer = sue.post(f"/api/v1/erasures/{person.erased}", json={"reason": "court order 17/2026"})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["subject_removed"] and body["records_removed"]["faces rows"] == 1
    engine.dispose()
    check_erased(settings, person)
    unknown = sue.post("/api/v1/erasures/nobody", json={"reason": "court order 17/2026"})
    assert unknown.status_code == 404


def test_restaging_the_batch_brings_nothing_of_the_person_back(
    lake: tuple[Settings, Person], spark: Any, match_batches: list[Any]
) -> None:
    # The operator re-submits the batch that held the erased person (or a later batch sends
    # the id again): the row is refused before its photo is read, and nothing comes back.
    from tests.support import stage

    settings, person = lake
    assert erase_cli(settings, person.erased).exit_code == 0
    report = stage(spark, settings, SECOND, match_batches[1].manifest)
    assert report.rejected_by_reason.get("already_enrolled", 0) >= 1
    check_erased(settings, person)
    [refused] = [
        r for r in _all(DeltaRsTables(settings.lake), "rejects")
        if r["enrollment_id"] == person.erased
    ]  # fmt: skip
    assert refused["detail"] == "enrollment_id was erased on request"

"""The match job on the lake: two staged and embedded demo batches, the first seeding the gallery.

The demo portraits hold two people, each in several photos, so the expected candidates follow
from the answer sheet. The first batch is cut down to one photo of each person: both are
unique and seed the gallery. In the second, full batch every two photos of one person are a
``batch`` pair, and every photo is a ``gallery`` candidate of its person's entry.
"""

from __future__ import annotations

import dataclasses
import itertools
import shutil
from pathlib import Path
from typing import Any

import pytest

from dedup.crash_points import CRASH_AT_ENV
from dedup.demo.batch import DemoBatch, ExpectedRow, build_demo_batch
from dedup.errors import InjectedCrash, LakeError
from dedup.gallery.reader import open_gallery
from dedup.models.dlib_onnx import ensure_dlib_export
from dedup.settings import Settings
from pipelines.lake.batch_run import BatchRun
from tests.conftest import make_settings
from tests.support import stage

pytestmark = [pytest.mark.spark, pytest.mark.slow]

FIRST, SECOND = "match-1", "match-2"


def staged_people(batch: DemoBatch) -> dict[str, str]:
    return {
        r.enrollment_id: r.person
        for r in batch.expected
        if r.expected_status == "staged" and r.person is not None
    }


def same_person_pairs(people: dict[str, str]) -> set[frozenset[str]]:
    return {
        frozenset((a, b))
        for a, b in itertools.combinations(sorted(people), 2)
        if people[a] == people[b]
    }


def one_photo_each(batch: DemoBatch) -> DemoBatch:
    """The batch cut down to its first staged photo of each person (a second manifest)."""
    kept: dict[str, ExpectedRow] = {}
    for row in batch.expected:
        if row.expected_status == "staged" and row.person is not None:
            kept.setdefault(row.person, row)
    ids = {row.enrollment_id for row in kept.values()}
    lines = batch.manifest.read_text(encoding="utf-8").splitlines()
    manifest = batch.manifest.with_name("one-each.csv")
    chosen = [line for line in lines[1:] if line.split(",", 1)[0] in ids]
    manifest.write_text("\n".join([lines[0], *chosen]) + "\n", encoding="utf-8")
    expected = tuple(
        dataclasses.replace(row, row_index=index) for index, row in enumerate(kept.values())
    )
    return DemoBatch(batch.folder, manifest, expected)


@pytest.fixture(scope="module")
def batches(tmp_path_factory: pytest.TempPathFactory, portraits: Path) -> list[DemoBatch]:
    folder = tmp_path_factory.mktemp("match-batches")
    first = build_demo_batch(folder / FIRST, portraits, recaptures=0, seed=31, hostile=False)
    second = build_demo_batch(folder / SECOND, portraits, recaptures=1, seed=32, hostile=False)
    return [one_photo_each(first), second]


@pytest.fixture(scope="module")
def embedded_lake(
    spark: Any, batches: list[DemoBatch], tmp_path_factory: pytest.TempPathFactory
) -> Settings:
    """A lake with both batches staged and embedded, and no match run yet (copied per test)."""
    from pipelines.ray.embed import run_embed

    root = tmp_path_factory.mktemp("match-lake")
    model = root / "dlib-resnet-v1.onnx"
    ensure_dlib_export(model)
    spec = {"dlib-resnet-v1": {**Settings().model_spec.model_dump(), "onnx": str(model)}}
    settings = make_settings(
        root / "lake", models=spec, embed={"batch_size": 8, "cpus_per_actor": 1}
    )
    for batch_id, batch in zip((FIRST, SECOND), batches, strict=True):
        stage(spark, settings, batch_id, batch.manifest)
        run_embed(BatchRun(batch_id, settings))
    return settings


@pytest.fixture
def lake(embedded_lake: Settings, tmp_path: Path) -> Settings:
    shutil.copytree(embedded_lake.lake, tmp_path / "lake")
    return embedded_lake.model_copy(
        update={"lake": str(tmp_path / "lake"), "gallery": str(tmp_path / "gallery")}
    )


def candidates(settings: Settings) -> list[dict[str, Any]]:
    from pipelines.lake.delta_rs import DeltaRsTables

    table = DeltaRsTables(settings.lake).open("candidates")
    rows = [] if table is None else table.to_pyarrow_table().to_pylist()
    return sorted(rows, key=lambda r: (r["batch_id"], r["probe_id"], r["candidate_id"]))


def match(settings: Settings, batch_id: str, **options: Any) -> Any:
    from pipelines.match import run_match

    return run_match(BatchRun(batch_id, settings), Path(settings.gallery), **options)


def test_the_first_batch_has_no_candidates_and_seeds_the_gallery(
    lake: Settings, batches: list[DemoBatch]
) -> None:
    people = staged_people(batches[0])
    report = match(lake, FIRST, ray=False)
    rows = candidates(lake)
    assert report.search is None and not report.reused  # no gallery yet: within the batch
    assert rows == [] and len(set(people.values())) == len(people) == 2
    assert report.unique == 2 and report.with_candidates == 0
    gallery = open_gallery(Path(lake.gallery))
    assert set(gallery.ids_table()["enrollment_id"].to_pylist()) == set(people)
    assert gallery.model_id == lake.model


def test_the_second_batch_finds_the_gallery_person_through_the_ray_shards(
    lake: Settings, batches: list[DemoBatch], tmp_path: Path
) -> None:
    match(lake, FIRST, ray=False)
    forced = lake.model_copy(
        update={
            "search": lake.search.model_copy(update={"engine": "ivfpq", "nprobe": 1}),
            "metrics": lake.metrics.model_copy(update={"textfile_dir": tmp_path / "metrics"}),
        }
    )
    report = match(forced, SECOND, ray=True)
    assert report.search is not None and report.search.engine == "ivfpq-ray"
    assert report.search.audit is not None
    exported = (tmp_path / "metrics" / f"dedup_match-{SECOND}.prom").read_text()
    assert f"dedup_search_candidate_recall {report.search.audit.recall}" in exported
    first, second = staged_people(batches[0]), staged_people(batches[1])
    in_gallery = set(open_gallery(Path(lake.gallery)).ids_table()["enrollment_id"].to_pylist())
    rows = [r for r in candidates(lake) if r["batch_id"] == SECOND]
    expected_gallery = {
        (probe, held)
        for probe, person in second.items()
        for held in in_gallery
        if first[held] == person
    }
    assert expected_gallery
    assert {(r["probe_id"], r["candidate_id"]) for r in rows if r["source"] == "gallery"} == (
        expected_gallery
    )
    batch_pairs = {
        frozenset((r["probe_id"], r["candidate_id"])) for r in rows if r["source"] == "batch"
    }
    assert batch_pairs == same_person_pairs(second)
    assert all(r["score"] >= lake.matching.review_threshold for r in rows)
    # Everyone in the second batch has a candidate, so nobody joined the gallery.
    assert report.unique == 0 and open_gallery(Path(lake.gallery)).size == len(in_gallery)


def test_running_a_batch_again_changes_nothing(lake: Settings) -> None:
    match(lake, FIRST, ray=False)
    match(lake, SECOND, ray=False)
    rows, version = candidates(lake), open_gallery(Path(lake.gallery)).manifest.version
    assert rows
    for batch_id in (FIRST, SECOND):
        again = match(lake, batch_id, ray=False)
        assert again.reused and again.search is None  # not searched again
    assert candidates(lake) == rows
    assert open_gallery(Path(lake.gallery)).manifest.version == version


@pytest.mark.parametrize("batch_id", [FIRST, SECOND])
@pytest.mark.parametrize("point", ["match.after_results", "match.after_candidates"])
def test_a_crash_then_a_rerun_leaves_what_an_uninterrupted_run_leaves(
    lake: Settings, tmp_path: Path, point: str, batch_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    clean = lake.model_copy(
        update={"lake": str(tmp_path / "clean-lake"), "gallery": str(tmp_path / "clean-gallery")}
    )
    shutil.copytree(lake.lake, clean.lake)
    for name in (FIRST, SECOND):
        match(clean, name, ray=False)

    for name in (FIRST, SECOND):
        if name == batch_id:
            monkeypatch.setenv(CRASH_AT_ENV, point)
            with pytest.raises(InjectedCrash):
                match(lake, name, ray=False)
            monkeypatch.delenv(CRASH_AT_ENV)
        match(lake, name, ray=False)

    def without_times(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{k: v for k, v in r.items() if k != "matched_at"} for r in rows]

    assert without_times(candidates(lake)) == without_times(candidates(clean)) != []
    ours, theirs = open_gallery(Path(lake.gallery)), open_gallery(Path(clean.gallery))
    assert ours.ids_table()["enrollment_id"].to_pylist() == (
        theirs.ids_table()["enrollment_id"].to_pylist()
    )
    assert ours.manifest.version == theirs.manifest.version == 1


def test_a_batch_that_was_not_embedded_is_refused(lake: Settings) -> None:
    with pytest.raises(LakeError, match="dedup stage"):
        match(lake, "never-staged", ray=False)


def test_enqueue_puts_the_candidates_and_what_adjudicators_see_into_the_queue(
    lake: Settings, batches: list[DemoBatch]
) -> None:
    import io

    from PIL import Image
    from sqlalchemy import select

    from dedup.adjudication import database
    from dedup.adjudication.tables import CaseCandidate, CaseRow, Subject, SubjectImage
    from pipelines.review_feed import enqueue_batch

    with pytest.raises(LakeError, match="no candidates table"):
        enqueue_batch(BatchRun(SECOND, lake))
    match(lake, FIRST, ray=False)
    match(lake, SECOND, ray=False)
    rows = [r for r in candidates(lake) if r["batch_id"] == SECOND]
    result = enqueue_batch(BatchRun(SECOND, lake), batches[1].folder)
    assert result.cases_created == len({r["probe_id"] for r in rows}) > 0
    assert enqueue_batch(BatchRun(SECOND, lake), batches[1].folder).already_imported

    engine = database.connect(lake.adjudication_database_url())
    with database.sessions(engine)() as db:
        queued = {
            (case.probe_id, c.candidate_id, round(c.score, 5), c.source)
            for case, c in db.execute(
                select(CaseRow, CaseCandidate).join(
                    CaseCandidate, CaseCandidate.case_id == CaseRow.case_id
                )
            )
        }
        images = {(i.enrollment_id, i.kind): i.data for i in db.scalars(select(SubjectImage))}
        probe = db.get(Subject, rows[0]["probe_id"])
        assert probe is not None and probe.center_id and '"given_name"' in probe.display
    engine.dispose()
    # Scores are cosines of float32 templates: rounding can lift a self-match a hair over 1.
    assert queued == {
        (r["probe_id"], r["candidate_id"], round(min(r["score"], 1.0), 5), r["source"])
        for r in rows
    }
    named = {r["probe_id"] for r in rows} | {r["candidate_id"] for r in rows}
    assert {e for e, kind in images if kind == "chip"} == named
    # This batch's own enrollments also show their photo, downscaled to a JPEG.
    own = {r["probe_id"] for r in rows}
    assert {e for e, kind in images if kind == "photo"} == own
    photo = Image.open(io.BytesIO(images[(rows[0]["probe_id"], "photo")]))
    assert photo.format == "JPEG" and max(photo.size) <= 640

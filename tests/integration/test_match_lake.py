"""The match job on the lake: two staged and embedded demo batches, the first seeding the gallery.

The demo portraits hold two people, each in several photos, so the expected candidates follow
from the answer sheet. The first batch is cut down to one photo of each person: both are
unique and seed the gallery. In the second, full batch every two photos of one person are a
``batch`` pair, and every photo is a ``gallery`` candidate of its person's entry. Every
enrollment joins the gallery the night it is searched, those with candidates too.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from dedup.demo.batch import DemoBatch, build_demo_batch
from dedup.errors import LakeError
from dedup.gallery.reader import open_gallery
from dedup.settings import Settings
from pipelines.lake.batch_run import BatchRun
from tests.night_support import (
    FIRST,
    SECOND,
    candidates,
    match,
    same_person_pairs,
    staged_people,
)
from tests.support import stage

pytestmark = [pytest.mark.spark, pytest.mark.slow]

THIRD = "match-3"  # staged in a test, never embedded


def test_the_first_batch_has_no_candidates_and_seeds_the_gallery(
    match_lake: Settings, match_batches: list[DemoBatch]
) -> None:
    people = staged_people(match_batches[0])
    report = match(match_lake, FIRST, ray=False)
    rows = candidates(match_lake)
    assert report.search is None and not report.reused  # no gallery yet: within the batch
    assert rows == [] and len(set(people.values())) == len(people) == 2
    assert report.unique == 2 and report.with_candidates == 0
    gallery = open_gallery(Path(match_lake.gallery))
    assert set(gallery.ids_table()["enrollment_id"].to_pylist()) == set(people)
    assert gallery.model_id == match_lake.model


def test_the_second_batch_finds_the_gallery_person_through_the_ray_shards(
    match_lake: Settings, match_batches: list[DemoBatch], tmp_path: Path
) -> None:
    match(match_lake, FIRST, ray=False)
    in_gallery = set(
        open_gallery(Path(match_lake.gallery)).ids_table()["enrollment_id"].to_pylist()
    )
    forced = match_lake.model_copy(
        update={
            "search": match_lake.search.model_copy(update={"engine": "ivfpq", "nprobe": 1}),
            "metrics": match_lake.metrics.model_copy(update={"textfile_dir": tmp_path / "metrics"}),
        }
    )
    report = match(forced, SECOND, ray=True)
    assert report.search is not None and report.search.engine == "ivfpq-ray"
    assert report.search.audit is not None
    exported = (tmp_path / "metrics" / f"dedup_match-{SECOND}.prom").read_text()
    assert f"dedup_search_candidate_recall {report.search.audit.recall}" in exported
    first, second = staged_people(match_batches[0]), staged_people(match_batches[1])
    rows = [r for r in candidates(match_lake) if r["batch_id"] == SECOND]
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
    assert all(r["score"] >= match_lake.matching.review_threshold for r in rows)
    # Everyone in the second batch has a candidate, and everyone joined the gallery: the next
    # batch is searched against them too, open cases and all.
    after = open_gallery(Path(match_lake.gallery)).ids_table()["enrollment_id"].to_pylist()
    assert report.unique == 0 and report.with_candidates == report.probes == len(second)
    assert sorted(after) == sorted(in_gallery | set(second)) and len(after) == len(set(after))


def test_running_a_batch_again_changes_nothing(match_lake: Settings) -> None:
    match(match_lake, FIRST, ray=False)
    match(match_lake, SECOND, ray=False)
    rows, version = candidates(match_lake), open_gallery(Path(match_lake.gallery)).manifest.version
    assert rows
    for batch_id in (FIRST, SECOND):
        again = match(match_lake, batch_id, ray=False)
        assert again.reused and again.search is None  # not searched again
    assert candidates(match_lake) == rows
    assert open_gallery(Path(match_lake.gallery)).manifest.version == version


def test_a_batch_that_was_not_embedded_is_refused(
    spark: Any, match_lake: Settings, portraits: Path, tmp_path: Path
) -> None:
    """A batch staged but never embedded: the match job refuses it, naming ``dedup embed``,
    before it writes anything or touches the gallery."""
    batch = build_demo_batch(tmp_path / THIRD, portraits, recaptures=0, seed=33, hostile=False)
    staged = stage(spark, match_lake, THIRD, batch.manifest)
    assert staged.staged > 0
    refusal = f"has {staged.staged} staged faces without a '{match_lake.model}' template: "
    with pytest.raises(LakeError, match=re.escape(refusal + "run `dedup embed` for it first")):
        match(match_lake, THIRD, ray=False)
    assert not BatchRun(THIRD, match_lake).work("match").exists()
    assert candidates(match_lake) == [] and not Path(match_lake.gallery).exists()


def test_enqueue_puts_the_candidates_and_what_adjudicators_see_into_the_queue(
    match_lake: Settings, match_batches: list[DemoBatch]
) -> None:
    import io

    from PIL import Image
    from sqlalchemy import select

    from dedup.adjudication import database
    from dedup.adjudication.tables import (
        CaseCandidate,
        CaseMember,
        CaseRow,
        Subject,
        SubjectImage,
    )
    from pipelines.review_feed import enqueue_batch
    from tests.review_support import expected_cases

    with pytest.raises(LakeError, match="no candidates table"):
        enqueue_batch(BatchRun(SECOND, match_lake))
    match(match_lake, FIRST, ray=False)
    match(match_lake, SECOND, ray=False)
    rows = [r for r in candidates(match_lake) if r["batch_id"] == SECOND]
    result = enqueue_batch(BatchRun(SECOND, match_lake), match_batches[1].folder)
    # Scores are cosines of float32 templates: rounding can lift a self-match a hair over 1.
    expected = expected_cases(
        [(r["probe_id"], r["candidate_id"], r["source"], round(min(r["score"], 1.0), 5))
         for r in rows]
    )  # fmt: skip
    # One case per group of the batch's photos that matched each other: one per person.
    assert (
        result.cases_created == len(expected) == len(set(staged_people(match_batches[1]).values()))
    )
    assert enqueue_batch(BatchRun(SECOND, match_lake), match_batches[1].folder).already_imported

    engine = database.connect(match_lake.adjudication_database_url())
    with database.sessions(engine)() as db:
        queued = {
            case.probe_id: (
                frozenset(db.scalars(select(CaseMember.enrollment_id).where(
                    CaseMember.case_id == case.case_id))),
                {c.candidate_id: (c.source, round(c.score, 5)) for c in db.scalars(
                    select(CaseCandidate).where(CaseCandidate.case_id == case.case_id))},
            )
            for case in db.scalars(select(CaseRow))
        }  # fmt: skip
        images = {(i.enrollment_id, i.kind): i.data for i in db.scalars(select(SubjectImage))}
        probe = db.get(Subject, rows[0]["probe_id"])
        assert probe is not None and probe.center_id and '"given_name"' in probe.display
    engine.dispose()
    assert queued == expected
    named = {r["probe_id"] for r in rows} | {r["candidate_id"] for r in rows}
    assert {e for e, kind in images if kind == "chip"} == named
    # This batch's own enrollments also show their photo, downscaled to a JPEG.
    own = {r["probe_id"] for r in rows}
    assert {e for e, kind in images if kind == "photo"} == own
    photo = Image.open(io.BytesIO(images[(rows[0]["probe_id"], "photo")]))
    assert photo.format == "JPEG" and max(photo.size) <= 640


def test_a_night_without_a_candidate_is_a_normal_night(match_lake: Settings) -> None:
    from pipelines.review_feed import enqueue_batch

    report = match(match_lake, FIRST, ray=False)  # two different people: no candidate at all
    assert report.candidates == 0 and candidates(match_lake) == []
    result = enqueue_batch(BatchRun(FIRST, match_lake))
    assert result.cases_created == 0 and not result.already_imported
    assert enqueue_batch(BatchRun(FIRST, match_lake)).already_imported
    # A batch that the match job has not searched yet is still refused, table or no table.
    with pytest.raises(LakeError, match="has not been matched: run `dedup match` first"):
        enqueue_batch(BatchRun(SECOND, match_lake))

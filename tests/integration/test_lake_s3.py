"""Stage (Spark, s3a), embed (Ray + delta-rs) and match (delta-rs) on an ``s3://`` lake, on a
real S3-compatible server (``scripts/s3-server``), with the gallery on S3 too (in the same
bucket, beside the lake) and its local cache in the working folder.

One small batch (the match tests' second one: two people, every photo with a same-person
partner in the batch) and the session's one Spark session, so the module stays cheap.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dedup.demo.batch import DemoBatch
from dedup.gallery.reader import open_gallery, verify_gallery
from dedup.gallery.storage import GalleryLocation
from dedup.settings import Settings
from pipelines.lake.batch_run import BatchRun
from pipelines.lake.delta_rs import DeltaRsTables
from pipelines.lake.location import Lake
from pipelines.lake.readers import batch_verdicts
from tests.conftest import make_settings
from tests.night_support import same_person_pairs, staged_people
from tests.s3_support import jvm_credentials, new_bucket, s3_options
from tests.support import delta_snapshot, stage

pytestmark = [pytest.mark.spark, pytest.mark.slow]

BATCH = "s3-night-1"


@dataclass(frozen=True)
class S3Night:
    settings: Settings
    local: Path  # the working directory the jobs ran in: nothing of the lake may land there
    staged: Any
    embedded: Any
    matched: Any
    seconds: float


@pytest.fixture(scope="module")
def night(
    spark: Any,
    match_batches: list[DemoBatch],
    dlib_model: Path,
    s3_endpoint: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[S3Night]:
    from pipelines.match import run_match
    from pipelines.ray.embed import run_embed

    local = tmp_path_factory.mktemp("s3-night")
    spec = {"dlib-resnet-v1": {**Settings().model_spec.model_dump(), "onnx": str(dlib_model)}}
    bucket = new_bucket(s3_endpoint)
    settings = make_settings(
        f"s3://{bucket}/lake",
        s3=s3_options(s3_endpoint),
        gallery=f"s3://{bucket}/gallery",
        gallery_cache=str(local / "gallery-cache"),
        log_dir=str(local / "logs"),
        models=spec,
        embed={"batch_size": 8, "cpus_per_actor": 1},
    )
    run = BatchRun(BATCH, settings)
    before = Path.cwd()
    os.chdir(local)
    try:
        started = time.perf_counter()
        with jvm_credentials(spark):
            staged = stage(spark, settings, BATCH, match_batches[1].manifest)
        embedded = run_embed(run)
        matched = run_match(run, settings.gallery, ray=False)
        seconds = time.perf_counter() - started
    finally:
        os.chdir(before)
    yield S3Night(settings, local, staged, embedded, matched, seconds)


def test_the_batch_is_staged_embedded_and_matched_on_s3(
    night: S3Night, match_batches: list[DemoBatch]
) -> None:
    batch, settings = match_batches[1], night.settings
    lake = Lake.of(settings)
    print(
        f"stage + embed + match on S3: {night.seconds:.1f} s (stage {night.staged.seconds:.1f},"
        f" embed {night.embedded.seconds:.1f}, match {night.matched.seconds:.1f})"
    )
    assert batch_verdicts(lake, BATCH) == batch.expected_reasons()
    people = staged_people(batch)
    assert night.staged.staged == night.embedded.embedded == len(people) > 2
    tables = delta_snapshot(lake)
    assert {r["enrollment_id"] for r in tables["faces"]} == set(people)
    templates = DeltaRsTables(lake).open("templates").to_pyarrow_table()
    assert sorted(templates["enrollment_id"].to_pylist()) == sorted(people)
    rows = DeltaRsTables(lake).open("candidates").to_pyarrow_table().to_pylist()
    pairs = {frozenset((r["probe_id"], r["candidate_id"])) for r in rows}
    assert {r["source"] for r in rows} == {"batch"}  # no gallery before this first batch
    assert pairs == same_person_pairs(people)
    assert night.matched.with_candidates == len(people)
    # The gallery was published on S3 beside the lake, and every enrollment joined it.
    gallery = open_gallery(GalleryLocation.of(settings), verify=True)
    assert sorted(gallery.ids_table()["enrollment_id"].to_pylist()) == sorted(people)
    assert gallery.location.root == f"{settings.gallery}/versions/v000001"
    store, bucket = Lake.of(settings).filesystem(), settings.gallery.removeprefix("s3://")
    assert store.get_file_info(f"{bucket}/CURRENT").size == len("v000001\n")


def test_the_work_files_are_on_s3_and_the_logs_local(night: S3Night) -> None:
    run = BatchRun(BATCH, night.settings)
    stage_files = run.work("stage").files()
    assert {"settings.json", "manifest.parquet", "first_run"} <= set(stage_files)
    assert any(name.startswith("results/") and name.endswith(".parquet") for name in stage_files)
    assert {"settings.json", "candidates.parquet", "search.json"} <= set(run.work("match").files())
    assert (night.local / "logs" / "embed" / BATCH / "ray.log").is_file()
    # Nothing of the lake or the gallery was written to a local folder named after the URI:
    # the gallery's files are cached locally, where the settings say.
    assert sorted(p.name for p in night.local.iterdir()) == ["gallery-cache", "logs"]


def test_running_embed_and_match_again_reuses_what_s3_holds(night: S3Night) -> None:
    from pipelines.match import run_match
    from pipelines.ray.embed import run_embed

    run = BatchRun(BATCH, night.settings)
    lake = Lake.of(night.settings)
    versions = {name: DeltaRsTables(lake).open(name).version() for name in ("templates",)}
    again = run_embed(run)
    assert (again.embedded, again.already_embedded) == (0, night.embedded.embedded)
    matched = run_match(run, night.settings.gallery, ray=False)
    assert matched.reused and matched.candidates == night.matched.candidates
    assert (matched.gallery_version, matched.gallery_size) == (1, night.matched.gallery_size)
    assert matched.search_figures == night.matched.search_figures  # from search.json on S3
    assert DeltaRsTables(lake).open("templates").version() == versions["templates"]


def test_an_erasure_leaves_no_object_on_s3_holding_the_person(night: S3Night) -> None:
    """Runs last: it changes the lake and the gallery. The chip's bytes are in faces and the
    stage's work files before, the template's (float16, as the gallery keeps it) in a
    gallery segment and its cached copy; after the erasure no object in the bucket holds
    either (tables, their history, work files, gallery versions) and neither does the
    gallery's local cache."""
    from pyarrow import fs

    from pipelines.erasure import LakeEraser

    lake = Lake.of(night.settings)
    faces = DeltaRsTables(lake).open("faces").to_pyarrow_table().to_pylist()
    erased = min(faces, key=lambda r: r["enrollment_id"])
    chip = erased["chip_png"]
    templates = DeltaRsTables(lake).open("templates").to_pyarrow_table().to_pylist()
    vector = next(r["vector"] for r in templates if r["enrollment_id"] == erased["enrollment_id"])
    template = np.asarray(vector, np.float32).astype(np.float16).tobytes()[64:128]
    needle = chip[len(chip) // 2 : len(chip) // 2 + 64]
    store, bucket = lake.filesystem(), lake.root.removeprefix("s3://").partition("/")[0]
    cache = night.local / "gallery-cache"

    def holding() -> tuple[list[str], list[str], list[Path]]:
        """The objects holding the chip, those holding the template, the cached files
        holding the template (each object read once)."""
        found = store.get_file_info(fs.FileSelector(bucket, recursive=True))
        keys = [info.path for info in found if info.type == fs.FileType.File]
        objects = {key[len(bucket) + 1 :]: _read(store, key) for key in keys}
        files = [p for p in cache.rglob("*") if p.is_file() and template in p.read_bytes()]
        return (
            [key for key, data in objects.items() if needle in data],
            [key for key, data in objects.items() if template in data],
            files,
        )

    chips, templates_held, cached = holding()
    assert any(key.startswith("lake/faces/") for key in chips)
    assert any(key.startswith("lake/_work/stage/") for key in chips)
    assert any(key.startswith("gallery/segments/") for key in templates_held) and cached
    done = LakeEraser.from_settings(night.settings).erase(erased["enrollment_id"])
    assert done.removed["work files rewritten"] >= 1
    assert done.removed["gallery templates tombstoned"] == 1
    assert done.reclaimed["gallery versions pruned"] >= 1
    assert holding() == ([], [], [])
    assert verify_gallery(GalleryLocation.of(night.settings)).size == len(templates) - 1


def _read(store: Any, key: str) -> bytes:
    with store.open_input_stream(key) as stream:
        return bytes(stream.read())

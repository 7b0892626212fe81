"""Helpers shared by the tests of the embed and match jobs, in integration/ and fault/.

The fixtures built on them (``dlib_model``, ``embed_batch``, ``match_batches``,
``embedded_lake``, ``match_lake``) are in ``tests/conftest.py``.
"""

from __future__ import annotations

import dataclasses
import itertools
import shutil
from pathlib import Path
from typing import Any

from dedup.demo.batch import DemoBatch, ExpectedRow, build_demo_batch
from dedup.settings import Settings
from pipelines.lake.batch_run import BatchRun
from tests.conftest import make_settings
from tests.support import stage

EMBED_BATCH = "embed-1"
FIRST, SECOND = "match-1", "match-2"


def settings_for(lake: Path, model: Path) -> Settings:
    """Settings of a lake embedding with ``model``: batches of 8, one core per actor."""
    spec = {"dlib-resnet-v1": {**Settings().model_spec.model_dump(), "onnx": str(model)}}
    return make_settings(lake, models=spec, embed={"batch_size": 8, "cpus_per_actor": 1})


def templates(settings: Settings) -> Any:
    from deltalake import DeltaTable

    return DeltaTable(f"{settings.lake}/templates")


def staged_ids(batch: DemoBatch) -> set[str]:
    return {r.enrollment_id for r in batch.expected if r.expected_status == "staged"}


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


def build_match_batches(folder: Path, portraits: Path) -> list[DemoBatch]:
    """The match tests' two batches: one photo of each person (both unique: they seed the
    gallery), then a full batch in which every photo has candidates."""
    first = build_demo_batch(folder / FIRST, portraits, recaptures=0, seed=31, hostile=False)
    second = build_demo_batch(folder / SECOND, portraits, recaptures=1, seed=32, hostile=False)
    return [one_photo_each(first), second]


def stage_and_embed(spark: Any, settings: Settings, batches: dict[str, DemoBatch]) -> None:
    from pipelines.ray.embed import run_embed

    for batch_id, batch in batches.items():
        stage(spark, settings, batch_id, batch.manifest)
        run_embed(BatchRun(batch_id, settings))


def copy_lake(settings: Settings, root: Path) -> Settings:
    """A copy of the settings' lake under ``root``, with a gallery of its own there."""
    shutil.copytree(settings.lake, root / "lake")
    return settings.model_copy(
        update={"lake": str(root / "lake"), "gallery": str(root / "gallery")}
    )


def candidates(settings: Settings) -> list[dict[str, Any]]:
    from pipelines.lake.delta_rs import DeltaRsTables

    table = DeltaRsTables(settings.lake).open("candidates")
    rows = [] if table is None else table.to_pyarrow_table().to_pylist()
    return sorted(rows, key=lambda r: (r["batch_id"], r["probe_id"], r["candidate_id"]))


def match(settings: Settings, batch_id: str, **options: Any) -> Any:
    from pipelines.match import run_match

    return run_match(BatchRun(batch_id, settings), Path(settings.gallery), **options)

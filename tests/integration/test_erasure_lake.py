"""The lake's part of an erasure on a small delta-rs lake (no Spark): hostile ids erase only
themselves, an identity the erased founded is renamed, and a second run finds nothing."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from deltalake import write_deltalake

from dedup.contracts.schemas import (
    ENROLLMENTS,
    FACES,
    IDENTITIES,
    LINKS,
    OUTCOMES,
    TEMPLATES,
)
from pipelines.erasure import LakeEraser
from pipelines.lake.delta_rs import DeltaRsTables

T0 = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
HOSTILE = ["o'brien", "' OR '1'='1", 'a"b', "x\\y", "e-0", "e-0'", "ünï ✓", "%_*"]


def _lake(root: Path, ids: list[str]) -> DeltaRsTables:
    tables = DeltaRsTables(str(root))
    enrollments = [
        {**dict.fromkeys(ENROLLMENTS.names), "batch_id": "b1", "row_index": i,
         "enrollment_id": e, "status": "staged", "given_name": f"name-{i}", "staged_at": T0}
        for i, e in enumerate(ids)
    ]  # fmt: skip
    # Written as Spark writes it (plain strings): the lake's readers filter it by value, and
    # a delta-rs MERGE would write string_view columns they cannot compare.
    write_deltalake(f"{root}/enrollments", pa.Table.from_pylist(enrollments, ENROLLMENTS))
    faces = [
        {"enrollment_id": e, "batch_id": "b1", "alignment": "dlib-150",
         "chip_png": b"chip" + e.encode(), "photo_sha256": "0" * 64, "image_width": 1,
         "image_height": 1,
         "box": {"left": 0, "top": 0, "right": 1, "bottom": 1}, "landmarks": [0.0] * 10,
         "quality": dict.fromkeys(FACES.field("quality").type.names, 1.0), "staged_at": T0}
        for e in ids
    ]  # fmt: skip
    tables.insert_new("faces", pa.Table.from_pylist(faces, FACES))
    templates = [
        {"enrollment_id": e, "batch_id": "b1", "model_id": "m", "vector": [float(i)] * 4,
         "created_at": T0} for i, e in enumerate(ids)
    ]  # fmt: skip
    tables.insert_new("templates", pa.Table.from_pylist(templates, TEMPLATES))
    # ids[0] founded one identity with ids[1] and ids[2] (both linked to it)
    links = [{"link_id": f"d{i}", "probe_id": ids[i], "duplicate_of": ids[0], "cause": f"d{i}",
              "made_at": T0} for i in (1, 2)]  # fmt: skip
    tables.insert_new("links", pa.Table.from_pylist(links, LINKS))
    identities = [
        {"enrollment_id": e, "identity_id": ids[0] if i < 3 else e, "since": T0}
        for i, e in enumerate(ids)
    ]
    tables.insert_new("identities", pa.Table.from_pylist(identities, IDENTITIES))
    outcomes = [
        {**dict.fromkeys(OUTCOMES.names), "enrollment_id": e, "batch_id": "b1",
         "status": "duplicate" if 0 < i < 3 else "unique", "identity_id": ids[0] if i < 3 else e,
         "duplicate_of": ids[0] if 0 < i < 3 else None, "changed_at": T0}
        for i, e in enumerate(ids)
    ]  # fmt: skip
    tables.insert_new("outcomes", pa.Table.from_pylist(outcomes, OUTCOMES))
    return tables


def rows(tables: DeltaRsTables, name: str) -> list[dict[str, Any]]:
    table = tables.open(name)
    return [] if table is None else table.to_pyarrow_table().to_pylist()


@pytest.mark.parametrize("victim", HOSTILE)
def test_a_hostile_id_erases_only_itself(tmp_path: Path, victim: str) -> None:
    ids = [victim, *[h for h in HOSTILE if h != victim]]
    tables = _lake(tmp_path / "lake", ids)
    eraser = LakeEraser(str(tmp_path / "lake"), tmp_path / "gallery")
    assert eraser.knows(victim) and not eraser.knows(victim + "?")
    done = eraser.erase(victim)
    assert done.removed["faces rows"] == done.removed["templates rows"] == 1
    others = set(ids) - {victim}
    assert {r["enrollment_id"] for r in rows(tables, "faces")} == others
    assert {r["enrollment_id"] for r in rows(tables, "templates")} == others
    [erased] = [r for r in rows(tables, "enrollments") if r["status"] == "erased"]
    assert erased["enrollment_id"] == victim and erased["given_name"] is None
    assert all(r["given_name"] for r in rows(tables, "enrollments") if r["status"] == "staged")
    # it founded the identity of ids[1] and ids[2]: they stay one, under ids[1]'s own id
    assert done.identity_renamed_to == ids[1]
    identities = {r["enrollment_id"]: r["identity_id"] for r in rows(tables, "identities")}
    assert victim not in identities and identities[ids[1]] == identities[ids[2]] == ids[1]
    [event] = rows(tables, "identity_events")
    assert (event["kind"], event["identity_id"], event["others"]) == ("renamed", ids[1], [victim])
    outcomes = {r["enrollment_id"]: r for r in rows(tables, "outcomes")}
    assert outcomes[victim]["status"] == "erased" and outcomes[victim]["identity_id"] is None
    assert outcomes[ids[2]]["duplicate_of"] == ids[1] and outcomes[ids[1]]["duplicate_of"] is None
    assert {r["probe_id"] for r in rows(tables, "links")} == {ids[2]}
    # no version, log or checkpoint file of the lake still holds the chip
    chip = b"chip" + victim.encode()
    assert not [p for p in (tmp_path / "lake").rglob("*") if p.is_file() and chip in p.read_bytes()]
    again = eraser.erase(victim)
    assert not again.anything and again.identity_renamed_to == ids[1]

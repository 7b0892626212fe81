"""What the jobs read from the lake, each question answered once (delta-rs, no Spark).

The embed job and the match job both need to know how far a batch's embedding has come; the
review feed and the demo need a batch's rows. Each of those reads lives here, so a job never
borrows another job's private reader.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from dedup.contracts.schemas import CANDIDATES, FACES, STATUS_STAGED, OutcomeStatus
from dedup.contracts.vectors import Matrix, matrix_of
from dedup.errors import LakeError
from pipelines.lake.delta_rs import DeltaRsTables
from pipelines.lake.location import Lake

CHIP_COLUMNS = ["enrollment_id", "batch_id", "chip_png"]
CHIPS = pa.schema([(name, FACES.field(name).type) for name in CHIP_COLUMNS])


def _ids(table: pa.Table) -> pa.Array:
    return pc.cast(table["enrollment_id"], pa.string()).combine_chunks()


def embedding_backlog(lake: str | Lake, batch_id: str, model_id: str) -> tuple[pa.Table, int]:
    """(chips of the batch still lacking a template of the model, how many already have one);
    a batch whose staging has not finished is refused (``enrollments`` is written last)."""
    tables = DeltaRsTables(lake)
    in_batch = pc.field("batch_id") == batch_id
    staged = tables.read(
        "enrollments", ["enrollment_id"], in_batch & (pc.field("status") == STATUS_STAGED)
    )
    faces = tables.open("faces")
    if staged is None or (faces is None and staged.num_rows):
        raise LakeError(f"batch {batch_id!r} has not been staged: run `dedup stage` first")
    if staged.num_rows == 0:
        if not tables.count("enrollments", in_batch):
            raise LakeError(
                f"batch {batch_id!r} has no enrollments rows: it was never staged, or its "
                "staging stopped part-way; run `dedup stage` for it again"
            )
        return CHIPS.empty_table(), 0
    chips = tables.read("faces", CHIP_COLUMNS, in_batch)
    assert chips is not None  # faces exists: checked above
    chips = chips.filter(pc.is_in(chips["enrollment_id"], _ids(staged)))
    done = tables.read(
        "templates", ["enrollment_id"], in_batch & (pc.field("model_id") == model_id)
    )
    if done is None:
        return chips, 0
    todo = chips.filter(pc.invert(pc.is_in(chips["enrollment_id"], _ids(done))))
    return todo, chips.num_rows - todo.num_rows


def batch_templates(
    lake: str | Lake, batch_id: str, model_id: str, dimension: int
) -> tuple[list[str], Matrix]:
    """(enrollment ids, unit templates) of the batch for the model, by id; a batch whose
    embedding has not finished is refused."""
    todo, embedded = embedding_backlog(lake, batch_id, model_id)
    if todo.num_rows:
        raise LakeError(
            f"batch {batch_id!r} has {todo.num_rows} staged faces without a "
            f"{model_id!r} template: run `dedup embed` for it first"
        )
    rows = DeltaRsTables(lake).read(
        "templates",
        ["enrollment_id", "vector"],
        (pc.field("batch_id") == batch_id) & (pc.field("model_id") == model_id),
    )
    if rows is None or not embedded:
        return [], np.zeros((0, dimension), np.float32)
    rows = rows.sort_by("enrollment_id")
    return rows["enrollment_id"].to_pylist(), matrix_of(rows["vector"], dimension)


def batch_verdicts(lake: str | Lake, batch_id: str) -> dict[int, str | None]:
    """Each manifest row of a staged batch: its reason code, or None if it was staged."""
    rows = DeltaRsTables(lake).read(
        "enrollments", ["row_index", "reason_code"], pc.field("batch_id") == batch_id
    )
    return {} if rows is None else {r["row_index"]: r["reason_code"] for r in rows.to_pylist()}


def batch_candidates(lake: str | Lake, batch_id: str, model_id: str) -> list[dict[str, Any]]:
    """The batch's candidate rows for the model."""
    rows = DeltaRsTables(lake).read(
        "candidates",
        CANDIDATES.names,
        (pc.field("batch_id") == batch_id) & (pc.field("model_id") == model_id),
    )
    if rows is None:
        raise LakeError("the lake has no candidates table: run `dedup match` first")
    return rows.to_pylist()  # type: ignore[no-any-return]


def rows_of_enrollments(
    lake: str | Lake, table: str, ids: Iterable[str], columns: list[str]
) -> list[dict[str, Any]]:
    """The columns of ``table``'s rows for the given enrollments (none where it is absent)."""
    wanted = sorted(set(ids))
    if not wanted:
        return []
    rows = DeltaRsTables(lake).read(
        table, columns, pc.field("enrollment_id").isin(pa.array(wanted, pa.string()))
    )
    return [] if rows is None else rows.to_pylist()


STAGING_COLUMNS = ["batch_id", "row_index", "enrollment_id", "staged_at"]


def staging_order(lake: str | Lake) -> list[str]:
    """Every staged enrollment id, earliest first (``staging_order_of``)."""
    rows = DeltaRsTables(lake).read(
        "enrollments", STAGING_COLUMNS, pc.field("status") == STATUS_STAGED
    )
    return [] if rows is None else staging_order_of(rows.to_pylist())


def staging_order_of(staged: list[dict[str, Any]]) -> list[str]:
    """The ids of these staged ``enrollments`` rows, earliest first: batches in the order they
    were first staged (their earliest ``staged_at``), rows in manifest order within a batch.
    An identity is named after its earliest member in this order
    (``dedup.matching.identities``)."""
    first: dict[str, Any] = {}
    for row in staged:
        seen = first.get(row["batch_id"])
        first[row["batch_id"]] = row["staged_at"] if seen is None else min(seen, row["staged_at"])
    listed = sorted(staged, key=lambda r: (first[r["batch_id"]], r["batch_id"], r["row_index"]))
    return [r["enrollment_id"] for r in listed]


def duplicate_scores(lake: str | Lake, model_id: str) -> list[float]:
    """Scores of the candidate pairs adjudicators decided were the same person: a probe decided
    ``duplicate`` and a candidate of the same identity (``dedup.matching.genuine_band``)."""
    tables = DeltaRsTables(lake)
    outcomes = tables.read("outcomes", ["enrollment_id", "status", "identity_id"])
    if outcomes is None:
        return []
    identity = {
        r["enrollment_id"]: r["identity_id"] for r in outcomes.to_pylist() if r["identity_id"]
    }
    duplicates = {
        r["enrollment_id"] for r in outcomes.to_pylist() if r["status"] == OutcomeStatus.DUPLICATE
    }
    if not duplicates:
        return []
    rows = tables.read(
        "candidates",
        ["probe_id", "candidate_id", "score"],
        (pc.field("model_id") == model_id)
        & pc.field("probe_id").isin(pa.array(sorted(duplicates), pa.string())),
    )
    return [
        float(r["score"])
        for r in ([] if rows is None else rows.to_pylist())
        if identity.get(r["candidate_id"]) is not None
        and identity.get(r["candidate_id"]) == identity.get(r["probe_id"])
    ]

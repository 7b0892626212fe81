"""The stage job's per-row work in one process, without an engine: a manifest table in, every
row's verdict out, the rows Spark's ``stage_results`` gives for the same batch.

It runs the per-partition steps Spark runs through ``mapInArrow`` (``validate_rows``,
``stage_photos``) and, between them, the batch-level checks that Spark does with a window
count and a join, in the same reason-code order: an id on several rows of the batch
(``duplicate_in_batch``), then an id another batch holds (``already_enrolled``). Which ids
other batches hold is the caller's to say (``held_elsewhere``: id -> the batch holding it),
so nothing here reads the lake. Tests hold both runners to the same verdicts.

    >>> import datetime as dt
    >>> from dedup.contracts.schemas import RAW_MANIFEST
    >>> from dedup.settings import Settings
    >>> row = {"photo_path": "p.jpg", "consent": "true", "captured_at": "2026-11-20T10:00Z",
    ...        "center_id": "C-01"}
    >>> ids = ["E1", "E1", "E2"]
    >>> raw = pa.Table.from_pylist(
    ...     [{"row_index": i, "enrollment_id": e, **row} for i, e in enumerate(ids)],
    ...     schema=RAW_MANIFEST)
    >>> first_run = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
    >>> window = CaptureWindow.for_batch(Settings().manifest, first_run)
    >>> verdicts = stage_sequentially(
    ...     raw, "b2", Path("batch"), Settings(), window, held_elsewhere={"E2": "b1"})
    >>> for verdict in verdicts.to_pylist():
    ...     print(verdict["row_index"], verdict["reason_code"], "-", verdict["detail"])
    0 duplicate_in_batch - enrollment_id is on 2 rows of this batch
    1 duplicate_in_batch - enrollment_id is on 2 rows of this batch
    2 already_enrolled - enrollment_id was staged by batch b1
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa

from dedup.contracts.reasons import RejectReason
from dedup.contracts.schemas import STATUS_REJECTED, STATUS_STAGED
from dedup.intake.manifest_rules import CaptureWindow
from dedup.intake.partition_steps import PHOTO_RESULT, VALIDATED, stage_photos, validate_rows
from dedup.settings import Settings

_VERDICT = ("reason_code", "detail")
_ROW_FIELDS = [f for f in VALIDATED if f.name not in ("id_valid", *_VERDICT)]
_FACE_FIELDS = [f for f in PHOTO_RESULT if f.name not in ("row_index", *_VERDICT)]

# A verdict row: what Spark's stage_results selects, column for column.
STAGE_RESULTS = pa.schema(
    [
        pa.field("batch_id", pa.string(), nullable=False),
        *_ROW_FIELDS,
        pa.field("status", pa.string(), nullable=False),
        *(VALIDATED.field(name) for name in _VERDICT),
        *_FACE_FIELDS,
    ]
)


def batch_verdict(
    row: dict[str, Any], repeats: int, held_elsewhere: Mapping[str, str]
) -> tuple[str | None, str | None]:
    """The row's (reason_code, detail) once the batch-level checks are done: its own verdict
    if it has one, else the first batch-level check it fails, else none."""
    if row["reason_code"] is not None:
        return row["reason_code"], row["detail"]
    if repeats > 1:
        return (
            RejectReason.DUPLICATE_IN_BATCH.value,
            f"enrollment_id is on {repeats} rows of this batch",
        )
    held_by = held_elsewhere.get(row["enrollment_id"])
    if held_by is not None:
        return RejectReason.ALREADY_ENROLLED.value, f"enrollment_id was staged by batch {held_by}"
    return None, None


def with_batch_reasons(
    validated: list[dict[str, Any]], held_elsewhere: Mapping[str, str]
) -> list[dict[str, Any]]:
    """Validated rows with the batch-level checks applied. Only a valid id is compared: an
    invalid one counts as on one row, as in the Spark job."""
    counts = Counter(row["enrollment_id"] for row in validated)
    checked = []
    for row in validated:
        repeats = counts[row["enrollment_id"]] if row["id_valid"] else 1
        reason, detail = batch_verdict(row, repeats, held_elsewhere)
        checked.append({**row, "reason_code": reason, "detail": detail})
    return checked


def stage_sequentially(
    raw: pa.Table,
    batch_id: str,
    batch_dir: Path,
    settings: Settings,
    window: CaptureWindow,
    *,
    held_elsewhere: Mapping[str, str],
) -> pa.Table:
    """Every row of the raw manifest table with its verdict and, for a staged row, its face
    columns (``STAGE_RESULTS``), in manifest order. Photos are read from ``batch_dir``."""
    validated = [
        row for batch in validate_rows(raw.to_batches(), window) for row in batch.to_pylist()
    ]
    checked = with_batch_reasons(validated, held_elsewhere)
    survivors = [row for row in checked if row["reason_code"] is None]
    photos = {
        row["row_index"]: row
        for batch in stage_photos(
            [pa.RecordBatch.from_pylist(survivors, schema=VALIDATED)], batch_dir, settings
        )
        for row in batch.to_pylist()
    }
    return pa.Table.from_pylist(
        [_result(batch_id, row, photos.get(row["row_index"], {})) for row in checked],
        schema=STAGE_RESULTS,
    )


def _result(batch_id: str, row: dict[str, Any], photo: dict[str, Any]) -> dict[str, Any]:
    """One verdict row: the row's own or batch-level verdict first, else its photo's."""
    reason = row["reason_code"] if row["reason_code"] is not None else photo.get("reason_code")
    detail = row["detail"] if row["detail"] is not None else photo.get("detail")
    return {
        "batch_id": batch_id,
        **{f.name: row[f.name] for f in _ROW_FIELDS},
        "status": STATUS_STAGED if reason is None else STATUS_REJECTED,
        "reason_code": reason,
        "detail": detail,
        **{f.name: photo.get(f.name) for f in _FACE_FIELDS},
    }

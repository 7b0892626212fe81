"""The stage job's per-partition work on Arrow record batches, shared by every engine.

Spark calls these through ``mapInArrow`` (``pipelines/spark/stage.py``); the sequential
runner (``dedup.intake.sequential``) calls them in one process, with the batch-level checks
between them. Both steps turn each row into a verdict (a reason code, or none) and never raise:
bad input is a reject with its reason, and a fault nobody foresaw on one row is that row's
``internal_error`` reject (naming the error), so it cannot fail the task and with it the batch.

    validate_rows:  RAW_MANIFEST  -> VALIDATED    (field checks)
    stage_photos:   VALIDATED     -> PHOTO_RESULT (path, decode, face, chip, quality)
"""

from __future__ import annotations

import datetime as dt
import traceback
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa

from dedup.contracts.reasons import RejectReason, RowRejected
from dedup.contracts.schemas import ENROLLMENTS, FACES, MANIFEST_DISPLAY, RAW_MANIFEST, REJECTS
from dedup.intake.manifest_rules import (
    ENROLLMENT_ID,
    MAX_TEXT,
    CaptureWindow,
    parse_captured_at,
    resolve_photo,
    validate_row,
)
from dedup.intake.photo_files import read_photo
from dedup.intake.photo_to_face import stage_photo
from dedup.settings import Settings


def _nullable(schema: pa.Schema, names: Iterable[str]) -> list[pa.Field]:
    """Columns of a declared table, nullable here: a rejected row has no value for them."""
    return [schema.field(name).with_nullable(True) for name in names]


_ROW_INDEX = RAW_MANIFEST.field("row_index")
_VERDICT = _nullable(REJECTS, ("reason_code", "detail"))
# The manifest's columns as typed in enrollments; id_valid tells the batch-level checks which
# ids may be compared.
_ROW_COLUMNS = ("photo_path", "consent", "captured_at", "center_id", *MANIFEST_DISPLAY)
_FACE_COLUMNS = [f.name for f in FACES if f.name not in ("enrollment_id", "batch_id", "staged_at")]

VALIDATED = pa.schema(
    [
        _ROW_INDEX,
        *_nullable(ENROLLMENTS, ["enrollment_id"]),
        pa.field("id_valid", pa.bool_(), nullable=False),
        *_nullable(ENROLLMENTS, _ROW_COLUMNS),
        *_VERDICT,
    ]
)

PHOTO_RESULT = pa.schema([_ROW_INDEX, *_VERDICT, *_nullable(FACES, _FACE_COLUMNS)])

_TEXT_FIELDS = ("enrollment_id", "photo_path", "center_id", "given_name", "family_name", "sex")


def _clip(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip()
    return value[:MAX_TEXT] if value else None


def _fault_detail(exc: BaseException) -> str:
    """A fault on one row, for its reject: the error and where it was raised."""
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" at {Path(frames[-1].filename).name}:{frames[-1].lineno}" if frames else ""
    return f"{type(exc).__name__}{where}: {exc}"[:300]


def verdict_of(check: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """``check()``'s columns, or the ``RowRejected`` it raised, as reason_code and detail."""
    try:
        return {**check(), "reason_code": None, "detail": None}
    except RowRejected as rejected:
        return {"reason_code": rejected.reason.value, "detail": rejected.detail}
    except Exception as exc:  # one row's fault must not fail the batch: see the module doc
        return {"reason_code": RejectReason.INTERNAL_ERROR.value, "detail": _fault_detail(exc)}


def _best_effort(row: dict[str, Any]) -> dict[str, Any]:
    """What can be kept of a rejected row, so the enrollments table still shows it."""
    kept: dict[str, Any] = {name: _clip(row.get(name)) for name in _TEXT_FIELDS}
    consent = (row.get("consent") or "").strip().lower()
    kept["consent"] = True if consent == "true" else False if consent == "false" else None
    try:
        kept["captured_at"] = parse_captured_at((row.get("captured_at") or "").strip())
    except RowRejected:
        kept["captured_at"] = None
    try:
        kept["date_of_birth"] = dt.date.fromisoformat((row.get("date_of_birth") or "").strip())
    except ValueError:
        kept["date_of_birth"] = None
    return kept


def validate_row_verdict(row: dict[str, Any], window: CaptureWindow) -> dict[str, Any]:
    raw_id = (row.get("enrollment_id") or "").strip()
    out: dict[str, Any] = {
        "row_index": row["row_index"],
        "id_valid": bool(ENROLLMENT_ID.fullmatch(raw_id)) and not row.get("row_error"),
    }

    def valid_columns() -> dict[str, Any]:
        valid = validate_row(row, window)
        return {name: getattr(valid, name) for name in ("enrollment_id", *_ROW_COLUMNS)}

    verdict = verdict_of(valid_columns)
    if verdict["reason_code"] is not None:
        out.update(_best_effort(row))
    out.update(verdict)
    return out


def validate_rows(
    batches: Iterable[pa.RecordBatch], window: CaptureWindow
) -> Iterator[pa.RecordBatch]:
    for batch in batches:
        rows = [validate_row_verdict(row, window) for row in batch.to_pylist()]
        yield pa.RecordBatch.from_pylist(rows, schema=VALIDATED)


def photo_verdict(row: dict[str, Any], batch_dir: Path, settings: Settings) -> dict[str, Any]:
    def face_columns() -> dict[str, Any]:
        location = resolve_photo(row["photo_path"], batch_dir, settings.manifest)
        return stage_photo(read_photo(location, settings.imaging), settings).as_row()

    return {"row_index": row["row_index"], **verdict_of(face_columns)}


def stage_photos(
    batches: Iterable[pa.RecordBatch], batch_dir: Path, settings: Settings
) -> Iterator[pa.RecordBatch]:
    for batch in batches:
        rows = [photo_verdict(row, batch_dir, settings) for row in batch.to_pylist()]
        yield pa.RecordBatch.from_pylist(rows, schema=PHOTO_RESULT)

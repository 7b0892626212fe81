"""From the lake to the review queue: a batch's candidates, with what adjudicators need to see.

``review_payload`` reads (delta-rs) the batch's ``candidates`` rows and, for every enrollment
they name, its display fields and capture metadata (``enrollments``), quality figures and
aligned chip (``faces``), and, where the batch folder is given, its photo (decoded safely,
upright, downscaled to ``PHOTO_MAX_SIDE`` and re-encoded as JPEG, so no original file's
metadata reaches the queue). ``enqueue_batch`` imports it into the review database through
the service's own import operation (one transaction with its audit entry); importing the same
batch twice creates nothing.
"""

from __future__ import annotations

import base64
import datetime as dt
import io
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from PIL import Image

from dedup.adjudication import operations
from dedup.adjudication.access import Actor, Role
from dedup.adjudication.context import opened
from dedup.adjudication.payloads import BatchImport, CandidateIn, ImageIn, ImportResult, SubjectIn
from dedup.contracts.reasons import RowRejected
from dedup.contracts.schemas import MANIFEST_DISPLAY, STATUS_STAGED
from dedup.errors import LakeError
from dedup.imaging.decode import decode_photo
from dedup.manifest import resolve_photo
from dedup.photo_files import read_photo
from dedup.settings import Settings
from pipelines.deltars import open_table, plain_strings

PHOTO_MAX_SIDE = 640
PIPELINE_ACTOR = "pipeline"


def _rows(settings: Settings, table: str, ids: Iterable[str], columns: list[str]) -> list[Any]:
    found = open_table(settings.lake, table)
    wanted = sorted(set(ids))
    if found is None or not wanted:
        return []
    data = found.to_pyarrow_dataset().to_table(
        columns=columns, filter=pc.field("enrollment_id").isin(pa.array(wanted, pa.string()))
    )
    return plain_strings(data).to_pylist()  # type: ignore[no-any-return]


def review_payload(settings: Settings, batch_id: str, batch_dir: Path | None = None) -> BatchImport:
    """The import payload of one batch's candidates (model: the configured one)."""
    table = open_table(settings.lake, "candidates")
    if table is None:
        raise LakeError("the lake has no candidates table: run `dedup match` first")
    rows = plain_strings(
        table.to_pyarrow_dataset().to_table(
            columns=["probe_id", "candidate_id", "score", "rank", "source"],
            filter=(pc.field("batch_id") == batch_id) & (pc.field("model_id") == settings.model),
        )
    ).to_pylist()
    candidates = [
        CandidateIn(
            probe_id=r["probe_id"],
            candidate_id=r["candidate_id"],
            score=max(-1.0, min(1.0, float(r["score"]))),
            rank=int(r["rank"]),
            source=r["source"],
        )
        for r in rows
    ]
    named = {r["probe_id"] for r in rows} | {r["candidate_id"] for r in rows}
    return BatchImport(
        model_id=settings.model,
        candidates=candidates,
        subjects=subjects(settings, named, batch_id, batch_dir),
    )


def subjects(
    settings: Settings, ids: set[str], batch_id: str, batch_dir: Path | None
) -> list[SubjectIn]:
    """What adjudicators see of each enrollment; photos only of ``batch_id``'s own, from
    ``batch_dir`` (earlier batches' folders are not at hand: their chips stand in)."""
    columns = ["enrollment_id", "batch_id", "status", "photo_path", "captured_at", "center_id"]
    enrollments = {
        r["enrollment_id"]: r
        for r in _rows(settings, "enrollments", ids, [*columns, *MANIFEST_DISPLAY])
        if r["status"] == STATUS_STAGED
    }
    faces = {
        r["enrollment_id"]: r
        for r in _rows(settings, "faces", ids, ["enrollment_id", "chip_png", "quality"])
    }
    out = []
    for enrollment_id in sorted(ids):
        row = enrollments.get(enrollment_id, {})
        face = faces.get(enrollment_id)
        images = {}
        if face is not None:
            images["chip"] = _image("image/png", face["chip_png"])
        own = batch_dir is not None and row.get("batch_id") == batch_id
        photo = _photo(settings, row.get("photo_path"), batch_dir) if own else None
        if photo is not None:
            images["photo"] = _image("image/jpeg", photo)
        quality = {
            k: float(v)
            for k, v in ((face or {}).get("quality") or {}).items()
            if v is not None and math.isfinite(float(v))
        }
        display = {name: _text(row[name]) for name in MANIFEST_DISPLAY if row.get(name) is not None}
        out.append(
            SubjectIn(
                enrollment_id=enrollment_id,
                batch_id=row.get("batch_id"),
                captured_at=row.get("captured_at"),
                center_id=row.get("center_id"),
                display=display,
                quality=quality,
                images=images,
            )
        )
    return out


def _text(value: object) -> str:
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)[:200]


def _image(media_type: str, data: bytes) -> ImageIn:
    return ImageIn(media_type=media_type, data_base64=base64.b64encode(data).decode("ascii"))


def _photo(settings: Settings, photo_path: str | None, batch_dir: Path | None) -> bytes | None:
    """The photo as a downscaled JPEG; None where it cannot be read or decoded."""
    if photo_path is None or batch_dir is None:
        return None
    try:
        location = resolve_photo(photo_path, batch_dir, settings.manifest)
        decoded = decode_photo(read_photo(location, settings.imaging), settings.imaging)
    except RowRejected:
        return None
    image = Image.fromarray(decoded.rgb)
    image.thumbnail((PHOTO_MAX_SIDE, PHOTO_MAX_SIDE))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=85)
    return out.getvalue()


def enqueue_batch(settings: Settings, batch_id: str, batch_dir: Path | None = None) -> ImportResult:
    """Import the batch's candidates into the review database (migrating it if needed)."""
    payload = review_payload(settings, batch_id, batch_dir)
    with opened(settings) as context:
        pipeline = Actor.local(PIPELINE_ACTOR, Role.OPERATOR)
        return operations.import_candidates(context, pipeline, batch_id, payload)

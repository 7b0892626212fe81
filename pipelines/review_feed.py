"""From the lake to the review queue: a batch's candidates, with what adjudicators need to see.

``review_payload`` reads (delta-rs) the batch's ``candidates`` rows, the identity of each
candidate (``identities``: several captures of one person are shown together), and, for
every enrollment they name, its display fields and capture metadata (``enrollments``),
quality figures and aligned chip (``faces``), and, where the batch folder is given, its
photo (decoded safely, upright, downscaled to ``PHOTO_MAX_SIDE`` and re-encoded as JPEG, so
no original file's metadata reaches the queue). ``enqueue_batch`` imports it into the review
database through the service's own import operation (one transaction with its audit entry);
importing the same batch twice creates nothing.
"""

from __future__ import annotations

import base64
import datetime as dt
import io
import math
import time
from dataclasses import dataclass
from pathlib import Path

from PIL import Image
from rich.console import RenderableType

from dedup.adjudication import operations
from dedup.adjudication.access import Actor, Role
from dedup.adjudication.context import opened
from dedup.adjudication.payloads import BatchImport, CandidateIn, ImageIn, ImportResult, SubjectIn
from dedup.contracts.reasons import RowRejected
from dedup.contracts.schemas import MANIFEST_DISPLAY, STATUS_STAGED
from dedup.errors import LakeError
from dedup.imaging.decode import decode_photo
from dedup.intake.manifest_rules import resolve_photo
from dedup.intake.photo_files import read_photo
from dedup.observability.job_metrics import job_metrics
from dedup.settings import Settings
from pipelines.job_report import Figures, JobReport
from pipelines.lake.batch_run import BatchRun
from pipelines.lake.location import Lake
from pipelines.lake.readers import batch_candidates, rows_of_enrollments
from pipelines.match import searched

PHOTO_MAX_SIDE = 640
PIPELINE_ACTOR = "pipeline"


def review_payload(settings: Settings, batch_id: str, batch_dir: Path | None = None) -> BatchImport:
    """The import payload of one batch's candidates (model: the configured one)."""
    rows = batch_candidates(Lake.of(settings), batch_id, settings.model)
    named_candidates = {r["candidate_id"] for r in rows}
    identity = {
        r["enrollment_id"]: r["identity_id"]
        for r in rows_of_enrollments(
            Lake.of(settings), "identities", named_candidates, ["enrollment_id", "identity_id"]
        )
    }
    candidates = [
        CandidateIn(
            probe_id=r["probe_id"],
            candidate_id=r["candidate_id"],
            score=max(-1.0, min(1.0, float(r["score"]))),
            rank=int(r["rank"]),
            source=r["source"],
            identity_id=identity.get(r["candidate_id"]),
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
    lake = Lake.of(settings)
    columns = ["enrollment_id", "batch_id", "status", "photo_path", "captured_at", "center_id"]
    enrollments = {
        r["enrollment_id"]: r
        for r in rows_of_enrollments(lake, "enrollments", ids, [*columns, *MANIFEST_DISPLAY])
        if r["status"] == STATUS_STAGED
    }
    faces = {
        r["enrollment_id"]: r
        for r in rows_of_enrollments(lake, "faces", ids, ["enrollment_id", "chip_png", "quality"])
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


def enqueue_batch(run: BatchRun, batch_dir: Path | None = None) -> ImportResult:
    """Import the batch's candidates into the review database (migrating it if needed)."""
    return _enqueue(run, batch_dir)[0]


def _enqueue(run: BatchRun, batch_dir: Path | None) -> tuple[ImportResult, int]:
    """The import's result and how many candidate rows it was given."""
    batch_id, settings = run.batch_id, run.settings
    payload = review_payload(settings, batch_id, batch_dir)
    if not payload.candidates and not searched(run):
        raise LakeError(f"batch {batch_id!r} has not been matched: run `dedup match` first")
    with opened(settings) as context:
        pipeline = Actor.local(PIPELINE_ACTOR, Role.OPERATOR)
        result = operations.import_candidates(context, pipeline, batch_id, payload)
    return result, len(payload.candidates)


@dataclass(frozen=True, kw_only=True)
class EnqueueReport(JobReport):
    result: ImportResult
    # Candidate rows of the batch handed to the import.
    candidates: int = 0

    def figures(self) -> Figures:
        """Rows in: the batch's candidate rows; out: the cases created."""
        result = self.result
        return {
            **self.timing(self.candidates, result.cases_created),
            "cases_created": result.cases_created,
            "cases_skipped": result.cases_skipped,
            "catch_trials": result.catch_trials_seeded,
            "already_imported": int(result.already_imported),
        }

    def summary(self) -> list[RenderableType]:
        result = self.result
        if result.already_imported:
            return [f"batch {result.batch_id} was already in the review queue: nothing added"]
        return [
            f"review queue: {result.cases_created} cases from batch {result.batch_id} "
            f"({result.cases_skipped} groups of probes already had a case; "
            f"{result.catch_trials_seeded} catch trials seeded)"
        ]


def enqueue_report(run: BatchRun, batch_dir: Path | None = None) -> EnqueueReport:
    """``enqueue_batch`` as a job: its result, and the time it took."""
    with job_metrics(run.settings.metrics, "enqueue", run.batch_id) as metrics:
        report = metrics.done(_enqueue_report(run, batch_dir))
    return report


def _enqueue_report(run: BatchRun, batch_dir: Path | None) -> EnqueueReport:
    started = time.perf_counter()
    result, candidates = _enqueue(run, batch_dir)
    return EnqueueReport(
        batch_id=run.batch_id,
        seconds=time.perf_counter() - started,
        result=result,
        candidates=candidates,
    )

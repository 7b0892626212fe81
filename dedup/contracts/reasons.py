"""Reason codes for rejected manifest rows: the one documented enumeration.

Each rejected row carries exactly one code: the first check it fails, in the order the
stage job applies them (the order of this enumeration). ``docs/manifest.md`` is generated
from ``REASON_DESCRIPTIONS`` by ``dedup reasons --markdown``, so code and docs cannot drift.
"""

from __future__ import annotations

from enum import StrEnum


class RejectReason(StrEnum):
    INVALID_ROW = "invalid_row"
    CONSENT_MISSING = "consent_missing"
    DUPLICATE_IN_BATCH = "duplicate_in_batch"
    ALREADY_ENROLLED = "already_enrolled"
    PHOTO_OUTSIDE_BATCH = "photo_outside_batch"
    PHOTO_MISSING = "photo_missing"
    PHOTO_UNREADABLE = "photo_unreadable"
    IMAGE_TOO_LARGE = "image_too_large"
    UNDECODABLE_IMAGE = "undecodable_image"
    IMAGE_TOO_SMALL = "image_too_small"
    NO_FACE = "no_face"
    SEVERAL_FACES = "several_faces"
    FACE_TOO_SMALL = "face_too_small"
    QUALITY_BELOW_THRESHOLD = "quality_below_threshold"
    INTERNAL_ERROR = "internal_error"


REASON_DESCRIPTIONS: dict[RejectReason, str] = {
    RejectReason.INVALID_ROW: (
        "The row cannot be read or a field is missing or malformed: bytes that are not UTF-8, "
        "a line that is not a JSON object, a value that is not text, the wrong number of CSV "
        "fields; enrollment_id (1-64 of A-Z a-z 0-9 _ -), photo_path, consent, captured_at "
        "(ISO 8601, within manifest.earliest_capture to the batch's first run plus "
        "manifest.capture_ahead_hours), center_id; a control character in any text; or an "
        "optional display field of the wrong form (date_of_birth not an ISO date). The detail "
        "names the line (or Parquet row) and the field."
    ),
    RejectReason.CONSENT_MISSING: "consent is absent or false; only consented captures are staged.",
    RejectReason.DUPLICATE_IN_BATCH: (
        "The same enrollment_id appears on more than one row of this batch. Every such row is "
        "rejected, since the system cannot tell which one is meant; resubmit the right one."
    ),
    RejectReason.ALREADY_ENROLLED: (
        "The enrollment_id was staged by an earlier batch, or is held by another batch that "
        "stopped part-way and has not been re-run. Staged records are never overwritten."
    ),
    RejectReason.PHOTO_OUTSIDE_BATCH: (
        "photo_path leaves the batch folder (.., a symlink out), or is an absolute path or URI "
        "while the settings do not allow those."
    ),
    RejectReason.PHOTO_MISSING: "No file exists at photo_path.",
    RejectReason.PHOTO_UNREADABLE: (
        "Something is at photo_path but it cannot be read as a photo file: it is not a regular "
        "file (a directory, FIFO, socket or device), it may not be read, reading failed, or "
        "reading did not finish within imaging.read_timeout_s (a stalled mount)."
    ),
    RejectReason.IMAGE_TOO_LARGE: (
        "The file is larger than imaging.max_file_bytes, or its declared pixel count exceeds "
        "imaging.max_pixels (decompression-bomb guard). Nothing beyond the header is decoded."
    ),
    RejectReason.UNDECODABLE_IMAGE: (
        "The file is not an image Pillow can fully decode (truncated, corrupt, or another format)."
    ),
    RejectReason.IMAGE_TOO_SMALL: (
        "The image is smaller than imaging.min_side pixels on its short side."
    ),
    RejectReason.NO_FACE: "The detector found no face.",
    RejectReason.SEVERAL_FACES: (
        "More than one usable face (score at least detection.min_score and at least "
        "detection.min_face_px wide) was found; a registry photo must show one person."
    ),
    RejectReason.FACE_TOO_SMALL: "A face was found but it is narrower than detection.min_face_px.",
    RejectReason.QUALITY_BELOW_THRESHOLD: (
        "The single face fails a quality threshold (inter-eye distance, sharpness, exposure, "
        "detector confidence, pose, or the face runs off the image). The detail names each "
        "failed measure with its value and threshold."
    ),
    RejectReason.INTERNAL_ERROR: (
        "The stage job failed on this row in a way no check foresaw: a fault in dedup or a "
        "library, not a verdict on the row. The detail names the error; please report it. "
        "The rest of the batch is unaffected, and the row can be sent again in a later batch."
    ),
}


def reasons_markdown() -> str:
    """The reason-code table as Markdown, in check order."""
    lines = ["| code | meaning |", "| --- | --- |"]
    lines += [f"| `{code.value}` | {REASON_DESCRIPTIONS[code]} |" for code in RejectReason]
    return "\n".join(lines)


class RowRejected(Exception):
    """A manifest row fails a check. Caught per row and written as a reject; never escapes a job.

    Deliberately not a ``DedupError``: a bad row is expected input, not a fault.
    """

    def __init__(self, reason: RejectReason, detail: str) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail

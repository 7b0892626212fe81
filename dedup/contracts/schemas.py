"""Table schemas, declared once in Arrow and used by Spark, Ray and the tests alike.

Natural keys (what makes a row unique, and what every idempotent write merges on):

- ``enrollments``: (batch_id, row_index): one row per manifest row.
- ``rejects``: (batch_id, row_index): at most one reject per manifest row.
- ``faces``: enrollment_id: one face per staged enrollment, across all batches.

``row_index`` is the 0-based position of the row in the manifest file, so a re-submitted
manifest maps every row to the same key.
"""

from __future__ import annotations

from enum import StrEnum

import pyarrow as pa

UTC_TS = pa.timestamp("us", tz="UTC")

# The manifest after reading: every column as text, exactly as the operator wrote it, so that
# validation (not the file reader) decides what is malformed and says why.
MANIFEST_REQUIRED = ("enrollment_id", "photo_path", "consent", "captured_at", "center_id")
MANIFEST_DISPLAY = ("given_name", "family_name", "date_of_birth", "sex")
MANIFEST_COLUMNS = MANIFEST_REQUIRED + MANIFEST_DISPLAY

RAW_MANIFEST = pa.schema(
    [pa.field("row_index", pa.int64(), nullable=False)]
    + [pa.field(name, pa.string()) for name in MANIFEST_COLUMNS]
    # Set when the reader could not split the row into fields (bad JSON line, wrong field count).
    + [pa.field("row_error", pa.string())]
)

STATUS_STAGED = "staged"
STATUS_REJECTED = "rejected"

ENROLLMENTS = pa.schema(
    [
        pa.field("batch_id", pa.string(), nullable=False),
        pa.field("row_index", pa.int64(), nullable=False),
        pa.field("enrollment_id", pa.string()),
        pa.field("status", pa.string(), nullable=False),
        pa.field("reason_code", pa.string()),
        pa.field("photo_path", pa.string()),
        pa.field("consent", pa.bool_()),
        pa.field("captured_at", UTC_TS),
        pa.field("center_id", pa.string()),
        # Display fields: shown to adjudicators, never used for matching.
        pa.field("given_name", pa.string()),
        pa.field("family_name", pa.string()),
        pa.field("date_of_birth", pa.date32()),
        pa.field("sex", pa.string()),
        pa.field("staged_at", UTC_TS, nullable=False),
    ]
)

QUALITY = pa.struct(
    [
        pa.field("inter_eye_px", pa.float32()),
        pa.field("sharpness", pa.float32()),
        pa.field("brightness", pa.float32()),
        pa.field("clipped_fraction", pa.float32()),
        pa.field("detector_score", pa.float32()),
        pa.field("yaw_deg", pa.float32()),
        pa.field("roll_deg", pa.float32()),
    ]
)

BOX = pa.struct(
    [
        pa.field("left", pa.int32()),
        pa.field("top", pa.int32()),
        pa.field("right", pa.int32()),
        pa.field("bottom", pa.int32()),
    ]
)

# Landmarks are the 5 points of dlib's shape predictor, (x, y) interleaved, in the pixel frame
# of the decoded, upright photo. Stored as a variable list because Spark 3.5 has no
# fixed-size arrays; LANDMARK_VALUES is checked on write.
LANDMARK_VALUES = 10

FACES = pa.schema(
    [
        pa.field("enrollment_id", pa.string(), nullable=False),
        pa.field("batch_id", pa.string(), nullable=False),
        pa.field("alignment", pa.string(), nullable=False),
        pa.field("chip_png", pa.binary(), nullable=False),
        pa.field("photo_sha256", pa.string(), nullable=False),
        pa.field("image_width", pa.int32(), nullable=False),
        pa.field("image_height", pa.int32(), nullable=False),
        pa.field("box", BOX, nullable=False),
        pa.field("landmarks", pa.list_(pa.float32()), nullable=False),
        pa.field("quality", QUALITY, nullable=False),
        pa.field("staged_at", UTC_TS, nullable=False),
    ]
)

REJECTS = pa.schema(
    [
        pa.field("batch_id", pa.string(), nullable=False),
        pa.field("row_index", pa.int64(), nullable=False),
        pa.field("enrollment_id", pa.string()),
        pa.field("reason_code", pa.string(), nullable=False),
        pa.field("detail", pa.string(), nullable=False),
        pa.field("rejected_at", UTC_TS, nullable=False),
    ]
)

# One template per (enrollment, model): a gallery never mixes models, and a model change
# re-embeds into new rows instead of overwriting. Delta has no fixed-size arrays, so the table
# stores a list; every row holds exactly the model's dimension (checked on write), and readers
# that need a matrix use ``dedup.contracts.vectors``.
TEMPLATES = pa.schema(
    [
        pa.field("enrollment_id", pa.string(), nullable=False),
        pa.field("batch_id", pa.string(), nullable=False),
        pa.field("model_id", pa.string(), nullable=False),
        pa.field("vector", pa.list_(pa.float32()), nullable=False),
        pa.field("created_at", UTC_TS, nullable=False),
    ]
)


class CandidateSource(StrEnum):
    """Where a candidate was found: the values of the ``source`` column of ``candidates``."""

    GALLERY = "gallery"  # 1:N: an enrolled person of the gallery
    BATCH = "batch"  # another probe of the same batch (two new enrollments of one person)


# What a search gives for a batch of probes: one row per (probe, candidate, source) at or above
# the review threshold, the probe and candidate being enrollment ids, source a
# ``CandidateSource``. Rank counts from 1 within the probe's list of that source.
CANDIDATES = pa.schema(
    [
        pa.field("probe_id", pa.string(), nullable=False),
        pa.field("candidate_id", pa.string(), nullable=False),
        pa.field("score", pa.float32(), nullable=False),
        pa.field("rank", pa.int32(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
    ]
)

# The match job's output table: the search's rows under the batch and model they came from.
CANDIDATES_TABLE = pa.schema(
    [
        pa.field("batch_id", pa.string(), nullable=False),
        pa.field("model_id", pa.string(), nullable=False),
        *CANDIDATES,
        pa.field("matched_at", UTC_TS, nullable=False),
    ]
)

TABLES: dict[str, pa.Schema] = {
    "enrollments": ENROLLMENTS,
    "faces": FACES,
    "rejects": REJECTS,
    "templates": TEMPLATES,
    "candidates": CANDIDATES_TABLE,
}

NATURAL_KEYS: dict[str, tuple[str, ...]] = {
    "enrollments": ("batch_id", "row_index"),
    "faces": ("enrollment_id",),
    "rejects": ("batch_id", "row_index"),
    "templates": ("enrollment_id", "model_id"),
    "candidates": ("batch_id", "model_id", "probe_id", "candidate_id", "source"),
}

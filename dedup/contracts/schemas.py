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


class OutcomeStatus(StrEnum):
    """What the registry reads per staged enrollment: the ``status`` column of ``outcomes``."""

    UNIQUE = "unique"  # searched, no candidate at the review threshold
    PENDING_REVIEW = "pending_review"  # has candidates; its case is not decided yet
    NOT_DUPLICATE = "not_duplicate"  # decided: no earlier enrollment is this person
    DUPLICATE = "duplicate"  # decided: the same person as ``duplicate_of``
    ESCALATED = "escalated"  # waiting for a supervisor
    ERASED = "erased"  # erased on request: only the status and the time remain


# The registry's answer per staged enrollment, in its latest state (the ``apply`` job rewrites
# it; its history is ``outcome_events``). ``duplicate_of`` is the earliest enrollment of the
# identity a duplicate joined; ``decided_by`` the adjudicators whose judgements decided it.
OUTCOME_FIELDS = [
    pa.field("enrollment_id", pa.string(), nullable=False),
    pa.field("batch_id", pa.string(), nullable=False),
    pa.field("status", pa.string(), nullable=False),
    pa.field("duplicate_of", pa.string()),
    pa.field("identity_id", pa.string()),
    pa.field("case_id", pa.string()),
    pa.field("decided_by", pa.list_(pa.string())),
    pa.field("decided_at", UTC_TS),
    pa.field("changed_at", UTC_TS, nullable=False),
]
# ``event_id``: the ``outcome_events`` row that recorded this state.
OUTCOMES = pa.schema([*OUTCOME_FIELDS, pa.field("event_id", pa.string())])

# Every state an enrollment's outcome has been in, insert-only: ``event_id`` is derived from
# the state and the event before it (``previous_event``), so a state is recorded once however
# often ``apply`` runs, and a return to an earlier state is a new event.
OUTCOME_EVENTS = pa.schema(
    [
        pa.field("event_id", pa.string(), nullable=False),
        pa.field("previous_event", pa.string()),
        *OUTCOME_FIELDS,
    ]
)

# Enrollment to identity (``dedup.matching.identities``), one row per staged enrollment that
# is not erased; ``since`` is when the enrollment came under this identity.
IDENTITIES = pa.schema(
    [
        pa.field("enrollment_id", pa.string(), nullable=False),
        pa.field("identity_id", pa.string(), nullable=False),
        pa.field("since", UTC_TS, nullable=False),
    ]
)

# The merges and splits of identities, insert-only; ``cause`` names the decision (``case:<id>
# @<revision>``) or erasure (``erasure:<enrollment>``) that made the change.
IDENTITY_EVENTS = pa.schema(
    [
        pa.field("event_id", pa.string(), nullable=False),
        pa.field("kind", pa.string(), nullable=False),  # merge | split | renamed
        pa.field("identity_id", pa.string(), nullable=False),
        pa.field("others", pa.list_(pa.string()), nullable=False),
        pa.field("cause", pa.string(), nullable=False),
        pa.field("at", UTC_TS, nullable=False),
    ]
)

# The confirmed duplicate links in force: the identities are the connected groups of these.
# ``apply`` rewrites it from the decisions; erasure removes an erased enrollment's links and
# bridges the members it joined (``cause`` ``erasure:<enrollment>``).
LINKS = pa.schema(
    [
        pa.field("link_id", pa.string(), nullable=False),
        pa.field("probe_id", pa.string(), nullable=False),
        pa.field("duplicate_of", pa.string(), nullable=False),
        pa.field("cause", pa.string(), nullable=False),
        pa.field("made_at", UTC_TS, nullable=False),
    ]
)

# One row per step of a night that finished its work (``dedup nightly`` resumes after the last
# one): its figures as a JSON object, and the hash of the settings it ran under.
BATCH_RUNS = pa.schema(
    [
        pa.field("batch_id", pa.string(), nullable=False),
        pa.field("step", pa.string(), nullable=False),
        pa.field("started_at", UTC_TS, nullable=False),
        pa.field("finished_at", UTC_TS, nullable=False),
        pa.field("figures", pa.string(), nullable=False),
        pa.field("settings_hash", pa.string(), nullable=False),
    ]
)

TABLES: dict[str, pa.Schema] = {
    "enrollments": ENROLLMENTS,
    "faces": FACES,
    "rejects": REJECTS,
    "templates": TEMPLATES,
    "candidates": CANDIDATES_TABLE,
    "outcomes": OUTCOMES,
    "outcome_events": OUTCOME_EVENTS,
    "identities": IDENTITIES,
    "identity_events": IDENTITY_EVENTS,
    "links": LINKS,
    "batch_runs": BATCH_RUNS,
}

# The tables the stage job (Spark) writes; the others are written by delta-rs jobs.
STAGE_TABLES = ("enrollments", "faces", "rejects")

NATURAL_KEYS: dict[str, tuple[str, ...]] = {
    "enrollments": ("batch_id", "row_index"),
    "faces": ("enrollment_id",),
    "rejects": ("batch_id", "row_index"),
    "templates": ("enrollment_id", "model_id"),
    "candidates": ("batch_id", "model_id", "probe_id", "candidate_id", "source"),
    "outcomes": ("enrollment_id",),
    "outcome_events": ("event_id",),
    "identities": ("enrollment_id",),
    "identity_events": ("event_id",),
    "links": ("link_id",),
    "batch_runs": ("batch_id", "step"),
}

"""The JSON shapes the review service accepts and returns (published in its OpenAPI document).

Import takes a batch's rows in the ``candidates`` table's shape plus, for every enrollment
they name, what an adjudicator needs to judge: display fields, capture metadata, quality
figures and the photo and aligned chip. Export returns the decision per enrollment: one row
per member of every case, each carrying its case's decision and revision.
"""

from __future__ import annotations

import base64
import binascii
import math
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from dedup.contracts.schemas import CandidateSource

EnrollmentId = Annotated[
    str, StringConstraints(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:\-]+$")
]
ShortText = Annotated[str, StringConstraints(max_length=200)]
FieldName = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[a-z_0-9]+$")]

IMAGE_KINDS = ("photo", "chip")
MAGIC = {"image/png": b"\x89PNG\r\n\x1a\n", "image/jpeg": b"\xff\xd8\xff"}
MAX_CANDIDATES_PER_IMPORT = 200_000
MAX_SUBJECTS_PER_IMPORT = 100_000


def _without_nul(value: Any) -> Any:
    """Refuse NUL anywhere in a text: PostgreSQL cannot store it, and no real field holds it."""
    if isinstance(value, str) and "\x00" in value:
        raise ValueError("text must not contain NUL characters")
    if isinstance(value, dict):
        for key, item in value.items():
            _without_nul(key)
            _without_nul(item)
    elif isinstance(value, list | tuple):
        for item in value:
            _without_nul(item)
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _no_nul(cls, data: Any) -> Any:
        return _without_nul(data)


class ImageIn(_Strict):
    media_type: Literal["image/png", "image/jpeg"]
    data_base64: str = Field(min_length=4)

    def data(self) -> bytes:
        """The image bytes; ``ValueError`` when they are not base64 or not the declared type."""
        try:
            raw = base64.b64decode(self.data_base64, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ValueError("image data is not valid base64") from exc
        if not raw.startswith(MAGIC[self.media_type]):
            raise ValueError(f"image data is not {self.media_type}")
        return raw


class SubjectIn(_Strict):
    enrollment_id: EnrollmentId
    batch_id: EnrollmentId | None = None
    captured_at: datetime | None = None
    center_id: Annotated[str, StringConstraints(max_length=128)] | None = None
    display: dict[FieldName, ShortText] = Field(default_factory=dict, max_length=32)
    quality: dict[FieldName, float] = Field(default_factory=dict, max_length=32)
    images: dict[Literal["photo", "chip"], ImageIn] = Field(default_factory=dict)

    @field_validator("quality")
    @classmethod
    def _finite(cls, value: dict[str, float]) -> dict[str, float]:
        if not all(math.isfinite(v) for v in value.values()):
            raise ValueError("quality figures must be finite numbers")
        return value

    @field_validator("captured_at")
    @classmethod
    def _zoned(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("captured_at needs a time zone (for example 2026-11-23T09:00:00Z)")
        return value


class CandidateIn(_Strict):
    probe_id: EnrollmentId
    candidate_id: EnrollmentId
    score: float = Field(ge=-1.0, le=1.0)
    rank: int = Field(ge=1, le=100_000)
    source: CandidateSource
    # The identity the candidate belongs to in the registry (None: its own), so the case
    # shows the captures of one person together.
    identity_id: EnrollmentId | None = None


class BatchImport(_Strict):
    model_id: Annotated[str, StringConstraints(min_length=1, max_length=128)]
    candidates: list[CandidateIn] = Field(max_length=MAX_CANDIDATES_PER_IMPORT)
    subjects: list[SubjectIn] = Field(default_factory=list, max_length=MAX_SUBJECTS_PER_IMPORT)


class ImportResult(_Strict):
    batch_id: str
    already_imported: bool
    cases_created: int  # one per group of probes that matched each other
    cases_skipped: int  # groups with a member already in a case
    catch_trials_seeded: int


class DecisionOut(_Strict):
    enrollment_id: str  # a member of the case: the case's decision is its decision
    batch_id: str
    case_id: str
    decision: Literal["duplicate", "not_duplicate"] | None  # None: not decided yet
    duplicate_of: str | None
    state: str
    decided_at: datetime | None
    decided_by: list[str]
    # How often a supervisor changed the decision: case_id@revision names this decision.
    revision: int


class DecisionsOut(_Strict):
    batch_id: str | None
    decided: int
    pending: int
    decisions: list[DecisionOut]


class JudgementIn(_Strict):
    lease_token: Annotated[str, StringConstraints(min_length=1, max_length=100)]
    outcome: Literal["duplicate", "not_duplicate", "cannot_decide"]
    duplicate_of: EnrollmentId | None = None
    reason: Annotated[str, StringConstraints(max_length=500)] | None = None


class SupervisionIn(_Strict):
    outcome: Literal["duplicate", "not_duplicate"]
    duplicate_of: EnrollmentId | None = None
    reason: Annotated[str, StringConstraints(max_length=500)] | None = None


class RevisionIn(_Strict):
    """A supervisor's change of a decision already made; the reason is required."""

    outcome: Literal["duplicate", "not_duplicate"]
    duplicate_of: EnrollmentId | None = None
    reason: Annotated[str, StringConstraints(min_length=1, max_length=500)]


class CandidateOut(_Strict):
    candidate_id: str
    rank: int
    source: CandidateSource
    score: float | None  # None while scores are hidden


class CaseOut(_Strict):
    case_id: str
    probe_id: str
    state: str
    lease_token: str | None
    lease_until: datetime | None
    scores_hidden: bool
    candidates: list[CandidateOut]


class QueueOut(_Strict):
    depth: dict[str, int]
    oldest_open_age_seconds: float | None


class ErasureIn(_Strict):
    """Why an enrollment is erased (the legal request it answers): kept in the audit log."""

    reason: Annotated[str, StringConstraints(min_length=1, max_length=500)]


class ErasureOut(_Strict):
    enrollment_id: str
    cases_removed: int
    candidate_rows_removed: int
    subject_removed: bool
    # What the lake and the gallery gave up, by place; None where the service has no eraser.
    records_removed: dict[str, int] | None = None
    identity_renamed_to: str | None = None
    nothing_left: bool = False


class LoginIn(_Strict):
    username: Annotated[str, StringConstraints(min_length=1, max_length=128)]
    password: Annotated[str, StringConstraints(min_length=1, max_length=1024)]
    totp: Annotated[str, StringConstraints(min_length=1, max_length=16)]


class UserIn(_Strict):
    username: Annotated[str, StringConstraints(min_length=1, max_length=128)]
    password: Annotated[str, StringConstraints(min_length=12, max_length=1024)]
    roles: list[Annotated[str, StringConstraints(max_length=32)]] = Field(
        min_length=1, max_length=5
    )
    display_name: Annotated[str, StringConstraints(max_length=200)] | None = None


class LoginOut(_Strict):
    username: str
    roles: list[str]
    csrf_token: str


class VerifyOut(_Strict):
    ok: bool
    entries: int
    first_bad_seq: int | None
    problem: str | None
    head_seq: int | None
    head_hash: str | None

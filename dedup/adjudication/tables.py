"""The review service's tables (SQLAlchemy 2), the one declaration the migrations must match.

Times are stored as UTC without a zone (SQLite has none) and read back as aware UTC.
Images live in their own table so that a case listing never loads pixels, and erasure of an
enrollment is one delete per table.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

ID = 128  # enrollment and user ids
HASH = 64  # hex sha256


class UtcDateTime(TypeDecorator[datetime]):
    """An aware UTC datetime, stored as naive UTC on every backend."""

    impl = DateTime(timezone=False)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("times written to the review database must carry a time zone")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC)


NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class User(Base):
    __tablename__ = "users"
    username: Mapped[str] = mapped_column(String(ID), primary_key=True)
    display_name: Mapped[str] = mapped_column(String(200))
    password_hash: Mapped[str] = mapped_column(String(200))
    totp_secret: Mapped[str] = mapped_column(String(64))
    # The time step of the last code accepted: a code is good once (no replay).
    totp_last_step: Mapped[int | None] = mapped_column(BigInteger)
    roles: Mapped[str] = mapped_column(String(200))  # comma-separated Role values
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    failed_logins: Mapped[int] = mapped_column(Integer, default=0)
    lockouts: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[datetime | None] = mapped_column(UtcDateTime)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)


class ApiToken(Base):
    """A bearer token for a service account (the pipeline importing and exporting)."""

    __tablename__ = "api_tokens"
    token_hash: Mapped[str] = mapped_column(String(HASH), primary_key=True)
    username: Mapped[str] = mapped_column(ForeignKey("users.username", ondelete="CASCADE"))
    label: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)


class WebSession(Base):
    __tablename__ = "web_sessions"
    token_hash: Mapped[str] = mapped_column(String(HASH), primary_key=True)
    username: Mapped[str] = mapped_column(
        ForeignKey("users.username", ondelete="CASCADE"), index=True
    )
    csrf_token: Mapped[str] = mapped_column(String(HASH))
    client: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    last_seen: Mapped[datetime] = mapped_column(UtcDateTime)


class Batch(Base):
    """One imported part of a batch (a large batch arrives in several requests)."""

    __tablename__ = "batches"
    batch_id: Mapped[str] = mapped_column(String(ID), primary_key=True)
    part: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    parts: Mapped[int] = mapped_column(Integer)
    model_id: Mapped[str] = mapped_column(String(ID))
    imported_at: Mapped[datetime] = mapped_column(UtcDateTime)
    imported_by: Mapped[str] = mapped_column(String(ID))
    cases: Mapped[int] = mapped_column(Integer)
    candidates: Mapped[int] = mapped_column(Integer)


class Subject(Base):
    """An enrollment as an adjudicator sees it: display fields, capture, quality figures."""

    __tablename__ = "subjects"
    enrollment_id: Mapped[str] = mapped_column(String(ID), primary_key=True)
    batch_id: Mapped[str | None] = mapped_column(String(ID))
    captured_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    center_id: Mapped[str | None] = mapped_column(String(ID))
    display: Mapped[str] = mapped_column(Text, default="{}")  # JSON object of short texts
    quality: Mapped[str] = mapped_column(Text, default="{}")  # JSON object of numbers


class SubjectImage(Base):
    __tablename__ = "subject_images"
    enrollment_id: Mapped[str] = mapped_column(
        ForeignKey("subjects.enrollment_id", ondelete="CASCADE"), primary_key=True
    )
    kind: Mapped[str] = mapped_column(String(16), primary_key=True)  # "photo" or "chip"
    media_type: Mapped[str] = mapped_column(String(40))
    data: Mapped[bytes] = mapped_column(LargeBinary)


class CaseRow(Base):
    __tablename__ = "cases"
    case_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    # probe_id for a real case (one per enrollment); "catch:<case_id>" for a catch trial.
    enqueue_key: Mapped[str] = mapped_column(String(ID + 8), unique=True)
    probe_id: Mapped[str] = mapped_column(String(ID), index=True)
    batch_id: Mapped[str] = mapped_column(String(ID), index=True)
    catch_pair_id: Mapped[int | None] = mapped_column(
        ForeignKey("catch_pairs.id", ondelete="CASCADE")
    )
    state: Mapped[str] = mapped_column(String(32))
    queue_pos: Mapped[int] = mapped_column(BigInteger)
    lease_holder: Mapped[str | None] = mapped_column(String(ID))
    lease_token: Mapped[str | None] = mapped_column(String(HASH))
    lease_until: Mapped[datetime | None] = mapped_column(UtcDateTime)
    lease_returns_to: Mapped[str | None] = mapped_column(String(32))
    first_adjudicator: Mapped[str | None] = mapped_column(String(ID))
    # The holder's judgement before scores were shown (automation-bias safeguard).
    blind_outcome: Mapped[str | None] = mapped_column(String(32))
    blind_duplicate_of: Mapped[str | None] = mapped_column(String(ID))
    version: Mapped[int] = mapped_column(Integer, default=0)
    # How often a supervisor changed the decision after it was made (0: never): a decision
    # is named ``case:<case_id>@<revision>`` where it is applied.
    revision: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    decided_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    # When the current lease was taken (None without one): a judgement's time per case.
    claimed_at: Mapped[datetime | None] = mapped_column(UtcDateTime)

    __table_args__ = (Index("ix_cases_state_queue_pos", "state", "queue_pos"),)


class CaseMember(Base):
    """The probes one case decides: a group of the batch's probes that matched each other
    (one member, the case's ``probe_id``, for a probe that matched only the gallery). An
    enrollment is a member of one real case at most."""

    __tablename__ = "case_members"
    case_id: Mapped[str] = mapped_column(
        ForeignKey("cases.case_id", ondelete="CASCADE"), primary_key=True
    )
    enrollment_id: Mapped[str] = mapped_column(String(ID), primary_key=True, index=True)


class CaseCandidate(Base):
    __tablename__ = "case_candidates"
    case_id: Mapped[str] = mapped_column(
        ForeignKey("cases.case_id", ondelete="CASCADE"), primary_key=True
    )
    candidate_id: Mapped[str] = mapped_column(String(ID), primary_key=True, index=True)
    score: Mapped[float] = mapped_column(Float)
    rank: Mapped[int] = mapped_column(Integer)
    source: Mapped[str] = mapped_column(String(16))
    # The identity the candidate belonged to when the case was opened (None: its own), so
    # the captures of one person are shown together.
    identity_id: Mapped[str | None] = mapped_column(String(ID))


class JudgementRow(Base):
    __tablename__ = "judgements"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    case_id: Mapped[str] = mapped_column(
        ForeignKey("cases.case_id", ondelete="CASCADE"), index=True
    )
    stage: Mapped[str] = mapped_column(String(16))  # first, second, supervisor
    adjudicator: Mapped[str] = mapped_column(String(ID))
    outcome: Mapped[str] = mapped_column(String(32))
    duplicate_of: Mapped[str | None] = mapped_column(String(ID))
    reason: Mapped[str | None] = mapped_column(String(500))
    blind_outcome: Mapped[str | None] = mapped_column(String(32))
    blind_duplicate_of: Mapped[str | None] = mapped_column(String(ID))
    at: Mapped[datetime] = mapped_column(UtcDateTime)
    claimed_at: Mapped[datetime | None] = mapped_column(UtcDateTime)  # the lease it was made under


class CatchPair(Base):
    """A decided case whose truth is known, replayed into the queue as a catch trial."""

    __tablename__ = "catch_pairs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    source_case_id: Mapped[str] = mapped_column(String(32), unique=True)
    probe_id: Mapped[str] = mapped_column(String(ID), index=True)
    truth_outcome: Mapped[str] = mapped_column(String(32))
    truth_duplicate_of: Mapped[str | None] = mapped_column(String(ID))
    created_by: Mapped[str] = mapped_column(String(ID))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    active: Mapped[bool] = mapped_column(Boolean, default=True)


class CatchSubject(Base):
    """A copy of a known pair's subject in one catch trial, under a fresh random id (its row
    in ``subjects``): an adjudicator who saw the real case cannot tell the trial by its ids.
    ``source_id`` maps it back, for accuracy, erasure and the audit log; never exported."""

    __tablename__ = "catch_subjects"
    subject_id: Mapped[str] = mapped_column(String(ID), primary_key=True)
    case_id: Mapped[str] = mapped_column(
        ForeignKey("cases.case_id", ondelete="CASCADE"), index=True
    )
    source_id: Mapped[str] = mapped_column(String(ID), index=True)


class ServiceSetting(Base):
    """Settings a supervisor changes at run time (the catch-trial rate)."""

    __tablename__ = "service_settings"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(String(200))


class AuditRow(Base):
    """An ``AuditEntry`` as stored: one column per field, in the entry's order (``audit_store``
    converts by ``audit_chain.ENTRY_FIELDS``; a test holds the two together)."""

    __tablename__ = "audit_log"
    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    at: Mapped[datetime] = mapped_column(UtcDateTime)
    actor: Mapped[str] = mapped_column(String(ID), index=True)
    role: Mapped[str] = mapped_column(String(100))
    action: Mapped[str] = mapped_column(String(64), index=True)
    target: Mapped[str] = mapped_column(String(300), index=True)
    client: Mapped[str] = mapped_column(String(100))
    outcome: Mapped[str] = mapped_column(String(16))
    details: Mapped[str] = mapped_column(Text)  # canonical JSON of short texts
    prev_hash: Mapped[str] = mapped_column(String(HASH))
    hash: Mapped[str] = mapped_column(String(HASH))


class AuditHead(Base):
    """One row: the newest entry's sequence and hash. Locking it orders concurrent appends."""

    __tablename__ = "audit_head"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    seq: Mapped[int] = mapped_column(BigInteger)
    hash: Mapped[str] = mapped_column(String(HASH))

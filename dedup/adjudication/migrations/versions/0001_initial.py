"""The first schema: review queue, subjects and images, users and sessions, the audit log.

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import dedup.adjudication.tables

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    head = op.create_table(
        "audit_head",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_head")),
    )
    # The head row exists before the first entry, so even the first appends lock one row
    # (seq -1 and the genesis hash: the chain is empty).
    op.bulk_insert(head, [{"id": 1, "seq": -1, "hash": "0" * 64}])
    op.create_table(
        "audit_log",
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("at", dedup.adjudication.tables.UtcDateTime(), nullable=False),
        sa.Column("actor", sa.String(length=128), nullable=False),
        sa.Column("role", sa.String(length=100), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("target", sa.String(length=300), nullable=False),
        sa.Column("client", sa.String(length=100), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("details", sa.Text(), nullable=False),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_audit_log")),
    )
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_audit_log_action"), ["action"], unique=False)
        batch_op.create_index(batch_op.f("ix_audit_log_actor"), ["actor"], unique=False)
        batch_op.create_index(batch_op.f("ix_audit_log_target"), ["target"], unique=False)

    op.create_table(
        "batches",
        sa.Column("batch_id", sa.String(length=128), nullable=False),
        sa.Column("part", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("parts", sa.Integer(), nullable=False),
        sa.Column("model_id", sa.String(length=128), nullable=False),
        sa.Column("imported_at", dedup.adjudication.tables.UtcDateTime(), nullable=False),
        sa.Column("imported_by", sa.String(length=128), nullable=False),
        sa.Column("cases", sa.Integer(), nullable=False),
        sa.Column("candidates", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("batch_id", "part", name=op.f("pk_batches")),
    )
    op.create_table(
        "catch_pairs",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("source_case_id", sa.String(length=32), nullable=False),
        sa.Column("probe_id", sa.String(length=128), nullable=False),
        sa.Column("truth_outcome", sa.String(length=32), nullable=False),
        sa.Column("truth_duplicate_of", sa.String(length=128), nullable=True),
        sa.Column("created_by", sa.String(length=128), nullable=False),
        sa.Column("created_at", dedup.adjudication.tables.UtcDateTime(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_catch_pairs")),
        sa.UniqueConstraint("source_case_id", name=op.f("uq_catch_pairs_source_case_id")),
    )
    with op.batch_alter_table("catch_pairs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_catch_pairs_probe_id"), ["probe_id"], unique=False)

    op.create_table(
        "service_settings",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("value", sa.String(length=200), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_service_settings")),
    )
    op.create_table(
        "subjects",
        sa.Column("enrollment_id", sa.String(length=128), nullable=False),
        sa.Column("batch_id", sa.String(length=128), nullable=True),
        sa.Column("captured_at", dedup.adjudication.tables.UtcDateTime(), nullable=True),
        sa.Column("center_id", sa.String(length=128), nullable=True),
        sa.Column("display", sa.Text(), nullable=False),
        sa.Column("quality", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("enrollment_id", name=op.f("pk_subjects")),
    )
    op.create_table(
        "users",
        sa.Column("username", sa.String(length=128), nullable=False),
        sa.Column("display_name", sa.String(length=200), nullable=False),
        sa.Column("password_hash", sa.String(length=200), nullable=False),
        sa.Column("totp_secret", sa.String(length=64), nullable=False),
        sa.Column("totp_last_step", sa.BigInteger(), nullable=True),
        sa.Column("roles", sa.String(length=200), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("failed_logins", sa.Integer(), nullable=False),
        sa.Column("lockouts", sa.Integer(), nullable=False),
        sa.Column("locked_until", dedup.adjudication.tables.UtcDateTime(), nullable=True),
        sa.Column("created_at", dedup.adjudication.tables.UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("username", name=op.f("pk_users")),
    )
    op.create_table(
        "api_tokens",
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("username", sa.String(length=128), nullable=False),
        sa.Column("label", sa.String(length=200), nullable=False),
        sa.Column("created_at", dedup.adjudication.tables.UtcDateTime(), nullable=False),
        sa.Column("revoked", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["username"],
            ["users.username"],
            name=op.f("fk_api_tokens_username_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("token_hash", name=op.f("pk_api_tokens")),
    )
    op.create_table(
        "cases",
        sa.Column("case_id", sa.String(length=32), nullable=False),
        sa.Column("enqueue_key", sa.String(length=136), nullable=False),
        sa.Column("probe_id", sa.String(length=128), nullable=False),
        sa.Column("batch_id", sa.String(length=128), nullable=False),
        sa.Column("catch_pair_id", sa.Integer(), nullable=True),
        sa.Column("state", sa.String(length=32), nullable=False),
        sa.Column("queue_pos", sa.BigInteger(), nullable=False),
        sa.Column("lease_holder", sa.String(length=128), nullable=True),
        sa.Column("lease_token", sa.String(length=64), nullable=True),
        sa.Column("lease_until", dedup.adjudication.tables.UtcDateTime(), nullable=True),
        sa.Column("lease_returns_to", sa.String(length=32), nullable=True),
        sa.Column("first_adjudicator", sa.String(length=128), nullable=True),
        sa.Column("blind_outcome", sa.String(length=32), nullable=True),
        sa.Column("blind_duplicate_of", sa.String(length=128), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", dedup.adjudication.tables.UtcDateTime(), nullable=False),
        sa.Column("decided_at", dedup.adjudication.tables.UtcDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["catch_pair_id"],
            ["catch_pairs.id"],
            name=op.f("fk_cases_catch_pair_id_catch_pairs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("case_id", name=op.f("pk_cases")),
        sa.UniqueConstraint("enqueue_key", name=op.f("uq_cases_enqueue_key")),
    )
    with op.batch_alter_table("cases", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_cases_batch_id"), ["batch_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_cases_probe_id"), ["probe_id"], unique=False)
        batch_op.create_index("ix_cases_state_queue_pos", ["state", "queue_pos"], unique=False)

    op.create_table(
        "subject_images",
        sa.Column("enrollment_id", sa.String(length=128), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("media_type", sa.String(length=40), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["enrollment_id"],
            ["subjects.enrollment_id"],
            name=op.f("fk_subject_images_enrollment_id_subjects"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("enrollment_id", "kind", name=op.f("pk_subject_images")),
    )
    op.create_table(
        "web_sessions",
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("username", sa.String(length=128), nullable=False),
        sa.Column("csrf_token", sa.String(length=64), nullable=False),
        sa.Column("client", sa.String(length=100), nullable=False),
        sa.Column("created_at", dedup.adjudication.tables.UtcDateTime(), nullable=False),
        sa.Column("last_seen", dedup.adjudication.tables.UtcDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["username"],
            ["users.username"],
            name=op.f("fk_web_sessions_username_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("token_hash", name=op.f("pk_web_sessions")),
    )
    with op.batch_alter_table("web_sessions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_web_sessions_username"), ["username"], unique=False)

    op.create_table(
        "case_candidates",
        sa.Column("case_id", sa.String(length=32), nullable=False),
        sa.Column("candidate_id", sa.String(length=128), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("rank", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.ForeignKeyConstraint(
            ["case_id"],
            ["cases.case_id"],
            name=op.f("fk_case_candidates_case_id_cases"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("case_id", "candidate_id", name=op.f("pk_case_candidates")),
    )
    with op.batch_alter_table("case_candidates", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_case_candidates_candidate_id"), ["candidate_id"], unique=False
        )

    op.create_table(
        "judgements",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("case_id", sa.String(length=32), nullable=False),
        sa.Column("stage", sa.String(length=16), nullable=False),
        sa.Column("adjudicator", sa.String(length=128), nullable=False),
        sa.Column("outcome", sa.String(length=32), nullable=False),
        sa.Column("duplicate_of", sa.String(length=128), nullable=True),
        sa.Column("reason", sa.String(length=500), nullable=True),
        sa.Column("blind_outcome", sa.String(length=32), nullable=True),
        sa.Column("blind_duplicate_of", sa.String(length=128), nullable=True),
        sa.Column("at", dedup.adjudication.tables.UtcDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["case_id"],
            ["cases.case_id"],
            name=op.f("fk_judgements_case_id_cases"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_judgements")),
    )
    with op.batch_alter_table("judgements", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_judgements_case_id"), ["case_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("judgements", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_judgements_case_id"))

    op.drop_table("judgements")
    with op.batch_alter_table("case_candidates", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_case_candidates_candidate_id"))

    op.drop_table("case_candidates")
    with op.batch_alter_table("web_sessions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_web_sessions_username"))

    op.drop_table("web_sessions")
    op.drop_table("subject_images")
    with op.batch_alter_table("cases", schema=None) as batch_op:
        batch_op.drop_index("ix_cases_state_queue_pos")
        batch_op.drop_index(batch_op.f("ix_cases_probe_id"))
        batch_op.drop_index(batch_op.f("ix_cases_batch_id"))

    op.drop_table("cases")
    op.drop_table("api_tokens")
    op.drop_table("users")
    op.drop_table("subjects")
    op.drop_table("service_settings")
    with op.batch_alter_table("catch_pairs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_catch_pairs_probe_id"))

    op.drop_table("catch_pairs")
    op.drop_table("batches")
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_audit_log_target"))
        batch_op.drop_index(batch_op.f("ix_audit_log_actor"))
        batch_op.drop_index(batch_op.f("ix_audit_log_action"))

    op.drop_table("audit_log")
    op.drop_table("audit_head")

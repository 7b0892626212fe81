"""Catch trials show copies of their subjects under fresh ids; judgements keep their claim time.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import dedup.adjudication.tables

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "catch_subjects",
        sa.Column("subject_id", sa.String(length=128), nullable=False),
        sa.Column("case_id", sa.String(length=32), nullable=False),
        sa.Column("source_id", sa.String(length=128), nullable=False),
        sa.ForeignKeyConstraint(
            ["case_id"],
            ["cases.case_id"],
            name=op.f("fk_catch_subjects_case_id_cases"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("subject_id", name=op.f("pk_catch_subjects")),
    )
    with op.batch_alter_table("catch_subjects", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_catch_subjects_case_id"), ["case_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_catch_subjects_source_id"), ["source_id"], unique=False
        )
    with op.batch_alter_table("cases", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("claimed_at", dedup.adjudication.tables.UtcDateTime(), nullable=True)
        )
    with op.batch_alter_table("judgements", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("claimed_at", dedup.adjudication.tables.UtcDateTime(), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("judgements", schema=None) as batch_op:
        batch_op.drop_column("claimed_at")
    with op.batch_alter_table("cases", schema=None) as batch_op:
        batch_op.drop_column("claimed_at")
    with op.batch_alter_table("catch_subjects", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_catch_subjects_source_id"))
        batch_op.drop_index(batch_op.f("ix_catch_subjects_case_id"))
    op.drop_table("catch_subjects")

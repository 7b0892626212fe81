"""Cases decide groups of probes, candidates carry their identity, decisions can be revised.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "case_members",
        sa.Column("case_id", sa.String(length=32), nullable=False),
        sa.Column("enrollment_id", sa.String(length=128), nullable=False),
        sa.ForeignKeyConstraint(
            ["case_id"],
            ["cases.case_id"],
            name=op.f("fk_case_members_case_id_cases"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("case_id", "enrollment_id", name=op.f("pk_case_members")),
    )
    with op.batch_alter_table("case_members", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_case_members_enrollment_id"), ["enrollment_id"], unique=False
        )
    # Every case so far decided one probe: that probe is its one member.
    op.execute(
        "INSERT INTO case_members (case_id, enrollment_id) "
        "SELECT case_id, probe_id FROM cases WHERE catch_pair_id IS NULL"
    )
    with op.batch_alter_table("cases", schema=None) as batch_op:
        batch_op.add_column(sa.Column("revision", sa.Integer(), server_default="0", nullable=False))
    with op.batch_alter_table("case_candidates", schema=None) as batch_op:
        batch_op.add_column(sa.Column("identity_id", sa.String(length=128), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("case_candidates", schema=None) as batch_op:
        batch_op.drop_column("identity_id")
    with op.batch_alter_table("cases", schema=None) as batch_op:
        batch_op.drop_column("revision")
    with op.batch_alter_table("case_members", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_case_members_enrollment_id"))
    op.drop_table("case_members")

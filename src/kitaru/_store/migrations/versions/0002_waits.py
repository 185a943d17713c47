"""Waits: pending and answered human-in-the-loop inputs.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
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
        "kitaru_waits",
        sa.Column("exec_id", sa.String(36), primary_key=True),
        sa.Column("wait_id", sa.String(255), primary_key=True),
        sa.Column("name", sa.String(255), nullable=True),
        sa.Column("question", sa.Text, nullable=True),
        sa.Column("json_schema", sa.JSON, nullable=True),
        sa.Column("schema_pickle", sa.LargeBinary, nullable=True),
        sa.Column("metadata", sa.JSON, nullable=False),
        sa.Column("timeout", sa.Float, nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("value", sa.JSON, nullable=True),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("answered_at", sa.Float, nullable=True),
    )
    op.create_index("ix_kitaru_waits_status", "kitaru_waits", ["status"])


def downgrade() -> None:
    op.drop_table("kitaru_waits")

"""Captured logs: printed output and logging records of flow bodies and checkpoints.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "kitaru_logs",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("exec_id", sa.String(36), nullable=False),
        sa.Column("call_id", sa.String(512), nullable=True),
        sa.Column("checkpoint", sa.String(255), nullable=True),
        sa.Column("ts", sa.Float, nullable=False),
        sa.Column("stream", sa.String(16), nullable=False),
        sa.Column("level", sa.String(16), nullable=True),
        sa.Column("logger", sa.String(255), nullable=True),
        sa.Column("message", sa.Text, nullable=False),
    )
    op.create_index("ix_kitaru_logs_exec", "kitaru_logs", ["exec_id", "id"])


def downgrade() -> None:
    op.drop_table("kitaru_logs")

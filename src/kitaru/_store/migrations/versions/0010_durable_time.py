"""Durable time and composition: sleeps, child flows, idempotent starts, schedules.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("kitaru_executions") as batch:
        batch.add_column(sa.Column("parent_exec_id", sa.String(36), nullable=True))
        batch.add_column(sa.Column("idempotency_key", sa.String(255), nullable=True))
        batch.add_column(sa.Column("schedule_name", sa.String(255), nullable=True))
        batch.add_column(sa.Column("schedule_slot", sa.Float, nullable=True))
    op.create_index("ix_kitaru_executions_parent", "kitaru_executions", ["parent_exec_id"])
    op.create_index(
        "ix_kitaru_executions_schedule", "kitaru_executions", ["schedule_name", "schedule_slot"]
    )
    op.create_table(
        "kitaru_suspensions",
        sa.Column("exec_id", sa.String(36), primary_key=True),
        sa.Column("suspension_id", sa.String(255), primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("name", sa.String(255), nullable=True),
        sa.Column("wake_at", sa.Float, nullable=True),
        sa.Column("child_exec_id", sa.String(36), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("ended_at", sa.Float, nullable=True),
    )
    op.create_index(
        "ix_kitaru_suspensions_sleeping",
        "kitaru_suspensions",
        ["wake_at"],
        sqlite_where=sa.text("status = 'pending' AND kind = 'sleep'"),
        postgresql_where=sa.text("status = 'pending' AND kind = 'sleep'"),
    )
    op.create_table(
        "kitaru_schedules",
        sa.Column("name", sa.String(255), primary_key=True),
        sa.Column("flow_name", sa.String(255), nullable=False),
        sa.Column("flow_ref", sa.JSON, nullable=False),
        sa.Column("cron", sa.String(255), nullable=False),
        sa.Column("timezone", sa.String(64), nullable=False),
        sa.Column("inputs", sa.JSON, nullable=False),
        sa.Column("stack", sa.String(255), nullable=True),
        sa.Column("missed", sa.String(16), nullable=False),
        sa.Column("paused", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("cursor", sa.Float, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_table(
        "kitaru_schedule_fires",
        sa.Column("schedule_name", sa.String(255), primary_key=True),
        sa.Column("slot", sa.Float, primary_key=True, autoincrement=False),
        sa.Column("exec_id", sa.String(36), nullable=False),
        sa.Column("claimed_by", sa.String(64), nullable=False),
        sa.Column("claimed_at", sa.Float, nullable=False),
        sa.Column("started_at", sa.Float, nullable=True),
    )
    op.create_index(
        "ix_kitaru_schedule_fires_unstarted",
        "kitaru_schedule_fires",
        ["claimed_at"],
        sqlite_where=sa.text("started_at IS NULL"),
        postgresql_where=sa.text("started_at IS NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_kitaru_schedule_fires_unstarted", "kitaru_schedule_fires")
    op.drop_table("kitaru_schedule_fires")
    op.drop_table("kitaru_schedules")
    op.drop_index("ix_kitaru_suspensions_sleeping", "kitaru_suspensions")
    op.drop_table("kitaru_suspensions")
    op.drop_index("ix_kitaru_executions_schedule", "kitaru_executions")
    op.drop_index("ix_kitaru_executions_parent", "kitaru_executions")
    with op.batch_alter_table("kitaru_executions") as batch:
        batch.drop_column("schedule_slot")
        batch.drop_column("schedule_name")
        batch.drop_column("idempotency_key")
        batch.drop_column("parent_exec_id")

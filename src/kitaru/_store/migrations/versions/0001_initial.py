"""Initial schema: executions, checkpoint calls and attempts, artifacts.

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "kitaru_executions",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("flow_name", sa.String(255), nullable=False),
        sa.Column("flow_ref", sa.JSON, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("stack", sa.String(255), nullable=False),
        sa.Column("config", sa.JSON, nullable=False),
        sa.Column("inputs_artifact_id", sa.String(36), nullable=True),
        sa.Column("result_artifact_id", sa.String(36), nullable=True),
        sa.Column("failure", sa.JSON, nullable=True),
        sa.Column("metadata", sa.JSON, nullable=False),
        sa.Column("original_exec_id", sa.String(36), nullable=True),
        sa.Column("replay_plan", sa.JSON, nullable=True),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("started_at", sa.Float, nullable=True),
        sa.Column("ended_at", sa.Float, nullable=True),
        sa.Column("run_count", sa.Integer, nullable=False, server_default="0"),
        sa.Column("lease_owner", sa.String(64), nullable=True),
        sa.Column("lease_expires_at", sa.Float, nullable=True),
        sa.Column("fence", sa.Integer, nullable=False, server_default="0"),
    )
    op.create_index(
        "ix_kitaru_executions_flow_created", "kitaru_executions", ["flow_name", "created_at"]
    )
    op.create_index("ix_kitaru_executions_status", "kitaru_executions", ["status"])

    op.create_table(
        "kitaru_checkpoint_calls",
        sa.Column("exec_id", sa.String(36), primary_key=True),
        sa.Column("call_id", sa.String(512), primary_key=True),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("type", sa.String(64), nullable=True),
        sa.Column("runtime", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("artifact_id", sa.String(36), nullable=True),
        sa.Column("cache_key", sa.String(255), nullable=True),
        sa.Column("source_exec_id", sa.String(36), nullable=True),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("metadata", sa.JSON, nullable=False),
        sa.Column("error", sa.JSON, nullable=True),
        sa.Column("started_at", sa.Float, nullable=True),
        sa.Column("ended_at", sa.Float, nullable=True),
    )
    op.create_index(
        "ix_kitaru_checkpoint_calls_cache_key", "kitaru_checkpoint_calls", ["cache_key"]
    )

    op.create_table(
        "kitaru_checkpoint_attempts",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("exec_id", sa.String(36), nullable=False),
        sa.Column("call_id", sa.String(512), nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("run", sa.Integer, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("started_at", sa.Float, nullable=False),
        sa.Column("ended_at", sa.Float, nullable=True),
        sa.Column("exception_type", sa.String(255), nullable=True),
        sa.Column("message", sa.Text, nullable=True),
        sa.Column("traceback", sa.Text, nullable=True),
    )
    op.create_index(
        "ix_kitaru_checkpoint_attempts_call",
        "kitaru_checkpoint_attempts",
        ["exec_id", "call_id"],
    )

    op.create_table(
        "kitaru_artifacts",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("exec_id", sa.String(36), nullable=True),
        sa.Column("call_id", sa.String(512), nullable=True),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("type", sa.String(32), nullable=True),
        sa.Column("serializer", sa.String(32), nullable=False),
        sa.Column("type_path", sa.String(512), nullable=True),
        sa.Column("size", sa.Integer, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("inline_data", sa.LargeBinary, nullable=True),
        sa.Column("uri", sa.String(1024), nullable=True),
        sa.Column("tags", sa.JSON, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_index("ix_kitaru_artifacts_exec", "kitaru_artifacts", ["exec_id", "name"])
    op.create_index("ix_kitaru_artifacts_sha256", "kitaru_artifacts", ["sha256"])


def downgrade() -> None:
    op.drop_table("kitaru_artifacts")
    op.drop_table("kitaru_checkpoint_attempts")
    op.drop_table("kitaru_checkpoint_calls")
    op.drop_table("kitaru_executions")

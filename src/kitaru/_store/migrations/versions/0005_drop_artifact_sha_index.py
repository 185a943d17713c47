"""Drop the unused index on artifact hashes: one B-tree less to update per checkpoint.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_kitaru_artifacts_sha256", table_name="kitaru_artifacts")


def downgrade() -> None:
    op.create_index("ix_kitaru_artifacts_sha256", "kitaru_artifacts", ["sha256"])

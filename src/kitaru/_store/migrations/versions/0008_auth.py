"""Service accounts and API keys of the Kitaru server.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "kitaru_service_accounts",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("name", sa.String(255), nullable=False, unique=True),
        sa.Column("description", sa.Text, nullable=True),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_table(
        "kitaru_api_keys",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("account_id", sa.String(36), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("access", sa.String(16), nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("rotated_at", sa.Float, nullable=True),
        sa.Column("last_used_at", sa.Float, nullable=True),
        sa.UniqueConstraint("account_id", "name", name="uq_kitaru_api_keys_account_name"),
    )
    op.create_index("ix_kitaru_api_keys_account", "kitaru_api_keys", ["account_id"])


def downgrade() -> None:
    op.drop_index("ix_kitaru_api_keys_account", "kitaru_api_keys")
    op.drop_table("kitaru_api_keys")
    op.drop_table("kitaru_service_accounts")

"""Mark checkpoint calls made concurrently (.submit(), async), which may finish out of order.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("kitaru_checkpoint_calls") as batch:
        batch.add_column(
            sa.Column("concurrent", sa.Boolean, nullable=False, server_default=sa.false())
        )


def downgrade() -> None:
    with op.batch_alter_table("kitaru_checkpoint_calls") as batch:
        batch.drop_column("concurrent")

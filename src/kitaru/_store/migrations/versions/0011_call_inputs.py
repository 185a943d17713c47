"""A checkpoint call's inputs, kept in its call row (``kitaru._store.call_inputs``).

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable and without a default: existing rows stay as they are (no rewrite),
    # and a call without arguments stores nothing.
    with op.batch_alter_table("kitaru_checkpoint_calls") as batch:
        batch.add_column(sa.Column("inputs", sa.Text, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("kitaru_checkpoint_calls") as batch:
        batch.drop_column("inputs")

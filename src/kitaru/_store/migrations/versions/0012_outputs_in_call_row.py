"""Small checkpoint outputs kept in their call row (``kitaru._store.call_outputs``).

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable, no default: existing rows are not rewritten; their outputs stay
    # artifact rows, which every reader still understands.
    with op.batch_alter_table("kitaru_checkpoint_calls") as batch:
        batch.add_column(sa.Column("output_serializer", sa.String(32), nullable=True))
        batch.add_column(sa.Column("output_type_path", sa.String(512), nullable=True))
        batch.add_column(sa.Column("output_data", sa.LargeBinary, nullable=True))
        batch.add_column(sa.Column("output_crc32", sa.BigInteger, nullable=True))
    if op.get_bind().dialect.name == "postgresql":
        # In-row output ids (``<exec_id>:out:<seq>``) are longer than a uuid. Widening
        # a VARCHAR is a catalog change on PostgreSQL (no table rewrite); SQLite does
        # not enforce lengths, and altering a column there would rebuild the table.
        op.alter_column(
            "kitaru_checkpoint_calls",
            "artifact_id",
            type_=sa.String(64),
            existing_type=sa.String(36),
            existing_nullable=True,
        )
        op.alter_column(
            "kitaru_artifacts",
            "id",
            type_=sa.String(64),
            existing_type=sa.String(36),
            existing_nullable=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("kitaru_checkpoint_calls") as batch:
        batch.drop_column("output_crc32")
        batch.drop_column("output_data")
        batch.drop_column("output_type_path")
        batch.drop_column("output_serializer")

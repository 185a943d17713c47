"""A call completed on its first attempt keeps that attempt in its own row (``run``),
and only calls with a cache key are in the cache-key index.

Both cut what one checkpoint writes: no attempt row (and its index entry) in the
common case, no index entry for calls that are never looked up by key.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_INDEX = "ix_kitaru_checkpoint_calls_cache_key"
_TABLE = "kitaru_checkpoint_calls"


def upgrade() -> None:
    op.add_column(_TABLE, sa.Column("run", sa.Integer, nullable=True))
    op.drop_index(_INDEX, table_name=_TABLE)
    op.create_index(
        _INDEX,
        _TABLE,
        ["cache_key"],
        sqlite_where=sa.text("cache_key IS NOT NULL"),
        postgresql_where=sa.text("cache_key IS NOT NULL"),
    )


def downgrade() -> None:
    # Attempts kept in call rows become attempt rows again before the column goes.
    op.execute(
        "INSERT INTO kitaru_checkpoint_attempts "
        "(exec_id, call_id, attempt, run, status, started_at, ended_at) "
        f"SELECT exec_id, call_id, 1, run, status, started_at, ended_at FROM {_TABLE} "
        "WHERE run IS NOT NULL"
    )
    op.drop_index(_INDEX, table_name=_TABLE)
    op.create_index(_INDEX, _TABLE, ["cache_key"])
    with op.batch_alter_table(_TABLE) as batch:
        batch.drop_column("run")

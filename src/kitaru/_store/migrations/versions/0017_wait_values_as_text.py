"""Wait answers keep their exact JSON on SQLite (``kitaru_waits.value`` as ``JSON_TEXT``).

A ``JSON`` column has NUMERIC affinity on SQLite: an answer that is a bare integer
beyond 64 bits was stored as a lossy REAL, and the flow received a float its schema
refused. The column is rebuilt with text affinity (``schema.JSONText``); stored values
are copied as they are. PostgreSQL is unchanged.

Revision ID: 0017
Revises: 0016
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.ext.compiler import compiles

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


class _JSONText(sa.JSON):
    """As ``schema.JSONText`` at this revision (a migration keeps its own copy)."""

    cache_ok = True


@compiles(_JSONText, "sqlite")
def _json_text_on_sqlite(type_: _JSONText, compiler: object, **kw: object) -> str:
    return "JSON_TEXT"


def upgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    with op.batch_alter_table("kitaru_waits", recreate="always") as batch:
        batch.alter_column("value", type_=_JSONText(), existing_nullable=True)


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    with op.batch_alter_table("kitaru_waits", recreate="always") as batch:
        batch.alter_column("value", type_=sa.JSON(), existing_nullable=True)

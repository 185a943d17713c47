"""Flow-level retries used, kept in the execution's row.

A flow's ``retries`` budget used to be a local variable of its runner: a runner killed
during the flow's backoff left an execution whose resume started the budget over.
``flow_retries`` counts the retries used; it is written before each backoff and set
back to 0 when the execution ends for good (so a user's retry starts a new budget).

Revision ID: 0016
Revises: 0015
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("kitaru_executions") as batch:
        batch.add_column(sa.Column("flow_retries", sa.Integer, nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("kitaru_executions") as batch:
        batch.drop_column("flow_retries")

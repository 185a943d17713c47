"""Tables of durable time (migration 0010): sleeps and child joins, schedules, fired slots.

Kept apart from ``schema.py``: they are read by the worker's polling loop, not
on the checkpoint hot path.
"""

from __future__ import annotations

import sqlalchemy as sa

from kitaru._store.schema import metadata

suspensions = sa.Table(
    "kitaru_suspensions",
    metadata,
    sa.Column("exec_id", sa.String(36), primary_key=True),
    # The sleep's name, or sleep / sleep:2 / ...; ``join:<child id>`` for a child wait.
    sa.Column("suspension_id", sa.String(255), primary_key=True),
    # sleep | child
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("name", sa.String(255), nullable=True),
    # When a sleep ends: recorded the first time the body reaches it, never moved.
    sa.Column("wake_at", sa.Float, nullable=True),
    # For a child join: the child execution the parent waits for.
    sa.Column("child_exec_id", sa.String(36), nullable=True),
    # pending | done
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("ended_at", sa.Float, nullable=True),
    # The worker's alarm (the earliest pending sleep). Partial, so that the planner
    # never prefers it to the primary key for one execution's suspensions.
    sa.Index(
        "ix_kitaru_suspensions_sleeping",
        "wake_at",
        sqlite_where=sa.text("status = 'pending' AND kind = 'sleep'"),
        postgresql_where=sa.text("status = 'pending' AND kind = 'sleep'"),
    ),
)

schedules = sa.Table(
    "kitaru_schedules",
    metadata,
    sa.Column("name", sa.String(255), primary_key=True),
    sa.Column("flow_name", sa.String(255), nullable=False),
    # Where the flow's code lives (as on executions): the worker imports it from there.
    sa.Column("flow_ref", sa.JSON, nullable=False),
    sa.Column("cron", sa.String(255), nullable=False),
    sa.Column("timezone", sa.String(64), nullable=False),
    # Keyword inputs of every execution it starts (JSON).
    sa.Column("inputs", sa.JSON, nullable=False),
    sa.Column("stack", sa.String(255), nullable=True),
    # skip | run_once: what to do with slots that passed while no worker ran.
    sa.Column("missed", sa.String(16), nullable=False),
    sa.Column("paused", sa.Boolean, nullable=False, server_default=sa.false()),
    # Slots up to this time (epoch seconds) have been handled (fired or skipped).
    sa.Column("cursor", sa.Float, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
)

schedule_fires = sa.Table(
    "kitaru_schedule_fires",
    metadata,
    # The primary key is the claim: one row, so one execution, per schedule and slot.
    sa.Column("schedule_name", sa.String(255), primary_key=True),
    sa.Column("slot", sa.Float, primary_key=True, autoincrement=False),
    sa.Column("exec_id", sa.String(36), nullable=False),
    # Which worker claimed it (its runner id).
    sa.Column("claimed_by", sa.String(64), nullable=False),
    sa.Column("claimed_at", sa.Float, nullable=False),
    # Set once the slot's execution exists: a claim left without it (the claiming worker
    # died in between) is started by another worker (the execution id is derived, so a
    # repeated start finds the same execution).
    sa.Column("started_at", sa.Float, nullable=True),
    sa.Index(
        "ix_kitaru_schedule_fires_unstarted",
        "claimed_at",
        sqlite_where=sa.text("started_at IS NULL"),
        postgresql_where=sa.text("started_at IS NULL"),
    ),
)

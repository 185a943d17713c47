"""Shorter rows for every checkpoint: no schema change.

- A checkpoint run that published nothing between its started and returned events
  stores both as one ``kitaru_events`` row (``kitaru._store._event_codes``).
- Cache keys are stored in 32 characters instead of 97 (``kitaru._store.cache_keys``);
  keys stored before still hit.

The tables are unchanged; the revision marks the new row forms, so a Kitaru from
before it refuses this store instead of misreading those rows (or missing the cache).

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-29
"""

from __future__ import annotations

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Nothing to change: existing rows keep their form and read as before."""


def downgrade() -> None:
    """Nothing to undo in the tables. Rows written since keep their form: an older
    Kitaru reads a pair row as one event of an unknown kind, and misses short keys."""

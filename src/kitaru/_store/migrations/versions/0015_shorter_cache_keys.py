"""Cache keys in 21 characters instead of 32; the revision that marks event runs.

- A stored cache key is the first 21 base64url characters of its SHA-256 (126 bits,
  ``kitaru._store.cache_keys``). The 32-character keys of 0013 begin with exactly
  those 21 characters, so cutting them keeps every cache entry hitting. The key is in
  each cached call's row and in the cache-key index: 22 bytes less per checkpoint.
- Consecutive quiet checkpoint runs are stored as one ``kitaru_events`` row
  (``kitaru._store._event_codes``: an event run). The existing rows read as before;
  this revision makes a Kitaru from before it refuse the store instead of misreading
  those rows.

Revision ID: 0015
Revises: 0014
Create Date: 2026-11-30
"""

from __future__ import annotations

from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

#: The stored key's length at this revision (``cache_keys.SHORT_LENGTH``).
_SHORT = 21


def upgrade() -> None:
    # substr and length mean the same in SQLite and PostgreSQL (characters).
    op.execute(
        f"UPDATE kitaru_checkpoint_calls SET cache_key = substr(cache_key, 1, {_SHORT}) "
        f"WHERE cache_key IS NOT NULL AND length(cache_key) = 32 "
        "AND cache_key NOT LIKE '%:%'"
    )


def downgrade() -> None:
    """The tables are unchanged. Keys stay short (an older Kitaru misses those cache
    entries once); event runs read as events of an unknown kind."""

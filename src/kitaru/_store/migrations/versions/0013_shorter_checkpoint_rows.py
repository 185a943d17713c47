"""Shorter rows for every checkpoint; the cache keys stored so far, converted.

- A checkpoint run that published nothing between its started and returned events
  stores both as one ``kitaru_events`` row (``kitaru._store._event_codes``); the
  existing rows keep their form and read as before.
- Cache keys are stored in 32 characters instead of 97 (``kitaru._store.cache_keys``).
  The keys stored before are converted here, so they still hit.

The revision also marks the new row forms: a Kitaru from before it refuses this
store instead of misreading those rows.

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-29
"""

from __future__ import annotations

import base64
import hashlib

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def _short(key: str | None) -> str | None:
    """The stored form of a cache key at this revision (as ``cache_keys.stored``)."""
    if key is None or ":" not in key:
        return key
    digest = hashlib.sha256(key.encode("utf-8")).digest()[:24]
    return base64.urlsafe_b64encode(digest).decode("ascii")


def upgrade() -> None:
    conn = op.get_bind()
    long_keys = "WHERE cache_key IS NOT NULL AND cache_key LIKE '%:%'"
    if conn.dialect.name == "postgresql":
        # In SQL: 24 bytes of SHA-256 as base64 are 32 characters (no padding, no line
        # break), made URL-safe like Python's urlsafe_b64encode.
        op.execute(
            "UPDATE kitaru_checkpoint_calls SET cache_key = translate(encode(substring("
            "sha256(convert_to(cache_key, 'UTF8')) from 1 for 24), 'base64'), '+/', '-_') "
            + long_keys
        )
        return
    # SQLite has no SHA-256 in SQL: the same function, lent to this connection.
    driver = conn.connection.driver_connection
    assert driver is not None  # an open connection
    driver.create_function("kitaru_short_cache_key", 1, _short, deterministic=True)
    op.execute(
        "UPDATE kitaru_checkpoint_calls SET cache_key = kitaru_short_cache_key(cache_key) "
        + long_keys
    )


def downgrade() -> None:
    """The tables are unchanged. Keys stay short (a hash is not reversed): an older
    Kitaru misses those cache entries once; pair rows read as events of an unknown kind."""

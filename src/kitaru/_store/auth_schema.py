"""Tables of the server's service accounts and API keys (migration 0008).

Kept apart from ``schema.py``: the server's auth data has nothing to do with
the execution tables. Only a SHA-256 hash of each API key is stored.
"""

from __future__ import annotations

import sqlalchemy as sa

from kitaru._store.schema import metadata

service_accounts = sa.Table(
    "kitaru_service_accounts",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("name", sa.String(255), nullable=False, unique=True),
    sa.Column("description", sa.Text, nullable=True),
    sa.Column("created_at", sa.Float, nullable=False),
)

api_keys = sa.Table(
    "kitaru_api_keys",
    metadata,
    # Also the public part of the raw key (``kt_<id>_<secret>``): the lookup handle.
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("account_id", sa.String(36), nullable=False),
    sa.Column("name", sa.String(255), nullable=False),
    # read | write
    sa.Column("access", sa.String(16), nullable=False),
    # SHA-256 of the whole raw key (hex); the key itself is never stored.
    sa.Column("key_hash", sa.String(64), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("rotated_at", sa.Float, nullable=True),
    sa.Column("last_used_at", sa.Float, nullable=True),
    sa.Index("ix_kitaru_api_keys_account", "account_id"),
    sa.UniqueConstraint("account_id", "name", name="uq_kitaru_api_keys_account_name"),
)

"""The secrets table (migration 0009): names and key names in the clear, values encrypted.

Only Fernet ciphertext of the values is stored (see ``kitaru.secrets._crypto``);
the key names are kept apart so that ``list`` needs no key to decrypt.
"""

from __future__ import annotations

import sqlalchemy as sa

from kitaru._store.schema import metadata

secrets = sa.Table(
    "kitaru_secrets",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("name", sa.String(255), nullable=False, unique=True),
    sa.Column("private", sa.Boolean, nullable=False),
    # JSON list of the value keys (names only).
    sa.Column("keys", sa.JSON, nullable=False),
    # Fernet token of the JSON object of values.
    sa.Column("ciphertext", sa.Text, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
)

"""Secret rows: the store contract's part for ``kitaru.secrets`` (a Store mixin).

The store only ever sees ciphertext: callers encrypt before ``save_secret`` and
decrypt after ``secret_row``, so a store behind a Kitaru server (``kitaru+http``)
carries the same opaque tokens and the server never holds a key. Rows are plain
dicts (JSON over the wire).
"""

from __future__ import annotations

import contextlib
import time
from typing import TYPE_CHECKING, Any, Protocol

from kitaru._ids import uuid4
from kitaru._lazy import LazyModule

if TYPE_CHECKING:
    import sqlalchemy as sa

    from kitaru._store import secrets_schema as _schema
else:  # imported on first use (see _lazy)
    sa = LazyModule("sqlalchemy")
    _schema = LazyModule("kitaru._store.secrets_schema")


class _StoreCore(Protocol):
    def write(self) -> contextlib.AbstractContextManager[sa.Connection]: ...

    def read(self) -> contextlib.AbstractContextManager[sa.Connection]: ...


def _as_dict(row: Any, *, ciphertext: bool) -> dict[str, Any]:
    keys = row.keys if isinstance(row.keys, list) else []
    data = {
        "id": row.id,
        "name": row.name,
        "private": bool(row.private),
        "keys": [str(k) for k in keys],
        "created_at": row.created_at,
        "updated_at": row.updated_at,
    }
    if ciphertext:
        data["ciphertext"] = row.ciphertext
    return data


def _lookup(name_or_id: str) -> sa.ColumnElement[bool]:
    return sa.or_(_schema.secrets.c.name == name_or_id, _schema.secrets.c.id == name_or_id)


class SecretsMixin:
    def secret_row(self: _StoreCore, name_or_id: str) -> dict[str, Any] | None:
        """The secret named (or with id) ``name_or_id``, with its ciphertext; None if none."""
        with self.read() as conn:
            row = conn.execute(sa.select(_schema.secrets).where(_lookup(name_or_id))).first()
        return None if row is None else _as_dict(row, ciphertext=True)

    def secret_rows(self: _StoreCore) -> list[dict[str, Any]]:
        """Every secret by name, without ciphertext."""
        with self.read() as conn:
            rows = conn.execute(sa.select(_schema.secrets).order_by(_schema.secrets.c.name)).all()
        return [_as_dict(row, ciphertext=False) for row in rows]

    def save_secret(
        self: _StoreCore,
        name: str,
        *,
        ciphertext: str,
        keys: list[str],
        private: bool | None,
        create_only: bool,
        expected_ciphertext: str | None = None,
    ) -> dict[str, Any] | None:
        """Insert the secret, or replace the one of that name; the row without ciphertext.

        None when ``create_only`` and it exists, or when ``expected_ciphertext`` is
        given and the stored one differs (someone changed it since it was read):
        the caller reads again and retries, so concurrent updates never lose keys.
        """
        now = time.time()
        with self.write() as conn:
            row = conn.execute(
                sa.select(_schema.secrets).where(_schema.secrets.c.name == name)
            ).first()
            if row is None:
                if expected_ciphertext is not None:
                    return None
                secret_id = uuid4()
                conn.execute(
                    _schema.secrets.insert().values(
                        id=secret_id,
                        name=name,
                        private=bool(private),
                        keys=sorted(keys),
                        ciphertext=ciphertext,
                        created_at=now,
                        updated_at=now,
                    )
                )
            else:
                if create_only or (
                    expected_ciphertext is not None and row.ciphertext != expected_ciphertext
                ):
                    return None
                secret_id = row.id
                conn.execute(
                    _schema.secrets.update()
                    .where(_schema.secrets.c.id == row.id)
                    .values(
                        private=bool(row.private if private is None else private),
                        keys=sorted(keys),
                        ciphertext=ciphertext,
                        updated_at=now,
                    )
                )
            saved = conn.execute(
                sa.select(_schema.secrets).where(_schema.secrets.c.id == secret_id)
            ).one()
        return _as_dict(saved, ciphertext=False)

    def delete_secret_row(self: _StoreCore, name_or_id: str) -> dict[str, Any] | None:
        """Delete a secret; what it was (without ciphertext), or None if there was none."""
        with self.write() as conn:
            row = conn.execute(sa.select(_schema.secrets).where(_lookup(name_or_id))).first()
            if row is None:
                return None
            conn.execute(_schema.secrets.delete().where(_schema.secrets.c.id == row.id))
        return _as_dict(row, ciphertext=False)

"""Named secrets, encrypted at rest in the store (``kitaru secrets``, ``kitaru.get_secret``).

A secret is a name and a few ``KEY: value`` strings (e.g. ``OPENAI_API_KEY``).
The store holds the name, the key names and a Fernet token of the values (see
``_crypto``): a database dump or an HTTP trace of the store shows no value.
:class:`Secret` never shows its values in ``repr``/``str``; :class:`SecretSummary`
(what ``list_secrets`` returns) has key names only.

Secrets live in the store Kitaru uses (``KITARU_STORE_URL`` or the embedded
SQLite default), so a PostgreSQL store shares them between machines that share
the key (``KITARU_SECRETS_KEY``).
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from kitaru.errors import KitaruFeatureNotAvailableError, KitaruStateError
from kitaru.secrets._names import check_name, check_values

if TYPE_CHECKING:
    from collections.abc import Mapping

    import sqlalchemy as sa

    from kitaru._store import Store


@dataclass(frozen=True)
class Secret:
    """A secret with its values (``repr`` shows only the key names)."""

    name: str
    id: str
    values: dict[str, str] = field(repr=False)
    private: bool = False

    @property
    def keys(self) -> list[str]:
        return sorted(self.values)

    def __repr__(self) -> str:
        return (
            f"Secret(name={self.name!r}, id={self.id!r}, keys={self.keys!r}, "
            f"private={self.private!r})"
        )

    __str__ = __repr__


@dataclass(frozen=True)
class SecretSummary:
    """A secret without its values."""

    name: str
    id: str
    private: bool
    keys: list[str]
    has_missing_values: bool = False
    created_at: float | None = None
    updated_at: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "id": self.id,
            "private": self.private,
            "keys": list(self.keys),
            "has_missing_values": self.has_missing_values,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }


def _store() -> Store:
    from kitaru._backend import get_backend

    store = get_backend().store
    if not hasattr(store, "engine"):
        raise KitaruFeatureNotAvailableError(
            "Secrets are not available through a Kitaru server connection yet; point "
            "KITARU_STORE_URL at the database itself (SQLite or PostgreSQL) to manage them."
        )
    return store


def _row(conn: sa.Connection, name_or_id: str) -> Any:
    import sqlalchemy as sa

    from kitaru._store.secrets_schema import secrets as t

    return conn.execute(
        sa.select(t).where(sa.or_(t.c.name == name_or_id, t.c.id == name_or_id))
    ).first()


def _summary(row: Any) -> SecretSummary:
    keys = [str(k) for k in row.keys] if isinstance(row.keys, list) else []
    return SecretSummary(
        name=row.name,
        id=row.id,
        private=bool(row.private),
        keys=keys,
        has_missing_values=False,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _missing(name_or_id: str) -> KitaruStateError:
    return KitaruStateError(
        f"No secret {name_or_id!r}. Create it with kitaru secrets set {name_or_id} --KEY=value "
        "(or kitaru.create_secret); kitaru secrets list shows the existing ones."
    )


def get_secret(name_or_id: str) -> Secret:
    """The secret named ``name_or_id`` (or with that id), values decrypted."""
    from kitaru.secrets._crypto import decrypt

    with _store().read() as conn:
        row = _row(conn, name_or_id)
    if row is None:
        raise _missing(name_or_id)
    return Secret(row.name, row.id, decrypt(row.name, row.ciphertext), bool(row.private))


def create_secret(name: str, values: Mapping[str, str], *, private: bool = False) -> SecretSummary:
    """Create a secret; one with that name already existing is a KitaruStateError."""
    check_name(name)
    clean = check_values(name, values)
    return _write(name, clean, private=private, replace=False)


def set_secret(
    name: str, values: Mapping[str, str], *, private: bool | None = None
) -> SecretSummary:
    """Create a secret, or update one: ``values`` are merged over its current ones."""
    check_name(name)
    clean = check_values(name, values)
    return _write(name, clean, private=private, replace=True)


def _write(
    name: str, values: dict[str, str], *, private: bool | None, replace: bool
) -> SecretSummary:
    import sqlalchemy as sa

    from kitaru._store.secrets_schema import secrets as t
    from kitaru.secrets._crypto import decrypt, encrypt

    store = _store()
    now = time.time()
    with store.write() as conn:
        row = conn.execute(sa.select(t).where(t.c.name == name)).first()
        if row is not None and not replace:
            raise KitaruStateError(
                f"Secret {name!r} already exists. Use kitaru secrets set {name} --KEY=value to "
                "update it, or delete it first."
            )
        if row is None:
            merged = dict(values)
            secret_id = str(uuid.uuid4())
            conn.execute(
                t.insert().values(
                    id=secret_id,
                    name=name,
                    private=bool(private),
                    keys=sorted(merged),
                    ciphertext=encrypt(merged),
                    created_at=now,
                    updated_at=now,
                )
            )
        else:
            merged = {**decrypt(name, row.ciphertext), **values}
            secret_id = row.id
            conn.execute(
                t.update()
                .where(t.c.id == row.id)
                .values(
                    private=bool(row.private if private is None else private),
                    keys=sorted(merged),
                    ciphertext=encrypt(merged),
                    updated_at=now,
                )
            )
        saved = conn.execute(sa.select(t).where(t.c.id == secret_id)).one()
    return _summary(saved)


def delete_secret(name_or_id: str) -> SecretSummary:
    """Delete a secret; returns what it was (without values)."""
    from kitaru._store.secrets_schema import secrets as t

    with _store().write() as conn:
        row = _row(conn, name_or_id)
        if row is None:
            raise _missing(name_or_id)
        conn.execute(t.delete().where(t.c.id == row.id))
    return _summary(row)


def list_secrets() -> list[SecretSummary]:
    """Every secret, by name: names and key names only."""
    import sqlalchemy as sa

    from kitaru._store.secrets_schema import secrets as t

    with _store().read() as conn:
        rows = conn.execute(sa.select(t).order_by(t.c.name)).all()
    return [_summary(row) for row in rows]


__all__ = [
    "Secret",
    "SecretSummary",
    "create_secret",
    "delete_secret",
    "get_secret",
    "list_secrets",
    "set_secret",
]

"""Named secrets, encrypted at rest in the store (``kitaru secrets``, ``kitaru.get_secret``).

A secret is a name and a few ``KEY: value`` strings (e.g. ``OPENAI_API_KEY``).
The store holds the name, the key names and a Fernet token of the values (see
``_crypto``): a database dump or an HTTP trace of the store shows no value.
:class:`Secret` never shows its values in ``repr``/``str``; :class:`SecretSummary`
(what ``list_secrets`` returns) has key names only.

Secrets live in the store Kitaru uses (``KITARU_STORE_URL`` or the embedded
SQLite default), so a PostgreSQL store, or a Kitaru server (``kitaru+http://``,
which only ever receives ciphertext), shares them between machines that share
the key (``KITARU_SECRETS_KEY``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from kitaru.errors import KitaruStateError
from kitaru.secrets._names import check_name, check_values

if TYPE_CHECKING:
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
    created_at: datetime | None = None
    updated_at: datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "id": self.id,
            "private": self.private,
            "keys": list(self.keys),
            "has_missing_values": self.has_missing_values,
            "created_at": _iso(self.created_at),
            "updated_at": _iso(self.updated_at),
        }


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _dt(value: Any) -> datetime | None:
    """A stored epoch time as an aware UTC datetime (ISO 8601 in JSON, as elsewhere)."""
    return None if value is None else datetime.fromtimestamp(float(value), tz=UTC)


def _store() -> Store:
    from kitaru._backend import get_backend

    return get_backend().store


def _summary(row: Mapping[str, Any]) -> SecretSummary:
    return SecretSummary(
        name=str(row["name"]),
        id=str(row["id"]),
        private=bool(row["private"]),
        keys=[str(k) for k in row.get("keys") or ()],
        has_missing_values=False,
        created_at=_dt(row.get("created_at")),
        updated_at=_dt(row.get("updated_at")),
    )


def _ensure_key(store: Store, name: str) -> None:
    """Before a write: create the key file for the store's first secret, never for a store
    that already holds secrets (their ciphertext was made with another key)."""
    from kitaru.secrets._crypto import create_key_file, has_key, key_missing

    if has_key():
        return
    if store.secret_rows():
        raise key_missing(f"Secret {name!r} cannot be saved", writing=True)
    create_key_file()


def _missing(name_or_id: str) -> KitaruStateError:
    return KitaruStateError(
        f"No secret {name_or_id!r}. Create it with kitaru secrets set {name_or_id} --KEY=value "
        "(or kitaru.create_secret); kitaru secrets list shows the existing ones."
    )


def get_secret(name_or_id: str) -> Secret:
    """The secret named ``name_or_id`` (or with that id), values decrypted."""
    from kitaru.secrets._crypto import decrypt

    row = _store().secret_row(name_or_id)
    if row is None:
        raise _missing(name_or_id)
    values = decrypt(str(row["name"]), str(row["ciphertext"]))
    return Secret(str(row["name"]), str(row["id"]), values, bool(row["private"]))


def create_secret(name: str, values: Mapping[str, str], *, private: bool = False) -> SecretSummary:
    """Create a secret; one with that name already existing is a KitaruStateError."""
    from kitaru.secrets._crypto import encrypt

    check_name(name)
    clean = check_values(name, values)
    store = _store()
    _ensure_key(store, name)
    row = store.save_secret(
        name, ciphertext=encrypt(name, clean), keys=sorted(clean), private=private, create_only=True
    )
    if row is None:
        raise KitaruStateError(
            f"Secret {name!r} already exists. Use kitaru secrets set {name} --KEY=value to "
            "update it, or delete it first."
        )
    return _summary(row)


def set_secret(
    name: str, values: Mapping[str, str], *, private: bool | None = None
) -> SecretSummary:
    """Create a secret, or update one: ``values`` are merged over its current ones."""
    from kitaru.secrets._crypto import decrypt, encrypt

    check_name(name)
    clean = check_values(name, values)
    store = _store()
    _ensure_key(store, name)
    for _ in range(20):  # another writer in between: read again (see save_secret)
        current = store.secret_row(name)
        expected = None if current is None else str(current["ciphertext"])
        merged = {**(decrypt(name, expected) if expected else {}), **clean}
        row = store.save_secret(
            name,
            ciphertext=encrypt(name, merged),
            keys=sorted(merged),
            private=private,
            create_only=current is None,
            expected_ciphertext=expected,
        )
        if row is not None:
            return _summary(row)
    raise KitaruStateError(f"Secret {name!r} kept changing while it was being updated; try again.")


def delete_secret(name_or_id: str) -> SecretSummary:
    """Delete a secret; returns what it was (without values)."""
    row = _store().delete_secret_row(name_or_id)
    if row is None:
        raise _missing(name_or_id)
    return _summary(row)


def list_secrets() -> list[SecretSummary]:
    """Every secret, by name: names and key names only."""
    return [_summary(row) for row in _store().secret_rows()]


__all__ = [
    "Secret",
    "SecretSummary",
    "create_secret",
    "delete_secret",
    "get_secret",
    "list_secrets",
    "set_secret",
]

"""Service accounts and their API keys, in the store (tables of migration 0007).

A raw key is ``kt_<key id>_<secret>``: the id finds the row, and the SHA-256 of
the whole key is compared with the stored hash in constant time. The raw key
exists only in the answer to ``create``/``rotate``; the store never holds it.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import threading
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import sqlalchemy as sa

from kitaru._store import auth_schema as t
from kitaru.errors import KitaruStateError, KitaruUsageError

logger = logging.getLogger("kitaru.server")

if TYPE_CHECKING:
    from kitaru._store import Store

Access = Literal["read", "write", "runner"]
#: read: read-only; write: also control (retry, input, cancel, ...); runner: also the
#: store contract (``/api/v1/store``: record executions, as runners and workers do).
ACCESS_LEVELS: tuple[str, ...] = ("read", "write", "runner")
KEY_PREFIX = "kt_"
#: The account `kitaru server start` creates with the first key when there is none.
ADMIN_ACCOUNT = "admin"


@dataclass(frozen=True)
class ServiceAccount:
    id: str
    name: str
    description: str | None
    created_at: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "description": self.description,
            "created_at": self.created_at,
        }


@dataclass(frozen=True)
class ApiKey:
    id: str
    account_id: str
    account: str
    name: str
    access: str
    created_at: float
    rotated_at: float | None
    last_used_at: float | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "service_account": self.account,
            "account_id": self.account_id,
            "name": self.name,
            "access": self.access,
            "created_at": self.created_at,
            "rotated_at": self.rotated_at,
            "last_used_at": self.last_used_at,
        }


def _hash(raw: str) -> str:
    return hashlib.sha256(raw.encode("utf-8", "surrogatepass")).hexdigest()


def _new_raw_key(key_id: str) -> str:
    return f"{KEY_PREFIX}{key_id}_{secrets.token_urlsafe(32)}"


def _check_name(value: str, what: str) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > 255:
        raise KitaruUsageError(f"A {what} name must be 1 to 255 characters, got {value!r}.")
    return value.strip()


def _check_access(access: str) -> str:
    if access not in ACCESS_LEVELS:
        raise KitaruUsageError(
            f"Access must be 'read' (read-only), 'write' (read-write) or 'runner' (also "
            f"records executions), got {access!r}."
        )
    return access


def _account_row(conn: sa.Connection, name: str) -> Any:
    return conn.execute(
        sa.select(t.service_accounts).where(t.service_accounts.c.name == name)
    ).first()


def _require_account(conn: sa.Connection, name: str) -> Any:
    row = _account_row(conn, name)
    if row is None:
        raise KitaruStateError(
            f"No service account named {name!r}; list them with "
            "`kitaru auth service-accounts list`."
        )
    return row


def create_account(store: Store, name: str, description: str | None = None) -> ServiceAccount:
    name = _check_name(name, "service account")
    now = time.time()
    account = ServiceAccount(str(uuid.uuid4()), name, description, now)
    with store.write() as conn:
        if _account_row(conn, name) is not None:
            raise KitaruStateError(f"A service account named {name!r} exists already.")
        conn.execute(t.service_accounts.insert().values(**account.to_dict()))
    return account


def list_accounts(store: Store) -> list[ServiceAccount]:
    with store.read() as conn:
        rows = conn.execute(
            sa.select(t.service_accounts).order_by(t.service_accounts.c.created_at)
        ).all()
    return [ServiceAccount(r.id, r.name, r.description, r.created_at) for r in rows]


def delete_account(store: Store, name: str) -> None:
    """Remove the account and every key it holds (they stop working at once)."""
    with store.write() as conn:
        row = _require_account(conn, name)
        conn.execute(t.api_keys.delete().where(t.api_keys.c.account_id == row.id))
        conn.execute(t.service_accounts.delete().where(t.service_accounts.c.id == row.id))


def _key_query() -> sa.Select[Any]:
    k, a = t.api_keys.c, t.service_accounts.c
    return sa.select(
        k.id,
        k.account_id,
        a.name.label("account"),
        k.name,
        k.access,
        k.created_at,
        k.rotated_at,
        k.last_used_at,
        k.key_hash,
    ).join(t.service_accounts, a.id == k.account_id)


def _key(row: Any) -> ApiKey:
    return ApiKey(
        row.id,
        row.account_id,
        row.account,
        row.name,
        row.access,
        row.created_at,
        row.rotated_at,
        row.last_used_at,
    )


def create_key(store: Store, account: str, name: str, access: str = "read") -> tuple[ApiKey, str]:
    """A new key of ``account``; returns it with the raw key (shown once)."""
    name = _check_name(name, "API key")
    access = _check_access(access)
    key_id = uuid.uuid4().hex[:16]
    raw = _new_raw_key(key_id)
    now = time.time()
    with store.write() as conn:
        row = _require_account(conn, account)
        taken = conn.execute(
            sa.select(t.api_keys.c.id).where(
                t.api_keys.c.account_id == row.id, t.api_keys.c.name == name
            )
        ).first()
        if taken is not None:
            raise KitaruStateError(
                f"Service account {account!r} has a key named {name!r} already; rotate it "
                f"with `kitaru auth api-keys rotate {account} {name}` or pick another name."
            )
        conn.execute(
            t.api_keys.insert().values(
                id=key_id,
                account_id=row.id,
                name=name,
                access=access,
                key_hash=_hash(raw),
                created_at=now,
            )
        )
    key = ApiKey(key_id, row.id, row.name, name, access, now, None, None)
    return key, raw


def list_keys(store: Store, account: str | None = None) -> list[ApiKey]:
    query = _key_query().order_by(t.api_keys.c.created_at)
    with store.read() as conn:
        if account is not None:
            row = _require_account(conn, account)
            query = query.where(t.api_keys.c.account_id == row.id)
        return [_key(r) for r in conn.execute(query).all()]


def _require_key(conn: sa.Connection, account: str, name: str) -> Any:
    row = _require_account(conn, account)
    key = conn.execute(
        _key_query().where(t.api_keys.c.account_id == row.id, t.api_keys.c.name == name)
    ).first()
    if key is None:
        raise KitaruStateError(
            f"Service account {account!r} has no API key named {name!r}; list them with "
            f"`kitaru auth api-keys list {account}`."
        )
    return key


def rotate_key(store: Store, account: str, name: str) -> tuple[ApiKey, str]:
    """A new secret for the key; the old one stops working at once."""
    with store.write() as conn:
        row = _require_key(conn, account, name)
        raw = _new_raw_key(row.id)
        now = time.time()
        conn.execute(
            t.api_keys.update()
            .where(t.api_keys.c.id == row.id)
            .values(key_hash=_hash(raw), rotated_at=now)
        )
    key = _key(row)
    return ApiKey(**{**key.__dict__, "rotated_at": now}), raw


def delete_key(store: Store, account: str, name: str) -> None:
    with store.write() as conn:
        row = _require_key(conn, account, name)
        conn.execute(t.api_keys.delete().where(t.api_keys.c.id == row.id))


def has_keys(store: Store) -> bool:
    with store.read() as conn:
        return conn.execute(sa.select(t.api_keys.c.id).limit(1)).first() is not None


def verify(store: Store, raw: str) -> ApiKey | None:
    """The key ``raw`` is, if it is a current key; None for anything else."""
    if not raw.startswith(KEY_PREFIX):
        return None
    key_id, sep, _secret = raw[len(KEY_PREFIX) :].partition("_")
    if not sep or not key_id or len(key_id) > 36:
        return None
    with store.read() as conn:
        row = conn.execute(_key_query().where(t.api_keys.c.id == key_id)).first()
    expected = row.key_hash if row is not None else _hash("")
    matches = hmac.compare_digest(expected.encode(), _hash(raw).encode())
    if row is None or not matches:
        return None
    key = _key(row)
    _note_use(store, key)
    return key


#: How often a key's ``last_used_at`` is written at most (a write per request would
#: make every read of the API a commit).
USE_RECORDED_EVERY = 60.0
_noted: dict[str, float] = {}
_noted_lock = threading.Lock()


def _note_use(store: Store, key: ApiKey) -> None:
    """Record that ``key`` was used now, unless that was recorded less than a minute ago."""
    now = time.time()
    recorded = key.last_used_at or 0.0
    with _noted_lock:
        last = max(recorded, _noted.get(key.id, 0.0))
        if now - last < USE_RECORDED_EVERY:
            return
        _noted[key.id] = now
    try:
        with store.write() as conn:
            conn.execute(
                t.api_keys.update().where(t.api_keys.c.id == key.id).values(last_used_at=now)
            )
    except Exception:  # bookkeeping only: never refuse a request for it
        logger.debug("Could not record the use of API key %s", key.id, exc_info=True)


def ensure_admin_key(store: Store) -> str | None:
    """Create an ``admin`` account with a read-write key when no key exists at all.

    Returns the raw key when one was made (print it once), else None.
    """
    if has_keys(store):
        return None
    with store.read() as conn:
        exists = _account_row(conn, ADMIN_ACCOUNT) is not None
    if not exists:
        create_account(store, ADMIN_ACCOUNT, "created by the first `kitaru server start`")
    name = "admin"
    taken = {k.name for k in list_keys(store, ADMIN_ACCOUNT)}
    counter = 1
    while name in taken:
        counter += 1
        name = f"admin-{counter}"
    _key, raw = create_key(store, ADMIN_ACCOUNT, name, "runner")
    return raw

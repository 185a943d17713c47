"""Encryption of secret values at rest: Fernet (AES-128-CBC + HMAC-SHA256, ``cryptography``).

The key comes from ``KITARU_SECRETS_KEY`` (a Fernet key: 32 url-safe base64
bytes, ``kitaru secrets key`` style output of ``Fernet.generate_key()``) or,
when that is unset, from ``secrets.key`` in the user config dir, created on
first use with 0600 permissions. Everyone sharing a store (PostgreSQL) must use
the same key: set KITARU_SECRETS_KEY to it on every machine.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

from kitaru.errors import KitaruStateError, KitaruUsageError

ENV_KEY = "KITARU_SECRETS_KEY"
KEY_FILE = "secrets.key"

_lock = threading.Lock()


def key_file() -> Path:
    from kitaru._paths import config_dir

    return config_dir() / KEY_FILE


def _fernet(key: bytes, source: str) -> Any:
    from cryptography.fernet import Fernet

    try:
        return Fernet(key)
    except (ValueError, TypeError):
        # Never echo the key itself.
        raise KitaruUsageError(
            f"The secrets key from {source} is not a valid Fernet key (32 url-safe base64-"
            'encoded bytes). Generate one with: python -c "from cryptography.fernet import '
            f'Fernet; print(Fernet.generate_key().decode())" and set {ENV_KEY}.'
        ) from None


def _load_or_create_key_file() -> bytes:
    from cryptography.fernet import Fernet

    from kitaru._paths import make_private_dir

    path = key_file()
    with _lock:
        try:
            return path.read_bytes().strip()
        except FileNotFoundError:
            pass
        make_private_dir(path.parent)
        key = Fernet.generate_key()
        try:
            # O_EXCL: a concurrent process that created it first wins; read theirs.
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return path.read_bytes().strip()
        with os.fdopen(fd, "wb") as handle:
            handle.write(key + b"\n")
            handle.flush()
            os.fsync(handle.fileno())
        return key


def cipher() -> tuple[Any, str]:
    """The Fernet for secret values and where its key came from (never the key)."""
    env = os.environ.get(ENV_KEY, "").strip()
    if env:
        return _fernet(env.encode(), ENV_KEY), ENV_KEY
    path = key_file()
    return _fernet(_load_or_create_key_file(), str(path)), str(path)


def encrypt(values: dict[str, str]) -> str:
    fernet, _ = cipher()
    token: bytes = fernet.encrypt(json.dumps(values, sort_keys=True).encode())
    return token.decode("ascii")


def decrypt(name: str, token: str) -> dict[str, str]:
    from cryptography.fernet import InvalidToken

    fernet, source = cipher()
    try:
        plain = fernet.decrypt(token.encode("ascii"))
    except (InvalidToken, ValueError):
        raise KitaruStateError(
            f"Secret {name!r} cannot be decrypted with the key from {source}: it was stored "
            f"with another key. Set {ENV_KEY} to the key used when it was saved (if that key "
            f"is lost, delete the secret with kitaru secrets delete {name} and save its values "
            "again)."
        ) from None
    values = json.loads(plain)
    return {str(k): str(v) for k, v in values.items()}

"""Encryption of secret values at rest: Fernet (AES-128-CBC + HMAC-SHA256, ``cryptography``).

The key comes from ``KITARU_SECRETS_KEY`` (a Fernet key: 32 url-safe base64
bytes, ``kitaru secrets key`` style output of ``Fernet.generate_key()``) or,
when that is unset, from ``secrets.key`` in the user config dir, created with
0600 permissions by the first write to a store that holds no secrets yet. A
store that already holds secrets never gets a new key (their ciphertext was made
with some other key, and secrets under two keys would each be unreadable to half
the users): the caller refuses with :func:`key_missing`. Reads never create a
key. Everyone sharing a store (PostgreSQL) must use the same key: set
KITARU_SECRETS_KEY to it on every machine.
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


def _read_key_file(path: Path) -> bytes | None:
    try:
        return path.read_bytes().strip()
    except FileNotFoundError:
        return None


def create_key_file() -> None:
    """Write a new key to ``secrets.key`` unless one is there (only for a store without secrets)."""
    from cryptography.fernet import Fernet

    from kitaru._paths import make_private_dir

    path = key_file()
    with _lock:
        if path.exists():
            return
        make_private_dir(path.parent)
        key = Fernet.generate_key()
        try:
            # O_EXCL: a concurrent process that created it first wins; keep theirs.
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return
        with os.fdopen(fd, "wb") as handle:
            handle.write(key + b"\n")
            handle.flush()
            os.fsync(handle.fileno())


def has_key() -> bool:
    """Whether a key is configured: KITARU_SECRETS_KEY, or an existing key file."""
    return bool(os.environ.get(ENV_KEY, "").strip()) or key_file().exists()


def key_missing(what: str, *, writing: bool = False) -> KitaruStateError:
    """The refusal when no key is configured but the store already holds secrets."""
    path = key_file()
    why = (
        "the store already holds secrets written with another key, so no new key was "
        "created (secrets under two keys would each be unreadable to someone); nothing was "
        "saved"
        if writing
        else "the store's secrets were written with a key that is not here, and a read never "
        "creates one"
    )
    return KitaruStateError(
        f"{what}: no secrets key is configured ({ENV_KEY} is unset and there is no key file "
        f"at {path}); {why}. Set {ENV_KEY} to the key the store's secrets were written with, "
        f"or restore that key file at {path}."
    )


def cipher(what: str = "Secrets cannot be read") -> tuple[Any, str]:
    """The Fernet for secret values and where its key came from (never the key).

    Never creates a key: with none configured, ``key_missing(what)`` is raised.
    """
    env = os.environ.get(ENV_KEY, "").strip()
    if env:
        return _fernet(env.encode(), ENV_KEY), ENV_KEY
    path = key_file()
    key = _read_key_file(path)
    if key is None:
        raise key_missing(what)
    return _fernet(key, str(path)), str(path)


def encrypt(name: str, values: dict[str, str]) -> str:
    fernet, _ = cipher(f"Secret {name!r} cannot be saved")
    token: bytes = fernet.encrypt(json.dumps(values, sort_keys=True).encode())
    return token.decode("ascii")


def decrypt(name: str, token: str) -> dict[str, str]:
    from cryptography.fernet import InvalidToken

    fernet, source = cipher(f"Secret {name!r} cannot be decrypted")
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

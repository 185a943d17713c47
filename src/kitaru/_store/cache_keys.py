"""How checkpoint cache keys are stored.

The runtime's key is ``<checkpoint hash>:<inputs hash>`` (97 characters of hex).
Every cached call stores it in its row and in the cache-key index, so it is stored
short: the base64url text of 24 bytes of its SHA-256 (32 characters, 192 bits).
That saves about 130 bytes per checkpoint and keeps the index dense.

Only the store maps keys: the runtime, the wire to a server and the store contract
speak the runtime's key. Migration 0013 converted the keys stored before.
"""

from __future__ import annotations

import base64
import functools

from kitaru import _digest


def stored(key: str | None) -> str | None:
    """The form ``key`` is stored in. A key already in that form (no ``:``) is
    unchanged, so rows copied from the store (a replay's reused calls) keep theirs."""
    if key is None or ":" not in key:
        return key
    return _short(key)


@functools.lru_cache(maxsize=1024)  # a live call maps its key 2-3 times (lookup, row)
def _short(key: str) -> str:
    digest = _digest.sha256(key.encode("utf-8")).digest()[:24]
    return base64.urlsafe_b64encode(digest).decode("ascii")

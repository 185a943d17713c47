"""How checkpoint cache keys are stored.

The runtime's key is ``<checkpoint hash>:<inputs hash>`` (97 characters of hex).
Every cached call stores it in its row and in the cache-key index, so it is stored
short: the first 21 base64url characters of its SHA-256 (126 bits: two different
keys among 10^15 collide with a chance of about 10^-8). That saves about 150 bytes
per checkpoint and keeps the index dense.

Only the store maps keys: the runtime, the wire to a server and the store contract
speak the runtime's key. Migration 0013 converted the keys stored before it (to 32
characters, 192 bits), and 0015 cut those to their first 21 characters, which are
exactly the form given here.
"""

from __future__ import annotations

import base64
import functools

from kitaru import _digest

#: Characters of a stored key: 21 of base64 hold 126 bits (the 22nd would be half padding).
SHORT_LENGTH = 21


def stored(key: str | None) -> str | None:
    """The form ``key`` is stored in. A key already in that form (no ``:``) is
    unchanged, so rows copied from the store (a replay's reused calls) keep theirs."""
    if key is None or ":" not in key:
        return key
    return _short(key)


@functools.lru_cache(maxsize=1024)  # a live call maps its key 2-3 times (lookup, row)
def _short(key: str) -> str:
    digest = _digest.sha256(key.encode("utf-8")).digest()[:16]
    return base64.urlsafe_b64encode(digest).decode("ascii")[:SHORT_LENGTH]

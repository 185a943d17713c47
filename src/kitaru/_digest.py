"""SHA-256 without loading OpenSSL for the short inputs of an ordinary run.

``hashlib`` loads OpenSSL (``_hashlib``) when imported: ~11M instructions, ~3 ms of
every ``python script.py``. CPython's own SHA-256 module gives the same digests
without that start-up cost, at a fraction of OpenSSL's speed on long inputs (no
SHA-NI: ~7x slower at 16 KiB, measured), so it serves only inputs up to
:data:`SHORT` bytes: cache keys, fingerprints, small values. Longer inputs go to
hashlib, loaded the first time one comes.
"""

from __future__ import annotations

from typing import Final, Protocol


class Digest(Protocol):
    def digest(self) -> bytes: ...
    def hexdigest(self) -> str: ...
    def update(self, data: bytes, /) -> None: ...


#: Inputs up to this size are hashed by CPython's module (at most ~1 us slower here).
SHORT: Final = 256

try:  # the module's name: _sha256 up to Python 3.11, _sha2 from 3.12
    from _sha256 import sha256 as _short_sha256  # type: ignore[import-not-found,unused-ignore]
except ImportError:  # pragma: no cover - depends on the Python version
    try:
        from _sha2 import sha256 as _short_sha256  # type: ignore[import-not-found,unused-ignore]
    except ImportError:  # a build without it: OpenSSL for every input
        _short_sha256 = None


def sha256(data: bytes = b"") -> Digest:
    """``hashlib.sha256(data)``; feed more with ``update()`` only if ``data`` is long."""
    if _short_sha256 is not None and len(data) <= SHORT:
        return _short_sha256(data)  # type: ignore[no-any-return]
    import hashlib

    return hashlib.sha256(data)


__all__ = ["SHORT", "Digest", "sha256"]

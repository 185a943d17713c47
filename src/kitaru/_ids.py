"""Random ids without a system call each.

``uuid.uuid4()`` and ``os.urandom()`` release the GIL around a ``getrandom``
system call. On the checkpoint hot path (an artifact id and a correlation id per
call) that hands the interpreter to any other runnable thread (event writer,
lease renewal, the caller's own threads) and costs several microseconds each
time. The same kernel randomness is read here in blocks instead; a forked child
drops the parent's block so the two never hand out the same ids.
"""

from __future__ import annotations

import os
import threading

_BLOCK = 4096  # bytes: 256 ids of 16 bytes per system call

_lock = threading.Lock()
_buffer = b""
_offset = 0


def random_bytes(count: int) -> bytes:
    """``count`` bytes from the kernel's random generator (as ``os.urandom``)."""
    global _buffer, _offset
    with _lock:
        if _offset + count > len(_buffer):
            _buffer = os.urandom(max(_BLOCK, count))
            _offset = 0
        start = _offset
        _offset += count
        return _buffer[start:_offset]


def random_hex(count: int = 16) -> str:
    """``count`` random bytes as hex."""
    return random_bytes(count).hex()


def uuid4() -> str:
    """A random (version 4) UUID in its usual text form."""
    raw = bytearray(random_bytes(16))
    raw[6] = (raw[6] & 0x0F) | 0x40  # version 4
    raw[8] = (raw[8] & 0x3F) | 0x80  # RFC 4122 variant
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _forget_after_fork() -> None:
    global _buffer, _offset, _lock
    _lock = threading.Lock()
    _buffer, _offset = b"", 0


os.register_at_fork(after_in_child=_forget_after_fork)

__all__ = ["random_bytes", "random_hex", "uuid4"]

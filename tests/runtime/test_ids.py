"""Random ids read from the kernel in blocks: unique, well-formed, and new in a forked child."""

from __future__ import annotations

import os
import uuid

from kitaru import _ids


def test_uuid4_is_a_version_4_uuid() -> None:
    for _ in range(600):  # more than one block of kernel randomness
        text = _ids.uuid4()
        parsed = uuid.UUID(text)
        assert str(parsed) == text
        assert parsed.version == 4
        assert parsed.variant == uuid.RFC_4122


def test_ids_do_not_repeat() -> None:
    ids = {_ids.uuid4() for _ in range(5000)} | {_ids.random_hex() for _ in range(5000)}
    assert len(ids) == 10000


def test_a_forked_child_does_not_reuse_the_parents_block() -> None:
    _ids.random_hex()  # the parent holds a partly used block
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        os.close(read)
        os.write(write, "".join(_ids.random_hex() for _ in range(8)).encode())
        os._exit(0)
    os.close(write)
    child = b""
    while chunk := os.read(read, 4096):
        child += chunk
    os.close(read)
    os.waitpid(pid, 0)
    parent = "".join(_ids.random_hex() for _ in range(8))
    assert len(child) == len(parent) == 8 * 32
    assert child.decode() != parent

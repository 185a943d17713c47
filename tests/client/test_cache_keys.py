"""Cache keys are stored short, and keys stored before that still hit.

The runtime's key (checkpoint hash ``:`` inputs hash, 97 characters) is stored as
32 characters (``_store/cache_keys.py``). A store written before keeps its long
keys: a lookup matches either form. Runs on every store.
"""

from __future__ import annotations

import sqlalchemy as sa

from kitaru import checkpoint, flow
from kitaru._backend import get_backend
from kitaru._blobs import fingerprint
from kitaru._store import schema

RUNS: list[int] = []


@checkpoint
def priced(n: int) -> int:
    RUNS.append(n)
    return n * 10


@flow
def pricing(n: int) -> int:
    return priced(n)


def _keys(exec_id: str) -> list[str | None]:
    c = schema.checkpoint_calls.c
    with get_backend().store.read() as conn:
        return [r[0] for r in conn.execute(sa.select(c.cache_key).where(c.exec_id == exec_id))]


def test_a_cache_key_is_stored_short_and_hits(any_store: str) -> None:
    RUNS.clear()
    first = pricing.run(3)
    assert first.wait(timeout=30) == 30
    (key,) = _keys(first.exec_id)
    assert key is not None
    assert len(key) == 32
    assert ":" not in key

    second = pricing.run(3)
    assert second.wait(timeout=30) == 30
    assert RUNS == [3]  # the second execution took the first one's output


def test_a_key_stored_before_keys_were_short_still_hits(any_store: str) -> None:
    RUNS.clear()
    first = pricing.run(4)
    assert first.wait(timeout=30) == 40
    # As a store written before keys were stored short holds it: the runtime's key.
    legacy = priced.cache_prefix() + str(fingerprint(((4,), {})))
    assert len(legacy) == 97
    c = schema.checkpoint_calls.c
    with get_backend().store.write() as conn:
        conn.execute(
            schema.checkpoint_calls.update()
            .where(c.exec_id == first.exec_id)
            .values(cache_key=legacy)
        )

    second = pricing.run(4)
    assert second.wait(timeout=30) == 40
    assert RUNS == [4]
    assert _keys(first.exec_id) == [legacy]

"""Cache keys are stored short, and still hit.

The runtime's key (checkpoint hash ``:`` inputs hash, 97 characters) is stored as
21 characters (``_store/cache_keys.py``). Keys stored before are converted by
migrations 0013 and 0015 (``tests/store/test_migrations.py``). Runs on every store.
"""

from __future__ import annotations

import sqlalchemy as sa

from kitaru import checkpoint, flow
from kitaru._backend import get_backend
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
    assert len(key) == 21
    assert ":" not in key

    second = pricing.run(3)
    assert second.wait(timeout=30) == 30
    assert RUNS == [3]  # the second execution took the first one's output

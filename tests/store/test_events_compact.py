"""The two lifecycle events of every checkpoint are stored short, and read back whole.

``kitaru.checkpoint.started``/``returned`` without fields are stored with a code for
their kind and only the random part of their automatic correlation id
(``_store/_events.py``); readers, filters and the stream see the full values. Runs on
every store.
"""

from __future__ import annotations

import sqlalchemy as sa

import kitaru
from kitaru import KitaruClient, checkpoint, flow
from kitaru._backend import get_backend
from kitaru._store import schema

STARTED = "kitaru.checkpoint.started"
RETURNED = "kitaru.checkpoint.returned"


@checkpoint
def step(n: int) -> int:
    # A user event named like a storage code, with a payload: read as written.
    kitaru.events.publish("~s", {"n": n})
    return n + 1


@flow
def steps(n: int) -> int:
    return step(n) + step(n + 1)


def _stored(exec_id: str) -> list[tuple[str, str | None, str]]:
    ev = schema.events.c
    with get_backend().store.read() as conn:
        rows = conn.execute(
            sa.select(ev.kind, ev.correlation_id, ev.payload)
            .where(ev.exec_id == exec_id)
            .order_by(ev.seq)
        ).all()
    return [tuple(row) for row in rows]  # type: ignore[misc]


def test_lifecycle_events_are_stored_short_and_read_back_whole(any_store: str) -> None:
    handle = steps.run(1)
    assert handle.wait(timeout=30) == 5
    kitaru.events.flush()
    stored = _stored(handle.exec_id)
    compact = [(kind, cid) for kind, cid, payload in stored if payload == ""]
    assert [kind for kind, _ in compact] == ["~s", "~r", "~s", "~r"]
    assert all(cid is not None and ":" not in cid and len(cid) == 32 for _, cid in compact)

    events = list(KitaruClient().executions.events(handle.exec_id, reconnect=False))
    kinds = [(e.checkpoint_id, e.kind) for e in events]
    assert kinds == [
        ("step", STARTED),
        ("step", "~s"),
        ("step", RETURNED),
        ("step:2", STARTED),
        ("step:2", "~s"),
        ("step:2", RETURNED),
    ]
    first = events[0]
    assert first.correlation_id == f"kitaru.checkpoint:step:{compact[0][1]}"
    assert first.payload["kitaru"]["correlation_id"] == first.correlation_id
    assert first.payload["status"] == "started"
    user = events[1]
    assert user.payload["data"] == {"n": 1}
    # The user's event shares its checkpoint run's correlation id.
    assert user.correlation_id == first.correlation_id

    # Filters match the full values.
    store = get_backend().store
    started = store.events(handle.exec_id, kinds=[STARTED])
    assert [(e.call_id, e.kind) for e in started] == [("step", STARTED), ("step:2", STARTED)]
    assert [e.kind for e in store.events(handle.exec_id, kinds=["~s"])] == ["~s", "~s"]
    run = store.events(handle.exec_id, correlation_ids=[first.correlation_id])
    assert [(e.kind, e.correlation_id) for e in run] == [
        (STARTED, first.correlation_id),
        ("~s", first.correlation_id),
        (RETURNED, first.correlation_id),
    ]
    assert store.events(handle.exec_id, correlation_ids=[compact[0][1]]) == []

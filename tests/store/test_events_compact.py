"""The two lifecycle events of every checkpoint are stored short, and read back whole.

``kitaru.checkpoint.started``/``returned`` without fields are stored with a code for
their kind and only the random part of their automatic correlation id; a run that
published nothing in between stores both as one pair row (``_store/_event_codes.py``).
Readers, filters, cursors and limits see the full events. Runs on every store.
"""

from __future__ import annotations

import pytest
import sqlalchemy as sa

import kitaru
from kitaru import KitaruClient, checkpoint, flow
from kitaru._backend import get_backend
from kitaru._store import _event_codes, schema
from kitaru._store._event_codes import call_token

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
    # The correlation id's own part: 16 hex digits of the call id's hash, "<run>.<attempt>".
    tokens = [call_token("step") + "1.1"] * 2 + [call_token("step:2") + "1.1"] * 2
    assert [cid for _, cid in compact] == tokens

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


@checkpoint
def quiet(n: int) -> int:
    return n + 1


@flow
def quiet_steps(n: int) -> int:
    return quiet(n) + quiet(n + 1) + quiet(n + 2)


@pytest.mark.parametrize("as_run", [True, False], ids=["one run row", "pair rows"])
def test_quiet_checkpoint_runs_are_stored_short_and_read_back_as_two_events_each(
    any_store: str, as_run: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Consecutive quiet runs are one run row; each alone is one pair row (a run of at
    most one pair). Readers, filters, cursors and limits see the same events."""
    if not as_run:
        monkeypatch.setattr(_event_codes, "RUN_MAX", 1)
    handle = quiet_steps.run(1)
    assert handle.wait(timeout=30) == 9
    kitaru.events.flush()
    stored = _stored(handle.exec_id)
    if as_run:
        ((kind, correlation_id, payload),) = stored  # one row for the three runs
        assert (kind, correlation_id) == ("~P", None)
        assert payload.count("\x1e") == 2
    else:
        assert len(stored) == 3  # one row per checkpoint run
        assert all(kind.startswith("~p") and payload == "" for kind, _, payload in stored)

    store = get_backend().store
    events = store.events(handle.exec_id)
    assert [e.seq for e in events] == [1, 2, 3, 4, 5, 6]
    assert [e.kind for e in events] == [STARTED, RETURNED] * 3
    assert [e.call_id for e in events] == [
        "quiet",
        "quiet",
        "quiet:2",
        "quiet:2",
        "quiet:3",
        "quiet:3",
    ]
    assert [e.index for e in events] == [0, 1] * 3
    for started, returned in zip(events[::2], events[1::2], strict=True):
        assert started.correlation_id == returned.correlation_id
        assert started.correlation_id.startswith("kitaru.checkpoint:quiet:")
        assert started.payload == {
            "kitaru": {
                "source": "kitaru",
                "execution_id": handle.exec_id,
                "checkpoint_id": started.call_id,
                "checkpoint_name": "quiet",
                "correlation_id": started.correlation_id,
            },
            "status": "started",
        }
        assert returned.payload["status"] == "returned"
        assert started.ts <= returned.ts

    # A cursor between the two halves of a pair, and limits that cut through pairs.
    assert [(e.seq, e.kind) for e in store.events(handle.exec_id, after=1, limit=2)] == [
        (2, RETURNED),
        (3, STARTED),
    ]
    assert [e.seq for e in store.events(handle.exec_id, limit=3)] == [1, 2, 3]
    assert [e.seq for e in store.events(handle.exec_id, after=5)] == [6]
    assert store.events(handle.exec_id, after=6) == []
    # Kind filters take one half of a pair; a pair whose wanted half is behind the
    # cursor does not use up the limit.
    assert [e.seq for e in store.events(handle.exec_id, kinds=[RETURNED])] == [2, 4, 6]
    assert [e.seq for e in store.events(handle.exec_id, kinds=[STARTED], after=1, limit=1)] == [3]
    second = events[2].correlation_id
    assert [e.seq for e in store.events(handle.exec_id, correlation_ids=[second])] == [3, 4]
    assert [e.seq for e in store.events(handle.exec_id, checkpoint="quiet:3")] == [5, 6]

    # The client's stream, and resuming it from a cursor between a pair's halves.
    client = KitaruClient().executions
    streamed = list(client.events(handle.exec_id, reconnect=False))
    assert [(e.cursor, e.kind) for e in streamed] == [(str(e.seq), e.kind) for e in events]
    resumed = list(client.events(handle.exec_id, since=streamed[2].cursor, reconnect=False))
    assert [e.cursor for e in resumed] == ["4", "5", "6"]


def test_a_started_event_joined_by_its_returned_one_is_one_pair_row(any_store: str) -> None:
    """The runtime joins a quiet run's two events before queueing the second
    (``EventRow.returned_ts``); a row that claims a join it cannot be is refused whole."""
    from kitaru._store._events import EventRow
    from kitaru.errors import KitaruUsageError

    handle = quiet_steps.run(5)
    handle.wait(timeout=30)
    kitaru.events.flush()
    store = get_backend().store
    before = _stored(handle.exec_id)
    joined = EventRow(
        exec_id=handle.exec_id,
        kind=STARTED,
        payload="",
        ts=100.0,
        call_id="extra",
        checkpoint="quiet",
        correlation_id="kitaru.checkpoint:quiet:00ff",
        index=0,
        returned_ts=100.25,
    )
    store.insert_events([joined])
    assert _stored(handle.exec_id)[len(before) :] == [("~p250000", "00ff", "")]
    last = store.events(handle.exec_id)[-2:]
    assert [(e.kind, e.index, e.ts, e.call_id) for e in last] == [
        (STARTED, 0, 100.0, "extra"),
        (RETURNED, 1, 100.25, "extra"),
    ]
    assert last[0].correlation_id == last[1].correlation_id == "kitaru.checkpoint:quiet:00ff"

    for bad in (
        {"kind": "my.kind"},
        {"payload": '{"x": 1}'},
        {"index": None},
        {"returned_ts": "later"},
        {"returned_ts": float("nan")},
    ):
        row = EventRow(
            **{
                name: getattr(joined, name)
                for name in (
                    "exec_id",
                    "kind",
                    "payload",
                    "ts",
                    "call_id",
                    "checkpoint",
                    "correlation_id",
                    "index",
                    "returned_ts",
                )
            }
            | bad
        )
        with pytest.raises(KitaruUsageError, match="returned_ts"):
            store.insert_events([joined, row])
        assert len(_stored(handle.exec_id)) == len(before) + 1  # nothing of the batch


@checkpoint
def named(n: int) -> int:
    return n


@flow
def named_steps() -> int:
    # An automatic id, an explicit one that names another checkpoint's way, one holding
    # a run's separator (stored as a pair row), and a checkpoint named like a call id.
    return named(1) + named(2, id="other:7") + named(3, id="odd\x1eid") + named(4)


def test_a_run_keeps_call_ids_and_checkpoint_names_it_cannot_derive(any_store: str) -> None:
    handle = named_steps.run()
    assert handle.wait(timeout=30) == 10
    kitaru.events.flush()
    kinds = [kind[:2] for kind, _, _ in _stored(handle.exec_id)]
    assert kinds == ["~P", "~p", "~p"]  # named, other:7 | odd\x1eid | named:2
    events = get_backend().store.events(handle.exec_id)
    assert [(e.seq, e.call_id, e.checkpoint, e.kind) for e in events] == [
        (seq, call_id, "named", kind)
        for seq, (call_id, kind) in enumerate(
            [
                (call_id, kind)
                for call_id in ("named", "other:7", "odd\x1eid", "named:2")
                for kind in (STARTED, RETURNED)
            ],
            start=1,
        )
    ]
    for started, returned in zip(events[::2], events[1::2], strict=True):
        assert started.correlation_id == returned.correlation_id
        assert started.correlation_id.startswith(
            f"kitaru.checkpoint:named:{call_token(started.call_id)}"
        )
    assert len({e.correlation_id for e in events}) == 4
    other = get_backend().store.events(handle.exec_id, checkpoint="other:7")
    assert [(e.seq, e.kind) for e in other] == [(3, STARTED), (4, RETURNED)]


@pytest.mark.parametrize("as_run", [True, False], ids=["one run row", "pair rows"])
def test_compact_rows_give_back_each_event_in_the_microsecond_it_was_published(
    any_store: str, as_run: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Times inside pair and run rows are whole microseconds: differences of unrounded
    times read back one microsecond off about half the time."""
    import random
    from datetime import UTC, datetime

    from kitaru._store._event_codes import lane_correlation
    from kitaru._store._events import EventRow

    if not as_run:
        monkeypatch.setattr(_event_codes, "RUN_MAX", 1)
    rnd = random.Random(7)
    truth: list[float] = []
    rows = []
    ts = 1796044560.0
    for number in range(1, 21):
        call_id = "step" if number == 1 else f"step:{number}"
        started = ts = ts + rnd.random() * 1e-3
        returned = started + rnd.random() * 1e-5
        correlation = lane_correlation("step", call_id, "1.1")
        rows.append(
            EventRow(
                "e-us", STARTED, "", started, call_id, "step", correlation, 0, returned_ts=returned
            )
        )
        truth += [started, returned]
    store = get_backend().store
    store.insert_events(rows)
    kinds = {kind[:2] for kind, _, _ in _stored("e-us")}
    assert kinds == ({"~P"} if as_run else {"~p"})

    def shown(ts: float) -> str:
        return datetime.fromtimestamp(ts, tz=UTC).isoformat()

    assert [shown(e.ts) for e in store.events("e-us")] == [shown(t) for t in truth]

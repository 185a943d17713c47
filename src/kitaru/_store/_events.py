"""Storing and reading execution events (``kitaru.events``, ``kitaru.progress``).

Each execution has its own stream of events numbered 1, 2, ... (``seq``); the
number is the cursor a reader resumes from. A batch takes ``max(seq) + 1``
onwards in the same transaction that inserts it, and ``(exec_id, seq)`` is the
primary key, so two writers racing for the same numbers cannot both commit:
on PostgreSQL the second insert waits for the first and then fails with a
unique violation, and is retried with fresh numbers; SQLite has one writer at
a time anyway. Hence a position is only ever visible once every earlier
position is, and a reader following ``seq > cursor`` never skips an event that
commits late (which an autoincrement id shared by concurrent writers would).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kitaru._lazy import LazyModule
from kitaru._store._columns import EVENT_WIDTHS, EVENTS
from kitaru._store._logs import escape_for_store
from kitaru.errors import KitaruBackendError

if TYPE_CHECKING:
    import sqlalchemy as sa

    from kitaru._store import schema as t
else:  # imported on first use (see _lazy)
    sa = LazyModule("sqlalchemy")
    t = LazyModule("kitaru._store.schema")

Write = Callable[[], contextlib.AbstractContextManager["sa.Connection"]]
Read = Callable[[], contextlib.AbstractContextManager["sa.Connection"]]

#: Attempts at a batch whose positions another writer took meanwhile.
_CONFLICT_RETRIES = 20
#: One slice of waiting for another writer's lock on PostgreSQL (20 slices in all).
_LOCK_WAIT_MS = 1_000


@dataclass(frozen=True, slots=True)
class EventRow:
    """An event to store (``payload`` is its JSON document, already serialized)."""

    exec_id: str
    kind: str
    payload: str
    ts: float
    call_id: str | None = None
    checkpoint: str | None = None
    correlation_id: str | None = None
    index: int | None = None
    #: Text already escaped and cut to its columns' widths (see ``storable``).
    prepared: bool = False


@dataclass(frozen=True, slots=True)
class EventRecord:
    """A stored event; ``seq`` is its position in the execution's stream."""

    exec_id: str
    seq: int
    kind: str
    payload: dict[str, Any]
    ts: float
    call_id: str | None
    checkpoint: str | None
    correlation_id: str | None
    index: int | None


#: The insert as plain SQL with positional parameters: a batch goes to the driver's
#: executemany in one call. Events are written on a background thread that shares
#: the GIL with the flow, so their per-row Python cost is paid by the checkpoints.
_INSERT_COLUMNS = ("exec_id", "seq", "kind", "call_id", "checkpoint", "correlation_id", "idx")
_INSERT_SQL = {
    style: (
        f"INSERT INTO {EVENTS} ({', '.join((*_INSERT_COLUMNS, 'payload', 'ts'))}) "
        f"VALUES ({', '.join([mark] * (len(_INSERT_COLUMNS) + 2))})"
    )
    for style, mark in (("qmark", "?"), ("format", "%s"))
}


def storable(value: str | None, name: str) -> str | None:
    """``value`` as column ``name`` holds it: escaped for the store, cut to the column's width."""
    return None if value is None else escape_for_store(value)[: EVENT_WIDTHS[name]]


def _row(event: EventRow, seq: int) -> tuple[Any, ...]:
    """The values of ``event`` at position ``seq``, in ``_INSERT_SQL``'s order.

    Text is escaped here unless the writer did it already (``prepared``: once per
    checkpoint run for the columns all of its events share). A compact lifecycle
    event is stored shorter still (see ``_COMPACT_CODES``).
    """
    if event.prepared:
        kind, checkpoint, correlation_id = event.kind, event.checkpoint, event.correlation_id
        call_id, payload = event.call_id, event.payload
    else:
        kind = storable(event.kind, "kind") or ""
        call_id = storable(event.call_id, "call_id")
        checkpoint = storable(event.checkpoint, "checkpoint")
        correlation_id = storable(event.correlation_id, "correlation_id")
        payload = escape_for_store(event.payload)
    if payload == "":
        code = _COMPACT_CODES.get(kind)
        if code is not None:
            kind = code
            correlation_id = _short_correlation(correlation_id, checkpoint)
    return (
        event.exec_id,
        seq,
        kind,
        call_id,
        checkpoint,
        correlation_id,
        event.index,
        payload,
        event.ts,
    )


def insert_events(write: Write, events: Sequence[EventRow], *, postgres: bool = False) -> None:
    """Append ``events`` to their executions' streams, in order; raises if the store fails.

    One transaction for the whole batch (one commit, however many executions it
    spans). On PostgreSQL, writers of one execution queue on a transaction-level
    advisory lock first, so they seldom race for positions at all (the retry stays
    as a net); the locks are taken in execution id order, so two writers never wait
    for each other in a cycle.
    """
    by_exec = sorted(_by_exec(events).items())
    for attempt in range(_CONFLICT_RETRIES):
        try:
            with write() as conn:
                for exec_id, batch in by_exec:
                    _append(conn, exec_id, batch, postgres=postgres)
            break
        except sa.exc.IntegrityError:
            # Another process (an isolated checkpoint's, say) took these
            # positions first: number the batch again after its events.
            if attempt == _CONFLICT_RETRIES - 1:
                raise
            time.sleep(random.uniform(0, 0.005 * (attempt + 1)))  # break lockstep
        except KitaruBackendError as exc:
            if not _lock_timed_out(exc) or attempt == _CONFLICT_RETRIES - 1:
                raise


def _by_exec(events: Sequence[EventRow]) -> dict[str, list[EventRow]]:
    by_exec: dict[str, list[EventRow]] = {}
    for event in events:
        by_exec.setdefault(event.exec_id, []).append(event)
    return by_exec


def _append(conn: sa.Connection, exec_id: str, batch: list[EventRow], *, postgres: bool) -> None:
    """Append one execution's events after its last position, in ``conn``'s transaction."""
    ev = t.events.c
    if postgres:
        # Bounded: a writer stopped inside its transaction (SIGSTOP) holds the lock
        # until the server ends its session (see engine._STUCK_TRANSACTION_MS); wait
        # in slices meanwhile.
        conn.exec_driver_sql(f"SET LOCAL lock_timeout = {_LOCK_WAIT_MS}")
        conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_lock_key(exec_id))))
    last = conn.execute(sa.select(sa.func.max(ev.seq)).where(ev.exec_id == exec_id)).scalar()
    conn.exec_driver_sql(_INSERT_SQL["format" if postgres else "qmark"], _after(last, batch))


def _after(last: int | None, batch: list[EventRow]) -> list[tuple[Any, ...]]:
    """Insert rows of ``batch``, numbered on from the execution's last position."""
    base = last or 0
    return [_row(event, base + i) for i, event in enumerate(batch, 1)]


def append_in_transaction(
    conn: sa.Connection, events: Sequence[EventRow], *, postgres: bool
) -> None:
    """Append ``events`` inside the caller's transaction, best effort: events the store
    refuses are left out (a savepoint undoes them) and reported, the transaction goes on."""
    for exec_id, batch in _by_exec(events).items():
        try:
            with conn.begin_nested():
                _append(conn, exec_id, batch, postgres=postgres)
        except sa.exc.SQLAlchemyError as exc:
            report_unstored(batch, exc)


def append_with_cursor(cursor: Any, events: Sequence[EventRow]) -> None:
    """``_append`` on a SQLite driver cursor inside its open write transaction."""
    for exec_id, batch in _by_exec(events).items():
        last = cursor.execute(_LAST_SQL, (exec_id,)).fetchone()[0]
        cursor.executemany(_INSERT_SQL["qmark"], _after(last, batch))


_LAST_SQL = f"SELECT max(seq) FROM {EVENTS} WHERE exec_id = ?"


def report_unstored(events: Sequence[EventRow], exc: BaseException) -> None:
    logging.getLogger("kitaru.events").warning(
        "Kitaru could not store the last %d events of execution %s (%s); watchers "
        "of `client.executions.events()` will not see them.",
        len(events),
        events[0].exec_id if events else "?",
        str(exc).split("\n", 1)[0][:300],
    )


def _lock_timed_out(exc: BaseException) -> bool:
    cause = exc.__cause__
    orig = getattr(cause, "orig", None)
    return getattr(orig, "sqlstate", None) == "55P03"  # lock_not_available


def _lock_key(exec_id: str) -> int:
    """A stable signed 64-bit key per execution (the same in every process)."""
    digest = hashlib.blake2b(f"kitaru.events:{exec_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def read_events(
    read: Read,
    exec_id: str,
    *,
    after: int = 0,
    kinds: Sequence[str] | None = None,
    checkpoint: str | None = None,
    correlation_ids: Sequence[str] | None = None,
    limit: int | None = None,
) -> list[EventRecord]:
    """Events after position ``after``, oldest first; ``checkpoint`` is a name or call id."""
    ev = t.events.c
    query = sa.select(t.events).where(ev.exec_id == exec_id, ev.seq > after).order_by(ev.seq)
    compact = ev.payload == ""  # a compact lifecycle event's row (see _COMPACT_CODES)
    # Its kind and correlation id are read as their full values, not as stored.
    coded = sa.and_(compact, ev.kind.in_(list(_FROM_CODE)))
    if kinds is not None:
        codes = [_COMPACT_CODES[k] for k in kinds if k in _COMPACT_CODES]
        query = query.where(
            sa.or_(
                sa.and_(ev.kind.in_(list(kinds)), sa.not_(coded)),
                sa.and_(compact, ev.kind.in_(codes)),
            )
        )
    if checkpoint is not None:
        query = query.where(sa.or_(ev.checkpoint == checkpoint, ev.call_id == checkpoint))
    if correlation_ids is not None:
        short = [
            (name, suffix)
            for name, suffix in map(_split_correlation, correlation_ids)
            if suffix is not None
        ]
        whole = [cid for cid in correlation_ids if ":" in cid]  # never a shortened one
        bare = [cid for cid in correlation_ids if ":" not in cid]
        query = query.where(
            sa.or_(
                ev.correlation_id.in_(whole),
                sa.and_(ev.correlation_id.in_(bare), sa.not_(coded)),
                *[
                    sa.and_(coded, ev.checkpoint == name, ev.correlation_id == suffix)
                    for name, suffix in short
                ],
            )
        )
    if limit is not None:
        query = query.limit(limit)
    with read() as conn:
        rows = conn.execute(query).all()
    return [_record(row._mapping) for row in rows]


#: Lifecycle events stored without a payload, and the status their document names.
_COMPACT_KINDS = {
    "kitaru.checkpoint.started": "started",
    "kitaru.checkpoint.returned": "returned",
}
#: Two of these are stored per checkpoint, so their rows are kept short: the kind as a
#: code, and the automatic correlation id ``kitaru.checkpoint:<checkpoint>:<hex>`` as
#: its ``<hex>`` (the rest is in the ``checkpoint`` column). Only rows with an empty
#: payload are read this way (no other event has one), so older rows and user events
#: named like a code read as they were written.
_COMPACT_CODES = {"kitaru.checkpoint.started": "~s", "kitaru.checkpoint.returned": "~r"}
_FROM_CODE = {code: kind for kind, code in _COMPACT_CODES.items()}
_CORRELATION_PREFIX = "kitaru.checkpoint:"


def _short_correlation(correlation_id: str | None, checkpoint: str | None) -> str | None:
    if correlation_id is None or checkpoint is None:
        return correlation_id
    name, suffix = _split_correlation(correlation_id)
    return suffix if name == checkpoint and suffix is not None else correlation_id


def _split_correlation(correlation_id: str) -> tuple[str | None, str | None]:
    """``(checkpoint, hex)`` of an automatic correlation id; ``(None, None)`` otherwise."""
    if not correlation_id.startswith(_CORRELATION_PREFIX):
        return None, None
    name, colon, suffix = correlation_id[len(_CORRELATION_PREFIX) :].rpartition(":")
    if not colon or not suffix or ":" in suffix:
        return None, None
    return name, suffix


def _record(row: Any) -> EventRecord:
    text = row["payload"]
    kind, correlation_id = row["kind"], row["correlation_id"]
    status = None
    if text == "":
        kind = _FROM_CODE.get(kind, kind)
        status = _COMPACT_KINDS.get(kind)
        if (
            status is not None
            and correlation_id is not None
            and row["checkpoint"] is not None
            and ":" not in correlation_id
        ):
            correlation_id = f"{_CORRELATION_PREFIX}{row['checkpoint']}:{correlation_id}"
    if status is not None:
        payload: Any = {"kitaru": _kitaru_block(row, correlation_id), "status": status}
    else:
        try:
            payload = json.loads(text)
        except ValueError:
            payload = {"raw": text}
    return EventRecord(
        exec_id=row["exec_id"],
        seq=row["seq"],
        kind=kind,
        payload=payload if isinstance(payload, dict) else {"value": payload},
        ts=row["ts"],
        call_id=row["call_id"],
        checkpoint=row["checkpoint"],
        correlation_id=correlation_id,
        index=row["idx"],
    )


def _kitaru_block(row: Any, correlation_id: str | None) -> dict[str, Any]:
    """Kitaru's own block of a compact lifecycle event, from the row's columns."""
    return {
        "source": "kitaru",
        "execution_id": row["exec_id"],
        "checkpoint_id": row["call_id"],
        "checkpoint_name": row["checkpoint"],
        "correlation_id": correlation_id,
    }


def delete_events(conn: sa.Connection, exec_id: str) -> None:
    conn.execute(t.events.delete().where(t.events.c.exec_id == exec_id))

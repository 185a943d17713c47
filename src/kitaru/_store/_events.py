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
import json
import logging
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kitaru._lazy import LazyModule
from kitaru._store import _event_codes as codes
from kitaru._store._columns import EVENT_WIDTHS, EVENTS, EXECUTIONS
from kitaru._store._logs import escape_for_store
from kitaru.errors import KitaruBackendError, KitaruUsageError

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


@dataclass(slots=True)  # not frozen: two are built per checkpoint, and frozen costs 3x
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
    #: Set on a plain started event: its run's plain returned event followed at this
    #: time, with the next index, and is stored with it as one pair row.
    returned_ts: float | None = None
    #: The fence of the run that published it: a run that lost the execution (taken
    #: over meanwhile) has its events dropped, as its other writes are refused. None:
    #: not fenced.
    fence: int | None = None


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
    if value is None:
        return None
    if value.isascii() and "\x00" not in value:  # the usual case: nothing to escape
        return value[: EVENT_WIDTHS[name]]
    return escape_for_store(value)[: EVENT_WIDTHS[name]]


def _row(event: EventRow, seq: int) -> tuple[Any, ...]:
    """The values of ``event`` at position ``seq``, in ``_INSERT_SQL``'s order.

    Text is escaped here unless the writer did it already (``prepared``: once per
    checkpoint run for the columns all of its events share). A compact lifecycle
    event is stored shorter still (see ``_event_codes``).
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
        code = codes.CODES.get(kind)
        if code is not None:
            kind = code
            correlation_id = codes.short_correlation(correlation_id, checkpoint)
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
    if _fenced(batch):
        ex = t.executions.c
        query = sa.select(ex.fence).where(ex.id == exec_id)
        # As every fenced write: a claim in flight commits first, or waits for this.
        # After the position lock, always: a run's end appends its last events (this
        # lock, then this row) before it updates the row, so no one holds the row
        # while waiting for the lock.
        current = conn.execute(query.with_for_update(read=True) if postgres else query).scalar()
        batch = _of_the_owner(batch, current)
        if not batch:
            return
    last = conn.execute(sa.select(sa.func.max(ev.seq)).where(ev.exec_id == exec_id)).scalar()
    conn.exec_driver_sql(_INSERT_SQL["format" if postgres else "qmark"], _after(last, batch))


def _fenced(batch: list[EventRow]) -> bool:
    return any(event.fence is not None for event in batch)


def _of_the_owner(batch: list[EventRow], current: int | None) -> list[EventRow]:
    """The events of ``batch`` the execution's current owner may store: unfenced ones,
    and those of the run holding fence ``current`` (None: the execution is gone)."""
    return [e for e in batch if e.fence is None or (current is not None and e.fence == current)]


def _after(last: int | None, batch: list[EventRow]) -> list[tuple[Any, ...]]:
    """Insert rows of ``batch`` (one execution's), numbered on from its last position.

    A plain started event directly followed by its returned event is one pair row
    at the returned event's position, and consecutive pairs are one run row at the
    last position of the run (see ``_event_codes``).
    """
    # (event, its returned event's ts for a pair, else None), in order.
    units: list[tuple[EventRow, float | None]] = []
    i, count = 0, len(batch)
    while i < count:
        event = batch[i]
        if event.returned_ts is not None:  # joined by the runtime already
            _check_joined(event)
            units.append((event, event.returned_ts))
            i += 1
        elif i + 1 < count and _pairs(event, batch[i + 1]):
            units.append((event, batch[i + 1].ts))
            i += 2
        else:
            units.append((event, None))
            i += 1
    rows: list[tuple[Any, ...]] = []
    position = last or 0
    k = 0
    while k < len(units):
        event, returned = units[k]
        if returned is None:
            position += 1
            rows.append(_row(event, position))
            k += 1
            continue
        run = _run_from(units, k)
        if len(run) > 1:
            position += 2 * len(run)
            rows.append(_run_row(run, position))
            k += len(run)
            continue
        position += 2
        row = _row(event, position)
        started = codes.micros(event.ts) / 1e6  # see codes.micros
        rows.append((*row[:2], codes.pair_kind(event.ts, returned), *row[3:8], started))
        k += 1
    return rows


#: A pair in a run: (started event, returned ts, (call id, checkpoint, correlation suffix)).
_RunPair = tuple[EventRow, float, tuple[str, str, str]]


def _run_from(units: list[tuple[EventRow, float | None]], start: int) -> list[_RunPair]:
    """The pairs from ``units[start]`` on that one run row can stand for."""
    run: list[_RunPair] = []
    for event, returned in units[start : start + codes.RUN_MAX]:
        if returned is None or not isinstance(event.index, int):
            break
        if event.prepared:
            call_id, checkpoint, correlation_id = (
                event.call_id,
                event.checkpoint,
                event.correlation_id,
            )
        else:
            call_id = storable(event.call_id, "call_id")
            checkpoint = storable(event.checkpoint, "checkpoint")
            correlation_id = storable(event.correlation_id, "correlation_id")
        suffix = codes.run_suffix(correlation_id, checkpoint, call_id)
        if suffix is None or call_id is None or checkpoint is None:
            break
        run.append((event, returned, (call_id, checkpoint, suffix)))
    return run


def _run_row(run: list[_RunPair], position: int) -> tuple[Any, ...]:
    """The run row standing for ``run``'s pairs, the last at ``position``."""
    first = codes.micros(run[0][0].ts)  # times in whole microseconds: see codes.micros
    entries = []
    for event, returned, (call_id, checkpoint, suffix) in run:
        started = codes.micros(event.ts)
        entries.append(
            codes.run_entry(
                call_id,
                checkpoint,
                suffix,
                event.index or 0,
                started - first,
                codes.micros(returned) - started,
            )
        )
    payload = codes.RUN_SEPARATOR.join(entries)
    exec_id = run[0][0].exec_id
    return (exec_id, position, codes.RUN, None, None, None, None, payload, first / 1e6)


def _check_joined(event: EventRow) -> None:
    """A started event with ``returned_ts`` must be one a pair row can stand for (the
    runtime only joins such; a row sent over HTTP is checked here)."""
    ts, returned = event.ts, event.returned_ts
    if not (
        event.kind == codes.STARTED
        and event.payload == ""
        and isinstance(event.index, int)
        and isinstance(ts, int | float)
        and isinstance(returned, int | float)
        and not isinstance(returned, bool)
        and abs(returned - ts) < 1e9  # also false for NaN and infinity
    ):
        raise KitaruUsageError(
            f"Event of kind {event.kind!r} at ts={ts!r} has returned_ts={returned!r}; only "
            "a plain kitaru.checkpoint.started event (empty payload, an index) may carry "
            "the time of its returned event."
        )


def _pairs(started: EventRow, returned: EventRow) -> bool:
    """Whether two events of a batch are one checkpoint run's plain started, returned."""
    return (
        started.kind == codes.STARTED
        and returned.kind == codes.RETURNED
        and started.payload == ""
        and returned.payload == ""
        and started.index is not None
        and returned.index == started.index + 1
        and returned.call_id == started.call_id
        and returned.checkpoint == started.checkpoint
        and returned.correlation_id == started.correlation_id
        and returned.exec_id == started.exec_id
    )


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
        if _fenced(batch):
            last, current = cursor.execute(_LAST_AND_FENCE_SQL, (exec_id, exec_id)).fetchone()
            batch = _of_the_owner(batch, current)
            if not batch:
                continue
        else:
            last = cursor.execute(_LAST_SQL, (exec_id,)).fetchone()[0]
        cursor.executemany(_INSERT_SQL["qmark"], _after(last, batch))


_LAST_SQL = f"SELECT max(seq) FROM {EVENTS} WHERE exec_id = ?"
_LAST_AND_FENCE_SQL = (
    f"SELECT max(seq), (SELECT fence FROM {EXECUTIONS} WHERE id = ?) FROM {EVENTS} "
    "WHERE exec_id = ?"
)


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
    import hashlib  # only PostgreSQL locks by this key: OpenSSL loads on first use

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
    """Events after position ``after``, oldest first; ``checkpoint`` is a name or call id.

    Compact rows are matched by what they stand for (``_event_codes``): in SQL as
    far as a row goes, then each event a pair row holds on its own.
    """
    ev = t.events.c
    query = sa.select(t.events).where(ev.exec_id == exec_id).order_by(ev.seq)
    compact = ev.payload == ""  # a compact lifecycle event's row
    pair = sa.and_(compact, ev.kind.like(f"{codes.PAIR}%"))
    # Its kind and correlation id are read as their full values, not as stored.
    coded = sa.or_(sa.and_(compact, ev.kind.in_(list(codes.FROM_CODE))), pair)
    # An event run's row: its events' values are in its payload, so the filters below
    # let it through, and its events are matched one by one once read.
    run = ev.kind == codes.RUN
    if kinds is not None:
        wanted = [codes.CODES[k] for k in kinds if k in codes.CODES]
        query = query.where(
            sa.or_(
                sa.and_(ev.kind.in_(list(kinds)), sa.not_(coded)),
                sa.and_(compact, ev.kind.in_(wanted)),
                *([pair, run] if wanted else []),
            )
        )
    if checkpoint is not None:
        query = query.where(sa.or_(ev.checkpoint == checkpoint, ev.call_id == checkpoint, run))
    if correlation_ids is not None:
        short = [
            (name, suffix)
            for name, suffix in map(codes.split_correlation, correlation_ids)
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
                *([run] if short else []),
            )
        )
    if limit is not None:
        query = query.limit(limit)  # rows: each stands for one event or more
    wanted_kinds = None if kinds is None else set(kinds)
    wanted_correlations = None if correlation_ids is None else set(correlation_ids)
    records: list[EventRecord] = []
    bound = after
    with read() as conn:
        while True:
            rows = conn.execute(query.where(ev.seq > bound)).all()
            for row in rows:
                mapping = row._mapping
                from_run = mapping["kind"] == codes.RUN and mapping["payload"] != ""
                for event in codes.expand(mapping):
                    if event["seq"] <= after:
                        continue
                    if wanted_kinds is not None and event["kind"] not in wanted_kinds:
                        continue
                    if from_run and not _run_event_wanted(event, checkpoint, wanted_correlations):
                        continue
                    records.append(_record(event))
            # A pair or run row may hold none of the events asked for (another part
            # was): read on until ``limit`` events are found or the rows run out.
            if limit is None or len(records) >= limit or len(rows) < limit:
                break
            bound = rows[-1].seq
    return records if limit is None else records[:limit]


def _run_event_wanted(
    event: Mapping[str, Any], checkpoint: str | None, correlation_ids: set[str] | None
) -> bool:
    """The checkpoint and correlation filters, for an event of a run row (whose row
    passed them in SQL whatever it holds)."""
    if checkpoint is not None and checkpoint not in (event["checkpoint"], event["call_id"]):
        return False
    return correlation_ids is None or event["correlation_id"] in correlation_ids


def _record(event: Mapping[str, Any]) -> EventRecord:
    """The record of one event ``_event_codes.expand`` gave."""
    correlation_id, status = event["correlation_id"], event["status"]
    if status is not None:
        payload: Any = {"kitaru": _kitaru_block(event, correlation_id), "status": status}
    else:
        try:
            payload = json.loads(event["payload"])
        except ValueError:
            payload = {"raw": event["payload"]}
    return EventRecord(
        exec_id=event["exec_id"],
        seq=event["seq"],
        kind=event["kind"],
        payload=payload if isinstance(payload, dict) else {"value": payload},
        ts=event["ts"],
        call_id=event["call_id"],
        checkpoint=event["checkpoint"],
        correlation_id=correlation_id,
        index=event["idx"],
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

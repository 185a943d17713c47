"""Storing captured log lines so that one bad line never costs the others.

Captured text is whatever user code printed or logged: it may hold lone
surrogates (``"\\udc80"``, from ``surrogateescape``-decoded bytes), which no
UTF-8 database driver can encode, or NUL characters, which PostgreSQL refuses
in text. Such characters are stored escaped (``\\udc80``, ``\\x00``), on every
store alike, so the line stays visible. Free-text names (logger, level) are cut
to their column's width, which PostgreSQL enforces.

If a batch still fails because of its data, each record is retried on its own
and only the ones that cannot be stored are dropped (and returned, for the
caller to report). A failure of the store itself (unreachable, locked, schema
missing) is raised: retrying record by record would only fail again.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from kitaru._lazy import LazyModule
from kitaru._store._columns import LOG_COLUMNS, LOG_WIDTHS, LOGS
from kitaru._store._driver import sqlite3
from kitaru._text import printable_text

if TYPE_CHECKING:
    import sqlalchemy as sa

    from kitaru._store import schema as t
    from kitaru._store.records_extra import LogRecord
else:  # imported on first use (see _lazy)
    sa = LazyModule("sqlalchemy")
    t = LazyModule("kitaru._store.schema")


_TEXT_FIELDS = ("exec_id", "call_id", "checkpoint", "stream", "level", "logger", "message")

Write = Callable[[], contextlib.AbstractContextManager["sa.Connection"]]
_Row = TypeVar("_Row")
#: ``SQLiteDirect.write_many``: (sql, rows, owners of the rows or None).
WriteMany = Callable[[str, list[tuple[Any, ...]], "list[tuple[str, int | None]] | None"], None]


def escape_for_store(text: str) -> str:
    """``text`` with lone surrogates and NUL characters escaped; unchanged otherwise.

    Neither store holds lone surrogates, and PostgreSQL refuses NUL in text.
    """
    if "\x00" in text:
        text = text.replace("\x00", "\\x00")
    return printable_text(text)


def log_row(record: LogRecord) -> dict[str, Any]:
    """The row for ``record``, with every text field storable on SQLite and PostgreSQL."""
    row: dict[str, Any] = {"ts": record.ts}
    for name in _TEXT_FIELDS:
        value = getattr(record, name)
        if isinstance(value, str):
            value = escape_for_store(value)
            width = LOG_WIDTHS.get(name)
            if width is not None and len(value) > width:
                value = value[:width]
        row[name] = value
    return row


def _caused_by_the_data(exc: BaseException) -> bool:
    """Did this insert fail because of what it tried to store (not the store itself)?"""
    if isinstance(exc, (ValueError, TypeError, sa.exc.DataError, sa.exc.IntegrityError)):
        return True
    # Parameter-binding errors raised before the database saw the statement.
    return isinstance(exc, sa.exc.StatementError) and not isinstance(exc, sa.exc.DBAPIError)


def owners(records: Sequence[LogRecord]) -> list[tuple[str, int | None]] | None:
    """(execution, fence) of each record; None when none is fenced (nothing to check)."""
    if all(record.fence is None for record in records):
        return None
    return [(record.exec_id, record.fence) for record in records]


def of_the_owners(
    rows: list[_Row], owned: list[tuple[str, int | None]], current: dict[str, int]
) -> list[_Row]:
    """The rows whose run still owns its execution (``current``: execution -> fence
    now): a stale runner's lines are dropped, as its other writes are refused."""
    return [
        row
        for row, (exec_id, fence) in zip(rows, owned, strict=True)
        if fence is None or current.get(exec_id) == fence
    ]


def _current_fences(conn: sa.Connection, exec_ids: set[str], *, postgres: bool) -> dict[str, int]:
    ex = t.executions.c
    query = sa.select(ex.id, ex.fence).where(ex.id.in_(sorted(exec_ids)))
    if postgres:  # as every fenced write: a claim in flight commits first, or waits
        query = query.with_for_update(read=True)
    return {exec_id: fence for exec_id, fence in conn.execute(query)}


def _insert(conn: sa.Connection, rows: list[dict[str, Any]], owned: Any, postgres: bool) -> None:
    if owned is not None:
        current = _current_fences(conn, {exec_id for exec_id, _ in owned}, postgres=postgres)
        rows = of_the_owners(rows, owned, current)
    if rows:
        conn.execute(t.logs.insert(), rows)


def insert_logs(
    write: Write, records: Sequence[LogRecord], *, postgres: bool = False
) -> list[tuple[LogRecord, Exception]]:
    """Insert ``records``; returns the ones that could not be stored, with why.

    Raises when the store itself fails (nothing more of this batch could be stored).
    """
    if not records:
        return []
    rows = [log_row(r) for r in records]
    owned = owners(records)
    try:
        with write() as conn:
            _insert(conn, rows, owned, postgres)
        return []
    except Exception as exc:
        if not _caused_by_the_data(exc):
            raise
    # One record's data spoiled the batch: store the others one by one.
    unstored: list[tuple[LogRecord, Exception]] = []
    for record, row in zip(records, rows, strict=True):
        try:
            with write() as conn:
                _insert(conn, [row], owners([record]), postgres)
        except Exception as exc:
            if not _caused_by_the_data(exc):
                raise
            unstored.append((record, exc))
    return unstored


#: The direct path's insert (see ``insert_logs_direct``).
_DIRECT_SQL = (
    f"INSERT INTO {LOGS} ({', '.join(LOG_COLUMNS)}) VALUES ({', '.join('?' * len(LOG_COLUMNS))})"
)


def _direct_data_error(exc: BaseException) -> bool:
    """The driver's errors that ``_caused_by_the_data`` sees through SQLAlchemy."""
    return isinstance(exc, (ValueError, TypeError, sqlite3.DataError, sqlite3.IntegrityError))


def insert_logs_direct(
    write_many: WriteMany, records: Sequence[LogRecord]
) -> list[tuple[LogRecord, Exception]]:
    """``insert_logs`` on SQLite's driver connection: ``write_many(sql, rows, owners)``
    commits the rows of the runs that own their executions, or raises the driver's
    error (store failures raised as Kitaru's)."""
    if not records:
        return []
    rows = [tuple(row[name] for name in LOG_COLUMNS) for row in map(log_row, records)]
    try:
        write_many(_DIRECT_SQL, rows, owners(records))
        return []
    except Exception as exc:
        if not _direct_data_error(exc):
            raise
    unstored: list[tuple[LogRecord, Exception]] = []
    for record, row in zip(records, rows, strict=True):
        try:
            write_many(_DIRECT_SQL, [row], owners([record]))
        except Exception as exc:
            if not _direct_data_error(exc):
                raise
            unstored.append((record, exc))
    return unstored

"""PostgreSQL's hot statements straight on the driver: the checkpoint write and the cache lookup.

The write is one statement (data-modifying CTEs) on an autocommit connection,
so a checkpoint costs one round trip. Executing it through SQLAlchemy Core
added about a fifth to that round trip in Python work (compiled-cache lookup,
parameter processing, result wrapping). Here the statement is compiled once and
sent with psycopg on a few connections kept in autocommit mode for this
purpose, taken and given back per write.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import threading
import time
from collections.abc import Hashable, Mapping
from typing import TYPE_CHECKING, Any

from kitaru._lazy import LazyModule
from kitaru._store.engine import server_closed
from kitaru.errors import KitaruBackendError

if TYPE_CHECKING:
    import sqlalchemy as sa
else:  # imported on first use (see _lazy)
    sa = LazyModule("sqlalchemy")

#: Connections kept for the fast path (more concurrent writers use the pool).
_MAX_CONNECTIONS = 16
#: A kept connection is replaced after this long (the pool's hourly recycling, shorter:
#: it also limits how long a connection the server dropped can sit idle here).
_RECYCLE_SECONDS = 300.0


class _Compiled:
    #: The result's column names, learnt from the first execution (the same SQL always
    #: returns the same columns; psycopg builds its description anew on every call).
    labels: list[str] | None = None

    def __init__(self, statement: Any, dialect: sa.Dialect) -> None:
        if isinstance(statement, str):  # SQL written for psycopg already
            self.sql, self.defaults, self.json = statement, {}, []
            return
        compiled = statement.compile(dialect=dialect)
        self.sql = str(compiled)
        # Literal values the statement binds itself (the guard's status).
        self.defaults = {k: v for k, v in compiled.params.items() if v is not None}
        self.json = [k for k, bind in compiled.binds.items() if isinstance(bind.type, sa.JSON)]


class _Kept:
    __slots__ = ("born", "cursor", "pooled")

    def __init__(self, pooled: Any) -> None:
        self.pooled = pooled
        driver = pooled.driver_connection
        driver.autocommit = True
        self.cursor = driver.cursor()
        self.born = time.monotonic()


class PgDirect:
    """Compiled statements and the autocommit connections that send them."""

    def __init__(self, engine: sa.Engine, statements: Mapping[Any, Any]) -> None:
        self._engine = engine
        self._compiled = {key: _Compiled(st, engine.dialect) for key, st in statements.items()}
        self._idle: queue.SimpleQueue[_Kept] = queue.SimpleQueue()
        self._count = 0
        self._lock = threading.Lock()
        self._pid = os.getpid()

    def fetch(self, key: Hashable, params: dict[str, Any]) -> dict[str, Any] | None:
        """The statement's first row by column name (None if none).

        JSON columns come back decoded (psycopg's own loaders), bytea as bytes.
        ``AllBusy`` when every kept connection is in use (then use the pool).
        """
        compiled = self._compiled[key]
        params.update(compiled.defaults)
        for name in compiled.json:
            value = params.get(name)
            if value is not None:
                params[name] = json.dumps(value)
        try:
            return self._execute(compiled, params)
        except _SessionEnded:
            # The server ended the session before the statement ran (or ran it in a
            # transaction it then rolled back): a restart ends them all; on a new one, once.
            self._discard_idle()
            return self._execute(compiled, params, retry=False)

    def _execute(
        self, compiled: _Compiled, params: dict[str, Any], *, retry: bool = True
    ) -> dict[str, Any] | None:
        import psycopg

        kept = self._take()
        if kept is None:
            raise AllBusy
        try:
            cursor = kept.cursor
            cursor.execute(compiled.sql, params, prepare=True)
            row = cursor.fetchone()
            labels = compiled.labels
            if labels is None and row is not None:
                labels = compiled.labels = [d.name for d in cursor.description or ()]
        except psycopg.Error as exc:
            self._discard(kept)
            if retry and getattr(exc, "sqlstate", None) in _SESSION_ENDED_STATES:
                raise _SessionEnded from exc
            raise KitaruBackendError(f"The Kitaru store failed to write: {exc}") from exc
        except BaseException:
            self._discard(kept)  # its state is unknown (interrupted mid-statement)
            raise
        self._idle.put(kept)
        return None if row is None or labels is None else dict(zip(labels, row, strict=True))

    def _take(self) -> _Kept | None:
        if os.getpid() != self._pid:  # a forked child never uses its parent's sockets
            self._forget_after_fork()
        while True:
            try:
                kept = self._idle.get_nowait()
            except queue.Empty:
                break
            if time.monotonic() - kept.born < _RECYCLE_SECONDS and not server_closed(
                kept.pooled.driver_connection
            ):
                return kept
            self._discard(kept)  # too old, or the server ended it (see server_closed)
        with self._lock:
            if self._count >= _MAX_CONNECTIONS:
                return None
            self._count += 1
        try:
            return _Kept(self._engine.raw_connection())
        except BaseException:
            with self._lock:
                self._count -= 1
            raise

    def _discard_idle(self) -> None:
        """Drop every kept connection: a server that ended one (a restart) ended them all."""
        while True:
            try:
                self._discard(self._idle.get_nowait())
            except queue.Empty:
                return

    def _discard(self, kept: _Kept) -> None:
        with self._lock:
            self._count -= 1
        with contextlib.suppress(Exception):  # closing a broken connection may fail too
            kept.pooled.invalidate()  # closed, not given back to the pool

    def _forget_after_fork(self) -> None:
        # Drop the references without closing: closing would end the parent's sessions.
        _inherited.append(self._idle)
        self._idle = queue.SimpleQueue()
        self._count = 0
        self._pid = os.getpid()

    def idle_connections(self) -> list[Any]:
        """The psycopg connections kept here and free now (for diagnostics and benchmarks)."""
        kept: list[_Kept] = []
        while True:
            try:
                kept.append(self._idle.get_nowait())
            except queue.Empty:
                break
        for item in kept:
            self._idle.put(item)
        return [item.pooled.driver_connection for item in kept]

    def close(self) -> None:
        if os.getpid() != self._pid:
            return
        while True:
            try:
                kept = self._idle.get_nowait()
            except queue.Empty:
                return
            with self._lock:
                self._count -= 1
            kept.pooled.driver_connection.autocommit = False
            kept.pooled.close()  # back to the pool, which the store then disposes


#: SQLSTATEs of a session the server ended (admin, crash or immediate shutdown, idle
#: timeout): an autocommit statement that gets one did not commit.
_SESSION_ENDED_STATES = frozenset({"57P01", "57P02", "57P03", "57P05"})


class _SessionEnded(Exception):
    """A statement refused because the server ended its session (not committed)."""


class AllBusy(Exception):
    """Every kept connection is in use: run the statement the usual way."""


#: Connection queues inherited over fork(): kept alive so they are never closed here.
_inherited: list[Any] = []

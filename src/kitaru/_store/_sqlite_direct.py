"""SQLite's hot statements straight on the driver (the counterpart of ``_pg_direct``).

A checkpoint's write, the cache lookup before it, the end of a run and the load
of an execution's calls on resume run here on one ``sqlite3`` connection kept
for the process, with SQL written once (``_statements._SQLiteStatements``).
SQLite has one writer at a time and the store's writer lock already serialises
this process's writes, so one connection is all they need; skipping SQLAlchemy's
per-statement machinery (pool checkout, reset, parameter processing) is what
keeps a checkpoint close to the cost of its commit.

Group commit: the writes of threads that queue up while another thread commits
(many executions running at once, a fan-out) go into the next transaction
together, each in its own savepoint, so one fsync covers them all. A caller is
released only after the commit that covers its write; a write that fails (a
stale owner, say) is undone alone and its error goes to its caller only.
"""

from __future__ import annotations

import _thread
import contextlib
import copy
import json
import operator
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from kitaru._lazy import LazyModule
from kitaru._store import _logs, call_outputs
from kitaru._store._columns import ARTIFACT_COLUMNS, ARTIFACTS, CALL_COLUMNS, CALLS, EXECUTIONS
from kitaru._store._driver import sqlite3
from kitaru._store._statements import _SQLiteStatements
from kitaru._store.engine import damaged_store_error
from kitaru._store.records import (
    SAVED_KIND,
    ArtifactRecord,
    CallRecord,
    ExecutionRecord,
    ExecutionStatus,
    RecordedCall,
    StaleOwnerError,
)
from kitaru.errors import KitaruBackendError

if TYPE_CHECKING:
    import sqlalchemy as sa

    from kitaru._store import _events
    from kitaru._store.records_extra import AttemptRecord
else:  # imported once a run ends with events to store (see _lazy)
    _events = LazyModule("kitaru._store._events")

_RUNNING = ExecutionStatus.RUNNING.value

#: Opens the writer's connection: (what to close it with, the driver connection).
Connect = Callable[[], tuple[Callable[[], None], sqlite3.Connection]]

_T = TypeVar("_T")

#: Where a call's ``artifact_id`` is among its statement's parameters.
_ARTIFACT_ID = CALL_COLUMNS.index("artifact_id")
#: Most writes one transaction takes (bounds the time a caller waits for the others).
_MAX_GROUP = 64


class _Write(Generic[_T]):
    """One caller's write, waiting for the commit that covers it."""

    __slots__ = ("done", "error", "lead", "op", "result", "single", "wake")

    def __init__(self, op: Callable[[sqlite3.Cursor], _T], single: bool) -> None:
        self.op = op
        #: ``op`` is one write statement: SQLite's own transaction is enough (see
        #: SQLiteDirect._transaction), and in a shared one it needs no savepoint.
        self.single = single
        self.done = False
        #: This caller commits the queue (see SQLiteDirect._grouped).
        self.lead = False
        self.result: _T | None = None
        self.error: BaseException | None = None
        #: Held until the caller may go on: done, or made the one that commits.
        self.wake: Any = None


class SQLiteDirect:
    def __init__(
        self,
        connect: Connect,
        path: Path | None,
        engine: Callable[[], sa.Engine],
        statements: _SQLiteStatements,
        writer_lock: contextlib.AbstractContextManager[Any],
        stale: Callable[[str, int | None], StaleOwnerError],
    ) -> None:
        self._connect = connect
        self._path = path  # the store file, for damaged-file errors
        self._engine = engine  # the store's engine, created on first use (reads)
        self._fast = statements
        self._lock = writer_lock
        self._stale = stale
        # (pid, close, cursor); see _cursor().
        self._writer: tuple[int, Callable[[], None], sqlite3.Cursor] | None = None
        # Writes waiting for a transaction, and whether a caller is committing them
        # (see _grouped()).
        self._pending: list[_Write[Any]] = []
        self._pending_lock = threading.Lock()
        self._leading = False
        self._pid = os.getpid()

    def adopt(self, conn: sqlite3.Connection) -> None:
        """Use ``conn`` (opened to check the schema) as the writer's connection."""
        self._writer = (os.getpid(), conn.close, conn.cursor())

    def close(self) -> None:
        writer, self._writer = self._writer, None
        if writer is not None and writer[0] == os.getpid():
            writer[1]()  # closed (or back to the pool, which the store then disposes)

    def _cursor(self) -> sqlite3.Cursor:
        """The kept connection's cursor; the caller holds the writer lock.

        A forked child opens its own (the parent's is never used across fork).
        """
        writer = self._writer
        if writer is None or writer[0] != os.getpid():
            close, driver = self._connect()
            writer = self._writer = (os.getpid(), close, driver.cursor())
        cursor = writer[2]
        if cursor.connection.in_transaction:  # left open by a failure: start clean
            cursor.execute("ROLLBACK")
        return cursor

    def _transaction(
        self, action: str, op: Callable[[sqlite3.Cursor], _T], *, implicit: bool = False
    ) -> _T:
        """``op`` between ``BEGIN IMMEDIATE`` and ``COMMIT`` under the writer lock; store
        errors typed. (A plain call, not a context manager: it runs once per checkpoint.)

        ``implicit``: ``op`` is one write statement, which SQLite runs in a transaction of
        its own: it takes the write lock when it starts (as BEGIN IMMEDIATE would) and
        commits when it ends, so neither BEGIN nor COMMIT is sent."""
        try:
            with self._lock:
                cursor = self._cursor()
                if not implicit:
                    cursor.execute("BEGIN IMMEDIATE")
                try:
                    result = op(cursor)
                except BaseException:
                    if cursor.connection.in_transaction:  # SQLite may have ended it already
                        cursor.execute("ROLLBACK")
                    raise
                # (An implicit one is never left open: see configure_sqlite.)
                if not implicit or cursor.connection.in_transaction:
                    cursor.execute("COMMIT")
        except sqlite3.Error as exc:
            raise self._error(exc, action) from exc
        return result

    def _grouped(
        self, op: Callable[[sqlite3.Cursor], _T], action: str, *, single: bool = False
    ) -> _T:
        """Run ``op`` in a write transaction, with whatever other threads queued meanwhile.

        One caller at a time leads: it commits the queue in batches until its own
        write is done, wakes the callers it committed for and hands the lead to the
        first one still waiting. The others sleep until woken (no lock convoy). A
        caller that finds nobody committing writes alone, with no queue entry: the
        usual case of one flow running its checkpoints one after another.
        """
        if self._pid != os.getpid():  # a forked child: nothing of the parent's queue
            self._pending, self._pending_lock = [], threading.Lock()
            self._leading, self._pid = False, os.getpid()
        with self._pending_lock:
            alone = not self._leading
            if alone:
                self._leading = True
            else:  # another caller commits: queue up and sleep until woken
                mine: _Write[_T] = _Write(op, single)
                self._pending.append(mine)
                mine.wake = _thread.allocate_lock()
                mine.wake.acquire()
        if alone:  # nobody is committing: no queue to join, this write goes alone
            try:
                return self._transaction(action, op, implicit=single)
            finally:
                with self._pending_lock:
                    self._hand_over()
        try:
            if not mine.lead:
                mine.wake.acquire()  # released when done or when made the leader
            if not mine.done:
                self._lead(mine, action)
        except BaseException:  # e.g. Ctrl-C in the main thread: never strand the queue
            self._withdraw(mine)
            raise
        if mine.error is not None:
            raise mine.error
        return mine.result  # type: ignore[return-value]

    def _lead(self, mine: _Write[Any], action: str) -> None:
        try:
            while not mine.done:
                with self._pending_lock:
                    batch = self._pending[:_MAX_GROUP]
                    del self._pending[:_MAX_GROUP]
                try:
                    with self._lock:
                        self._commit(batch, action)  # marks every write in it done
                finally:
                    for write in batch:
                        if write is not mine:
                            write.wake.release()
        finally:
            with self._pending_lock:
                if mine in self._pending:  # interrupted before its write was taken
                    self._pending.remove(mine)
                self._hand_over()

    def _withdraw(self, mine: _Write[Any]) -> None:
        """An interrupted caller's write leaves the queue unwritten; a lead it was just
        given passes on (a write already taken into a batch is committed as usual)."""
        with self._pending_lock:
            if mine in self._pending:
                self._pending.remove(mine)
                if mine.lead:
                    self._hand_over()

    def _hand_over(self) -> None:
        """The first write still waiting commits next (the caller holds _pending_lock)."""
        if self._pending:
            successor = self._pending[0]
            successor.lead = True
            successor.wake.release()
        else:
            self._leading = False

    def _commit(self, batch: list[_Write[Any]], action: str) -> None:
        """One transaction for ``batch``; every write in it ends done (result or error)."""
        try:
            try:
                if len(batch) == 1:
                    (only,) = batch
                    only.result = self._transaction(action, only.op, implicit=only.single)
                    return

                def each(cursor: sqlite3.Cursor) -> None:
                    for write in batch:
                        # A one-statement write needs no savepoint: a statement that
                        # fails is undone alone and the transaction goes on (SQLite's
                        # default ABORT), unless SQLite ended the transaction itself.
                        savepoint = not write.single
                        if savepoint:
                            cursor.execute("SAVEPOINT kitaru_write")
                        try:
                            write.result = write.op(cursor)
                        except Exception as exc:
                            if savepoint:
                                cursor.execute("ROLLBACK TO kitaru_write")
                            elif not cursor.connection.in_transaction:
                                raise  # all of the batch is undone: all of it fails
                            if isinstance(exc, sqlite3.Error):
                                write.error = self._error(exc, action)
                            else:
                                write.error = exc
                        if savepoint:
                            cursor.execute("RELEASE kitaru_write")

                self._transaction(action, each)
            except Exception as exc:  # the commit failed (or never happened): all of it
                for index, write in enumerate(batch):
                    # Each caller raises its own exception object (same type and text).
                    write.result, write.error = None, exc if index == 0 else _copy(exc)
            except BaseException:  # interrupted here: the others learn it went unrecorded
                for write in batch:
                    write.result = None
                    write.error = KitaruBackendError(
                        f"The Kitaru store failed to {action}: the writing thread was interrupted."
                    )
                raise
        finally:
            for write in batch:
                write.done = True

    def _error(self, exc: sqlite3.Error, action: str) -> KitaruBackendError:
        damaged = damaged_store_error(self._path, exc)
        return damaged or KitaruBackendError(sqlite_failure(self._path, exc, action))

    def _check_owner(self, cursor: sqlite3.Cursor, exec_id: str, fence: int) -> None:
        row = cursor.execute(self._fast.owner, (exec_id,)).fetchone()
        if row is None or row[0] != fence or row[1] != _RUNNING:
            raise self._stale(exec_id, fence)

    # -- the statements ------------------------------------------------------------------

    def record_call(
        self,
        call: CallRecord,
        artifact: ArtifactRecord | None,
        attempt: AttemptRecord | None,
        fence: int | None,
        extra_artifacts: Sequence[ArtifactRecord] = (),
        output: call_outputs.RowOutput = call_outputs.NO_OUTPUT,
    ) -> None:
        """A checkpoint's call row, output artifact (and saves) and attempt, in one commit.

        ``output``: the values of the row's output columns, for an output kept in it
        (``call_outputs``; ``artifact`` is None then).
        """
        fast = self._fast
        values = fast.call_values(call)
        if output is not call_outputs.NO_OUTPUT:  # its id is the row's: not stored again
            at = _ARTIFACT_ID
            serializer, type_path, data, crc32 = output
            # A bytearray: bound as a BLOB without the driver's adapter lookup (see
            # _statements: call_values); read back as bytes like any BLOB.
            values = (
                *values[:at],
                None,
                *values[at + 1 :],
                serializer,
                type_path,
                bytearray(data),
                crc32,
            )
        else:
            values += output
        if fence is not None and artifact is None and attempt is None and not extra_artifacts:
            # The usual checkpoint: one guarded statement (see _statements.guarded_call).
            guarded, sql = (*values, call.exec_id, fence), fast.guarded_call

            def write_row(cursor: sqlite3.Cursor) -> None:
                if cursor.execute(sql, guarded).rowcount != 1:
                    raise self._stale(call.exec_id, fence)

            self._grouped(write_row, "write", single=True)
            return

        def write(cursor: sqlite3.Cursor) -> None:
            if fence is not None:
                self._check_owner(cursor, call.exec_id, fence)
            for new in (*extra_artifacts, artifact):
                if new is not None:
                    cursor.execute(fast.artifact.sql, fast.artifact_values(new))
            cursor.execute(fast.call.sql, values)
            if attempt is not None:
                cursor.execute(fast.attempt.sql, fast.attempt_values(attempt))

        self._grouped(write, "write")

    def record_attempt(self, attempt: AttemptRecord, fence: int | None) -> None:
        """A failed attempt's row (the checkpoint is retried, or its failure recorded)."""
        fast = self._fast
        values = fast.attempt_values(attempt)

        def write(cursor: sqlite3.Cursor) -> None:
            if fence is not None:
                self._check_owner(cursor, attempt.exec_id, fence)
            cursor.execute(fast.attempt.sql, values)

        self._grouped(write, "write")

    def mark_running(self, call: CallRecord, fence: int) -> None:
        """A long call shown as running (see ``Store.mark_running``)."""
        fast = self._fast
        values = fast.call_values(call) + call_outputs.NO_OUTPUT

        def write(cursor: sqlite3.Cursor) -> None:
            self._check_owner(cursor, call.exec_id, fence)
            cursor.execute(fast.mark_running.sql, values)

        self._grouped(write, "write")

    def write_many(
        self,
        sql: str,
        rows: list[tuple[Any, ...]],
        owners: list[tuple[str, int | None]] | None = None,
    ) -> None:
        """``sql`` for each of ``rows`` in one commit (captured log lines). A row the
        database refuses raises the driver's error as is: the caller tells bad data
        from a failing store by it (so this write is not grouped, see ``_grouped``).

        ``owners``: each row's (execution, fence of its run); the rows of a run that
        no longer owns its execution are left out."""
        try:
            with self._lock:
                cursor = self._cursor()
                cursor.execute("BEGIN IMMEDIATE")
                try:
                    if owners is not None:
                        rows = _logs.of_the_owners(rows, owners, _fences(cursor, owners))
                    cursor.executemany(sql, rows)
                except BaseException:
                    if cursor.connection.in_transaction:
                        cursor.execute("ROLLBACK")
                    raise
                cursor.execute("COMMIT")
        except (sqlite3.DataError, sqlite3.IntegrityError):
            raise
        except sqlite3.Error as exc:
            raise self._error(exc, "write") from exc

    def renew_leases(
        self, owner: str, fences: Mapping[str, int], expires_at: float
    ) -> list[tuple[str, str, int]]:
        """Extend ``owner``'s leases on ``fences``' executions (see ``Store.renew_leases``);
        returns each one's (id, status, fence). A runner's lease keeper calls this every
        few seconds for as long as it runs: no SQLAlchemy for it."""
        ids = list(fences)

        def write(cursor: sqlite3.Cursor) -> list[tuple[str, str, int]]:
            found: list[tuple[str, str, int]] = []
            for start in range(0, len(ids), _IDS_PER_STATEMENT):
                chunk = ids[start : start + _IDS_PER_STATEMENT]
                marks = ",".join("?" * len(chunk))
                cursor.execute(
                    f"UPDATE {EXECUTIONS} SET lease_expires_at = ? "
                    f"WHERE id IN ({marks}) AND lease_owner = ?",
                    (expires_at, *chunk, owner),
                )
                found.extend(
                    cursor.execute(
                        f"SELECT id, status, fence FROM {EXECUTIONS} WHERE id IN ({marks})", chunk
                    ).fetchall()
                )
            return found

        return self._grouped(write, "renew leases")

    def insert_events(self, events: Sequence[_events.EventRow]) -> None:
        """Events published outside a checkpoint's commit, appended in a grouped commit:
        no SQLAlchemy, and no transaction of their own next to the checkpoints'. (One
        writer at a time: positions read under the write lock cannot be taken meanwhile.)"""
        self._grouped(lambda cursor: _events.append_with_cursor(cursor, events), "write")

    def create_execution(
        self,
        execution: ExecutionRecord,
        artifacts: Sequence[ArtifactRecord],
        calls: Sequence[CallRecord],
    ) -> None:
        """A new execution with its inputs (and a replay's reused calls), in one commit."""
        fast = self._fast

        def write(cursor: sqlite3.Cursor) -> None:
            for artifact in artifacts:
                cursor.execute(fast.artifact.sql, fast.artifact_values(artifact))
            cursor.execute(fast.execution.sql, fast.execution_values(execution))
            for call in calls:
                cursor.execute(fast.call.sql, fast.call_values(call) + call_outputs.NO_OUTPUT)

        self._grouped(write, "write")

    def cached_output(self, params: Mapping[str, Any]) -> CallRecord | None:
        """The cache lookup, on the writer's connection: a point lookup is short next to
        the commits it would queue behind anyway, and it saves a pool checkout."""
        fast = self._fast.cache_lookup
        values = fast.values(params)
        try:
            with self._lock:
                cursor = self._cursor()
                if cursor.execute(self._fast.cache_probe, values).fetchone() is None:
                    return None  # a miss: no completed call has the key
                found = cursor.execute(fast.sql, values).fetchone()
        except sqlite3.Error as exc:
            raise self._error(exc, "read") from exc
        # The call's columns, then its artifact's: the layout call_from_row reads.
        return None if found is None else self._fast.call_from_row(found)

    def get_execution(self, exec_id: str) -> ExecutionRecord | None:
        """One execution by id, on the writer's connection (a point lookup, as the cache
        lookup is): ``FlowHandle.wait()`` reads it, and needs no SQLAlchemy for it."""
        fast = self._fast
        try:
            with self._lock:
                found = self._cursor().execute(fast.execution_by_id, (exec_id,)).fetchone()
        except sqlite3.Error as exc:
            raise self._error(exc, "read") from exc
        return None if found is None else fast.execution_from_row(found)

    def calls(self, exec_id: str) -> list[CallRecord]:
        """An execution's calls with their output artifacts (resuming loads them all)."""
        fast = self._fast
        try:
            with self._engine().connect() as conn:
                driver = conn.connection.driver_connection
                assert driver is not None
                rows = driver.execute(fast.calls.sql, (exec_id,)).fetchall()
        except sqlite3.Error as exc:
            raise self._error(exc, "read") from exc
        return [fast.call_from_row(row) for row in rows]

    def saved_artifacts(self, exec_id: str, call_id: str) -> list[ArtifactRecord]:
        """What ``kitaru.save`` wrote in one call (read as ``cached_output`` reads)."""
        try:
            with self._lock:
                rows = self._cursor().execute(_SAVED_OF_CALL, (exec_id, call_id)).fetchall()
        except sqlite3.Error as exc:
            raise self._error(exc, "read") from exc
        return [self._fast.artifact_from_row(row) for row in rows]

    def recorded_calls(self, exec_id: str) -> list[RecordedCall]:
        """An execution's calls as a resumed run reads them, in call order."""
        try:
            with self._engine().connect() as conn:
                driver = conn.connection.driver_connection
                assert driver is not None
                rows = driver.execute(self._fast.recorded_calls.sql, (exec_id,)).fetchall()
        except sqlite3.Error as exc:
            raise self._error(exc, "read") from exc
        calls = list(map(RecordedCall._make, rows))
        calls.sort(key=_by_seq)
        return calls

    def finish(
        self,
        exec_id: str,
        values: Mapping[str, Any],
        *,
        only_if_status: Sequence[ExecutionStatus] | None,
        fence: int | None,
        result: ArtifactRecord | None,
        events: Sequence[_events.EventRow],
        interrupted: tuple[float, dict[str, Any]] | None = None,
    ) -> bool:
        """The end of a run (see ``Store.finish_execution``) in one commit."""
        fast = self._fast

        def write(cursor: sqlite3.Cursor) -> bool:
            if events:
                _append_events(cursor, events)
            sql = fast.finish_sql(
                len(only_if_status) if only_if_status is not None else None, fence is not None
            )
            params = [values[name] for name in fast.finish_columns]
            params.append(exec_id)
            if only_if_status is not None:
                params.extend(s.value for s in only_if_status)
            if fence is not None:
                params.append(fence)
            changed = cursor.execute(sql, params).fetchone() is not None
            if changed and result is not None:
                cursor.execute(fast.artifact.sql, fast.artifact_values(result))
            if changed and interrupted is not None:
                cursor.execute(
                    _END_RUNNING_CALLS, (interrupted[0], json.dumps(interrupted[1]), exec_id)
                )
            return changed

        return self._grouped(write, "write")


#: The saved artifacts of one call, oldest first.
_SAVED_OF_CALL = (
    f"SELECT {', '.join(ARTIFACT_COLUMNS)} FROM {ARTIFACTS} "
    f"WHERE exec_id = ? AND call_id = ? AND kind = '{SAVED_KIND}' ORDER BY created_at, id"
)

#: A cancelled run's calls left showing as running end failed (see finish_execution).
_END_RUNNING_CALLS = (
    f"UPDATE {CALLS} SET status = 'failed', ended_at = ?, error = ? "
    "WHERE exec_id = ? AND status = 'running'"
)

#: Ids bound in one ``IN (...)`` (far below SQLite's limit on host parameters).
_IDS_PER_STATEMENT = 500


def _copy(exc: Exception) -> Exception:
    try:
        duplicate = copy.copy(exc)
    except Exception:
        duplicate = KitaruBackendError(str(exc))
    duplicate.__cause__ = exc.__cause__
    return duplicate


_by_seq = operator.itemgetter(1)  # RecordedCall.seq


def _append_events(cursor: sqlite3.Cursor, events: Sequence[_events.EventRow]) -> None:
    """The run's last events, best effort: a savepoint undoes them if the store refuses."""
    cursor.execute("SAVEPOINT kitaru_events")
    try:
        _events.append_with_cursor(cursor, events)
    except sqlite3.Error as exc:
        cursor.execute("ROLLBACK TO kitaru_events")
        _events.report_unstored(events, exc)
    cursor.execute("RELEASE kitaru_events")


def _fences(cursor: sqlite3.Cursor, owners: list[tuple[str, int | None]]) -> dict[str, int]:
    """The current fence of each execution ``owners`` names."""
    exec_ids = sorted({exec_id for exec_id, _ in owners})
    marks = ", ".join("?" * len(exec_ids))
    found = cursor.execute(f"SELECT id, fence FROM {EXECUTIONS} WHERE id IN ({marks})", exec_ids)
    return dict(found.fetchall())


def sqlite_failure(path: object, exc: object, action: str) -> str:
    """What went wrong with the SQLite store at ``path``, with what to do when SQLite's
    words alone do not say it (a file this user may not write, a full disk)."""
    text = str(exc)
    message = f"The Kitaru store {path} failed to {action}: {text}"
    lowered = text.lower()
    if "readonly" in lowered or "read-only" in lowered:
        return (
            f"{message}. Make the store file, its -wal and -shm files and their directory "
            "writable by this user (or point KITARU_STORE_URL at a writable store)."
        )
    if "disk is full" in lowered or "disk i/o error" in lowered:
        return f"{message}. Free disk space on the store's file system, then resume."
    return message

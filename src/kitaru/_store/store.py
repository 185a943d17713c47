"""The metadata store: one class, SQLite or PostgreSQL behind SQLAlchemy Core.

The hot path is :meth:`Store.record_call`: it writes a checkpoint's output
artifact, its call row and its attempt row in one transaction, with statements
built once so SQLAlchemy's compiled cache makes them nearly free.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import json
import operator
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kitaru._lazy import LazyModule
from kitaru._store import _columns, _logs, cache_keys, call_inputs, call_outputs, saved_copies
from kitaru._store._driver import sqlite3
from kitaru._store._ownership import OwnershipMixin
from kitaru._store._rows import (
    _ATTEMPT_COLUMNS,
    _CALL_COLUMNS,
    _artifact_from_row,
    _artifact_row,
    _attempt_row,
    _by_exec,
    _call_from_joined_row,
    _call_row,
    _changed,
    _execution_from_row,
    _execution_row,
    merge_metadata,
)
from kitaru._store._secrets import SecretsMixin
from kitaru._store._sqlite_direct import SQLiteDirect, sqlite_failure
from kitaru._store._statements import (
    _pg_record_call,
    _SQLiteStatements,
    cache_lookup,
    dialect_insert,
    pg_take_cached_sql,
    recorded_calls_query,
)
from kitaru._store._time import TimeMixin
from kitaru._store._waits import WaitsMixin
from kitaru._store.engine import (
    connect_sqlite,
    create_engine,
    damaged_store_error,
    normalize_url,
    open_direct,
    plain_sqlite_path,
    sqlite_path,
)
from kitaru._store.records import (
    SAVED_KIND,
    ArtifactRecord,
    CallRecord,
    CallStatus,
    ExecutionRecord,
    ExecutionStatus,
    RecordedCall,
    StaleOwnerError,
)
from kitaru._text import storable_text
from kitaru.errors import KitaruBackendError, execution_not_found

if TYPE_CHECKING:
    import sqlalchemy as sa

    from kitaru._store import _delete, _events, _outputs, _pg_direct, time_schema
    from kitaru._store import schema as t
    from kitaru._store._pg_direct import PgDirect
    from kitaru._store.records_extra import AttemptRecord, LogRecord, WaitRecord
else:  # imported on first use (see _lazy); events only once a flow publishes one
    _delete = LazyModule("kitaru._store._delete")
    _events = LazyModule("kitaru._store._events")
    _outputs = LazyModule("kitaru._store._outputs")
    _pg_direct = LazyModule("kitaru._store._pg_direct")  # PostgreSQL only
    sa = LazyModule("sqlalchemy")
    t = LazyModule("kitaru._store.schema")
    time_schema = LazyModule("kitaru._store.time_schema")


class Store(WaitsMixin, SecretsMixin, TimeMixin, OwnershipMixin):
    """Executions, checkpoint calls, attempts and the artifact index."""

    def __init__(self, url: str) -> None:
        self.url = normalize_url(url)
        self._engine: sa.Engine | None = None
        self._engine_lock = threading.Lock()
        # A plain SQLite file whose schema is current opens on the sqlite3 driver
        # alone: running flows needs no SQLAlchemy (see _lazy); the engine is made
        # on first use, by the queries the direct path does not cover.
        path = plain_sqlite_path(self.url)
        direct: sqlite3.Connection | None = None
        if path is not None:
            direct, synchronous = open_direct(path)
        if direct is None:
            self._engine = create_engine(self.url)  # migrates a new or older store
        self.dialect = "sqlite" if path is not None else self.engine.dialect.name
        self._is_sqlite = self.dialect == "sqlite"
        # SQLite has one writer at a time. Threads of this process queue on a lock
        # instead of on SQLite's busy handler, which sleeps in growing steps.
        self._local_writer: contextlib.AbstractContextManager[Any] = (
            threading.RLock() if self._is_sqlite else contextlib.nullcontext()
        )
        self._sqlite_fast: _SQLiteStatements | None = None
        self._sqlite: SQLiteDirect | None = None
        if self._is_sqlite:
            self._sqlite_fast = _SQLiteStatements()
            file: Path | None = path
            if path is not None:
                plain = path

                def connect() -> tuple[Callable[[], None], sqlite3.Connection]:
                    conn = connect_sqlite(plain, synchronous)
                    return conn.close, conn
            else:  # an unusual SQLite URL: the engine's pool opens the connection
                file = sqlite_path(self.engine.url)

                def connect() -> tuple[Callable[[], None], sqlite3.Connection]:
                    proxied = self.engine.raw_connection()
                    driver = proxied.driver_connection
                    assert isinstance(driver, sqlite3.Connection)
                    return proxied.close, driver

            self._sqlite = SQLiteDirect(
                connect,
                file,
                lambda: self.engine,
                self._sqlite_fast,
                self._local_writer,
                self._stale,
            )
            if direct is not None:
                self._sqlite.adopt(direct)
        # PostgreSQL: a checkpoint's writes go out as ONE statement (data-modifying
        # CTEs) on an autocommit connection, so completing a checkpoint costs one
        # round trip; a single statement is atomic on its own.
        self._pg_record_call: dict[tuple[bool, bool, bool], sa.Insert] = {}
        self._autocommit_engine: sa.Engine | None = None
        self._pg_direct: PgDirect | None = None
        if not self._is_sqlite:
            self._autocommit_engine = self.engine.execution_options(isolation_level="AUTOCOMMIT")
            for art, att, fenced in itertools.product((False, True), repeat=3):
                self._pg_record_call[(art, att, fenced)] = _pg_record_call(art, att, fenced)
            self._pg_direct = _pg_direct.PgDirect(
                self.engine,
                {
                    **self._pg_record_call,
                    "cache_lookup": cache_lookup(),
                    "take_cached": pg_take_cached_sql(self.engine.dialect),
                },
            )

    @property
    def engine(self) -> sa.Engine:
        """The SQLAlchemy engine; on a directly opened SQLite store, made on first use."""
        engine = self._engine
        if engine is None:
            with self._engine_lock:
                if self._engine is None:
                    # The schema was current at open: this only checks it again.
                    self._engine = create_engine(self.url)
                engine = self._engine
        return engine

    # Statements built on first use (a SQLite process that only runs flows needs none).

    @functools.cached_property
    def _upsert_call(self) -> sa.Insert:
        call_insert = dialect_insert(self._is_sqlite)(t.checkpoint_calls)
        statement: sa.Insert = call_insert.on_conflict_do_update(
            index_elements=["exec_id", "call_id"],
            set_={
                name: call_insert.excluded[name]
                for name in (*_CALL_COLUMNS, *_columns.OUTPUT_COLUMNS)
                if name not in ("exec_id", "call_id")
            },
        )
        return statement

    @functools.cached_property
    def _insert_artifact(self) -> sa.Insert:
        insert = dialect_insert(self._is_sqlite)(t.artifacts)
        statement: sa.Insert = insert.on_conflict_do_nothing(index_elements=["id"])
        return statement

    @functools.cached_property
    def _insert_attempt(self) -> sa.Insert:
        return t.checkpoint_attempts.insert()

    @functools.cached_property
    def _mark_running(self) -> sa.Insert:
        calls = t.checkpoint_calls
        running = dialect_insert(self._is_sqlite)(calls)
        # A running mark never replaces a call that already has an output, nor the
        # failure its own run recorded meanwhile (the mark is written by another thread
        # and may land after it): that row counts more attempts than the mark, which
        # carries those of earlier runs. An earlier run's failure is replaced (a retry).
        statement: sa.Insert = running.on_conflict_do_update(
            index_elements=["exec_id", "call_id"],
            set_={
                "status": running.excluded.status,
                "started_at": running.excluded.started_at,
                "ended_at": None,
            },
            where=sa.and_(
                calls.c.status.in_([CallStatus.FAILED.value, CallStatus.RUNNING.value]),
                calls.c.attempts <= running.excluded.attempts,
            ),
        )
        return statement

    @functools.cached_property
    def _insert_execution(self) -> sa.Insert:
        return t.executions.insert()

    @functools.cached_property
    def _owner_query(self) -> sa.Select[Any]:
        """The fence check a multi-statement write makes first, in its transaction.

        ``FOR SHARE`` on PostgreSQL: without a lock, a takeover could commit between the
        check and the write (READ COMMITTED), and a stale runner's write would land after
        it. With it, a claim waits for this write's commit, and a check made after a
        claim committed sees the new fence. (SQLite's writes hold the database lock.)
        """
        ex = t.executions.c
        return (
            sa.select(ex.fence, ex.status)
            .where(ex.id == sa.bindparam("exec_id"))
            .with_for_update(read=True)
        )

    def __repr__(self) -> str:
        if self._engine is None:
            return f"Store({self.url!r})"  # a plain SQLite URL: nothing to hide
        return f"Store({self._engine.url.render_as_string(hide_password=True)!r})"

    def dispose(self) -> None:
        if self._pg_direct is not None:
            self._pg_direct.close()
        if self._sqlite is not None:
            self._sqlite.close()
        if self._engine is not None:
            self._engine.dispose()

    # -- transactions ---------------------------------------------------------------

    @contextlib.contextmanager
    def write(self) -> Iterator[sa.Connection]:
        """One write transaction; SQLite takes the write lock up front."""
        try:
            with self._local_writer, self.engine.connect() as conn:
                if self._is_sqlite:
                    conn.exec_driver_sql("BEGIN IMMEDIATE")
                try:
                    yield conn
                except BaseException:
                    conn.rollback()
                    raise
                conn.commit()
        except sa.exc.DBAPIError as exc:
            error = _store_error(self.engine.url, exc, "write")
            if error is None:
                raise
            raise error from exc

    @contextlib.contextmanager
    def read(self) -> Iterator[sa.Connection]:
        try:
            with self.engine.connect() as conn:
                yield conn
        except sa.exc.DBAPIError as exc:
            error = _store_error(self.engine.url, exc, "read")
            if error is None:
                raise
            raise error from exc

    # -- executions -----------------------------------------------------------------

    def create_execution(
        self,
        execution: ExecutionRecord,
        inputs: ArtifactRecord | None = None,
        *,
        calls: Sequence[CallRecord] = (),
        artifacts: Sequence[ArtifactRecord] = (),
        waits: Sequence[WaitRecord] = (),
    ) -> None:
        """Insert an execution with its inputs (and, for a replay, its reused calls and
        the answered waits its body reaches before its first live call)."""
        if self._sqlite is not None and not waits:
            new = [a for a in (inputs, *artifacts) if a is not None]
            self._sqlite.create_execution(execution, new, calls)
            return
        with self.write() as conn:
            for artifact in (inputs, *artifacts):
                if artifact is not None:
                    conn.execute(self._insert_artifact, _artifact_row(artifact))
            conn.execute(self._insert_execution, _execution_row(execution))
            for call in calls:
                conn.execute(self._upsert_call, _call_row(call))
            if waits:
                from kitaru._store._rows import _wait_row

                for wait in waits:
                    conn.execute(t.waits.insert().values(_wait_row(wait)))

    def get_execution(self, exec_id: str) -> ExecutionRecord | None:
        if not storable_text(exec_id):
            return None  # e.g. undecodable bytes from argv: no stored id can equal it
        if self._sqlite is not None and self._engine is None:
            # A script waiting for its flow (a failed one reads its failure here) has
            # no engine yet: it need not import SQLAlchemy for one row. A process that
            # has an engine (a server, a client) reads through its pool instead.
            return self._sqlite.get_execution(exec_id)
        with self.read() as conn:
            row = conn.execute(sa.select(t.executions).where(t.executions.c.id == exec_id)).first()
        return None if row is None else _execution_from_row(row._mapping)

    def require_execution(self, exec_id: str) -> ExecutionRecord:
        record = self.get_execution(exec_id)
        if record is None:
            raise execution_not_found(
                exec_id,
                f"no execution with this id in the store {self!r}. "
                "List executions with `kitaru executions list`.",
            )
        return record

    def get_status(self, exec_id: str) -> ExecutionStatus | None:
        if not storable_text(exec_id):
            return None
        with self.read() as conn:
            value = conn.execute(
                sa.select(t.executions.c.status).where(t.executions.c.id == exec_id)
            ).scalar()
        return None if value is None else ExecutionStatus(value)

    def list_executions(
        self,
        *,
        flow: str | None = None,
        status: Sequence[str] | None = None,
        limit: int | None = None,
        offset: int = 0,
        schedule: str | None = None,
        parent: str | None = None,
    ) -> list[ExecutionRecord]:
        query = sa.select(t.executions).order_by(
            t.executions.c.created_at.desc(), t.executions.c.id.desc()
        )
        if flow is not None:
            query = query.where(t.executions.c.flow_name == flow)
        if status:
            query = query.where(t.executions.c.status.in_(list(status)))
        if schedule is not None:
            query = query.where(t.executions.c.schedule_name == schedule)
        if parent is not None:
            query = query.where(t.executions.c.parent_exec_id == parent)
        if offset:
            query = query.offset(offset)
        if limit is not None:
            query = query.limit(limit)
        with self.read() as conn:
            rows = conn.execute(query).all()
        return [_execution_from_row(row._mapping) for row in rows]

    def finish_execution(
        self,
        exec_id: str,
        *,
        status: ExecutionStatus,
        result: ArtifactRecord | None = None,
        failure: Mapping[str, Any] | None = None,
        only_if_status: Iterable[ExecutionStatus] | None = None,
        fence: int | None = None,
        now: float | None = None,
        events: Sequence[_events.EventRow] = (),
    ) -> bool:
        """Record the end of a run.

        With ``only_if_status`` / ``fence`` this is a conditional update: it
        returns False and writes nothing (not even the result) when the
        execution was cancelled or taken over meanwhile.

        ``events`` (the run's last queued events) are stored first in the same
        transaction, best effort: events the store refuses are left out.

        A run that ends ``cancelled`` also ends the calls it left showing as running
        (``_runtime.progress`` marks long ones): they end ``failed``, with an error
        that says the execution was cancelled, in the same transaction. Their runner
        can no longer write them (its writes need a running execution).

        The flow-level retries used (``flow_retries``) go back to 0, so a later retry
        has a new budget; a ``resumable`` failure keeps them for its resume.
        """
        ended = time.time() if now is None else now
        values = {
            "status": status.value,
            "ended_at": ended,
            "result_artifact_id": None if result is None else result.id,
            "failure": None if failure is None else dict(failure),
            "lease_owner": None,
            "lease_expires_at": None,
        }
        # Multiplied by: 1 keeps the count, 0 resets it (one statement for both).
        keep_retries = int(bool(failure is not None and failure.get("resumable")))
        statuses = None if only_if_status is None else list(only_if_status)
        interrupted = _interrupted_call_error(status, ended)
        if self._sqlite is not None:
            row = dict(
                values,
                failure=None if failure is None else json.dumps(values["failure"]),
                flow_retries=keep_retries,
            )
            return self._sqlite.finish(
                exec_id,
                row,
                only_if_status=statuses,
                fence=fence,
                result=result,
                events=events,
                interrupted=interrupted,
            )
        ex = t.executions.c
        update = t.executions.update().where(ex.id == exec_id)
        if statuses is not None:
            update = update.where(ex.status.in_([s.value for s in statuses]))
        if fence is not None:
            update = update.where(ex.fence == fence)
        update = update.values({**values, "flow_retries": ex.flow_retries * keep_retries})
        with self.write() as conn:
            if events:
                _events.append_in_transaction(conn, events, postgres=not self._is_sqlite)
            changed = _changed(conn, update)
            if changed and result is not None:
                conn.execute(self._insert_artifact, _artifact_row(result))
            if changed and interrupted is not None:
                calls = t.checkpoint_calls.c
                conn.execute(
                    t.checkpoint_calls.update()
                    .where(calls.exec_id == exec_id, calls.status == CallStatus.RUNNING.value)
                    .values(
                        status=CallStatus.FAILED.value,
                        ended_at=interrupted[0],
                        error=interrupted[1],
                    )
                )
        return bool(changed)

    def insert_calls(
        self, calls: Sequence[CallRecord], artifacts: Sequence[ArtifactRecord]
    ) -> None:
        """Write prepared calls (e.g. a replay's reused outputs) in one transaction."""
        with self.write() as conn:
            for artifact in artifacts:
                conn.execute(self._insert_artifact, _artifact_row(artifact))
            for call in calls:
                conn.execute(self._upsert_call, _call_row(call))

    def delete_execution(self, exec_id: str) -> list[str]:
        """Remove an execution and every artifact nothing else needs any more.

        Returns the blob URIs no remaining artifact row uses, for the caller to
        delete from the blob store after the commit (see ``_delete``).
        """
        with self.write() as conn:
            return _delete.delete_execution(conn, exec_id)

    def set_status(
        self,
        exec_id: str,
        status: ExecutionStatus,
        *,
        only_if_status: Iterable[ExecutionStatus] | None = None,
    ) -> bool:
        ex = t.executions.c
        update = t.executions.update().where(ex.id == exec_id)
        if only_if_status is not None:
            update = update.where(ex.status.in_([s.value for s in only_if_status]))
        with self.write() as conn:
            return _changed(conn, update.values(status=status.value))

    # -- checkpoint calls -----------------------------------------------------------

    def record_call(
        self,
        call: CallRecord,
        *,
        artifact: ArtifactRecord | None = None,
        attempt: AttemptRecord | None = None,
        extra_artifacts: Sequence[ArtifactRecord] = (),
        fence: int | None = None,
    ) -> None:
        """Write a call (insert or update), its new output artifact and an attempt atomically.

        ``extra_artifacts`` are written in the same transaction (``kitaru.save``).

        With ``fence`` the write only happens while the execution is running
        under that fence; otherwise nothing is written and ``StaleOwnerError``
        is raised (a cancelled or taken-over runner must not touch its calls).
        """
        # A small output is kept in the call row (call_outputs): no artifact row.
        output = call_outputs.row_values(call, artifact)
        if output is not call_outputs.NO_OUTPUT:
            artifact = None
        if self._autocommit_engine is not None and not extra_artifacts:
            params = {f"c_{k}": v for k, v in _call_row(call, output).items()}
            params["g_exec_id"] = call.exec_id
            params["g_fence"] = fence
            if artifact is not None:
                params.update({f"a_{k}": v for k, v in _artifact_row(artifact).items()})
            if attempt is not None:
                params.update({f"t_{k}": v for k, v in _attempt_row(attempt).items()})
            key = (artifact is not None, attempt is not None, fence is not None)
            assert self._pg_direct is not None
            try:
                if self._pg_direct.fetch(key, params) is None:
                    raise self._stale(call.exec_id, fence)
                return
            except _pg_direct.AllBusy:
                pass
            statement = self._pg_record_call[key]  # every fast connection is busy
            try:
                with self._autocommit_engine.connect() as conn:
                    # RETURNING, not rowcount: through SQLAlchemy a CTE statement
                    # reports rowcount -1, which would read as "written".
                    written = conn.execute(statement, params).first() is not None
            except sa.exc.OperationalError as exc:
                raise KitaruBackendError(f"The Kitaru store failed to write: {exc.orig}") from exc
            if not written:
                raise self._stale(call.exec_id, fence)
            return
        if self._sqlite_fast is None:
            # PostgreSQL with saved artifacts: a regular transaction.
            with self.write() as conn:
                if fence is not None:
                    self._check_owner(conn, call.exec_id, fence)
                for saved in extra_artifacts:
                    conn.execute(self._insert_artifact, _artifact_row(saved))
                if artifact is not None:
                    conn.execute(self._insert_artifact, _artifact_row(artifact))
                conn.execute(self._upsert_call, _call_row(call, output))
                if attempt is not None:
                    conn.execute(self._insert_attempt, _attempt_row(attempt))
            return
        assert self._sqlite is not None
        self._sqlite.record_call(call, artifact, attempt, fence, extra_artifacts, output)

    def mark_running(self, call: CallRecord, *, fence: int) -> None:
        """Show a long call as running (see ``_runtime.progress``); a no-op once it has ended."""
        if self._sqlite is not None:
            self._sqlite.mark_running(call, fence)
            return
        with self.write() as conn:
            self._check_owner(conn, call.exec_id, fence)
            conn.execute(self._mark_running, _call_row(call))

    def record_attempt(self, attempt: AttemptRecord, *, fence: int | None = None) -> None:
        if self._sqlite is not None:
            self._sqlite.record_attempt(attempt, fence)
            return
        with self.write() as conn:
            if fence is not None:
                self._check_owner(conn, attempt.exec_id, fence)
            conn.execute(self._insert_attempt, _attempt_row(attempt))

    def _check_owner(self, conn: sa.Connection, exec_id: str, fence: int) -> None:
        row = conn.execute(self._owner_query, {"exec_id": exec_id}).first()
        if row is None or row[0] != fence or row[1] != ExecutionStatus.RUNNING.value:
            raise self._stale(exec_id, fence)

    def _stale(self, exec_id: str, fence: int | None) -> StaleOwnerError:
        return StaleOwnerError(
            f"Execution {exec_id} is no longer running under this runner (fence {fence}): "
            "it was cancelled or taken over by another process. Nothing was written."
        )

    def calls(self, exec_id: str) -> list[CallRecord]:
        """The execution's calls in call order, each with its output artifact."""
        return self.calls_of([exec_id]).get(exec_id, [])

    def calls_of(self, exec_ids: Sequence[str]) -> dict[str, list[CallRecord]]:
        """Calls of several executions in one query, grouped by execution, in call order."""
        if self._sqlite is not None and len(exec_ids) == 1:
            # Resuming a long execution loads every call: straight from the driver.
            calls = self._sqlite.calls(exec_ids[0])
        else:
            c = t.checkpoint_calls
            a = t.artifacts
            query = (
                sa.select(c, *[col.label(f"artifact__{col.name}") for col in a.columns])
                .select_from(c.outerjoin(a, c.c.artifact_id == a.c.id))
                .where(c.c.exec_id.in_(list(exec_ids)))
                .order_by(c.c.exec_id, c.c.seq)
            )
            with self.read() as conn:
                rows = conn.execute(query).all()
            calls = [_call_from_joined_row(row._mapping) for row in rows]
        taken = call_outputs.taken_by(calls)
        if taken:  # outputs of other executions' calls, kept in their rows
            _outputs.resolve_taken(self.read, calls, taken)
        return _by_exec(calls)

    def recorded_calls(self, exec_id: str) -> list[RecordedCall]:
        """The execution's calls as a resumed run of its body reads them, in call order.

        Only the memo's fields and the output's location (see ``RecordedCall``):
        resuming an execution of ten thousand calls reads them all before its
        first step, so this is kept to what that needs.
        """
        if self._sqlite is not None:
            calls = self._sqlite.recorded_calls(exec_id)
        else:
            with self.read() as conn:
                rows = conn.execute(recorded_calls_query(), {"exec_id": exec_id}).all()
            calls = [RecordedCall._make(row) for row in rows]
            calls.sort(key=operator.attrgetter("seq"))
        taken = call_outputs.taken_ids(calls)
        if taken:  # outputs of other executions' calls, kept in their rows
            calls = _outputs.fill_recorded(self.read, calls, taken)
        return calls

    def attempts(self, exec_id: str) -> list[AttemptRecord]:
        return self.attempts_of([exec_id]).get(exec_id, [])

    def attempts_of(self, exec_ids: Sequence[str]) -> dict[str, list[AttemptRecord]]:
        """Attempts of several executions, grouped by execution, in the order they ended.

        A call completed on its first attempt has no attempt row (see
        ``checkpoint_calls.run``): that attempt is read from the call row.
        """
        a, c = t.checkpoint_attempts, t.checkpoint_calls
        ids = list(exec_ids)
        with self.read() as conn:
            rows = conn.execute(sa.select(a).where(a.c.exec_id.in_(ids)).order_by(a.c.id)).all()
            firsts = conn.execute(
                sa.select(c.c.exec_id, c.c.call_id, c.c.run, c.c.started_at, c.c.ended_at)
                .where(c.c.exec_id.in_(ids), c.c.run.is_not(None))
                .order_by(c.c.ended_at)
            ).all()
        from kitaru._store.records_extra import AttemptRecord

        records = [AttemptRecord(**{k: row._mapping[k] for k in _ATTEMPT_COLUMNS}) for row in rows]
        if firsts:
            stored = {(r.exec_id, r.call_id, r.attempt) for r in records}
            records.extend(
                AttemptRecord(
                    exec_id=exec_id,
                    call_id=call_id,
                    attempt=1,
                    run=run,
                    status=CallStatus.COMPLETED.value,
                    started_at=started_at,
                    ended_at=ended_at,
                )
                for exec_id, call_id, run, started_at, ended_at in firsts
                if (exec_id, call_id, 1) not in stored
            )
            records.sort(key=lambda r: r.ended_at or r.started_at)
        return _by_exec(records)

    def cached_output(self, cache_key: str, *, exclude_exec_id: str) -> CallRecord | None:
        """The newest completed call of another execution with this cache key, if any."""
        params = {"cache_key": cache_keys.stored(cache_key), "exclude_exec_id": exclude_exec_id}
        if self._sqlite is not None:  # runs before every live checkpoint with the cache on
            return self._sqlite.cached_output(params)
        if self._pg_direct is not None:
            with contextlib.suppress(_pg_direct.AllBusy):
                found = self._pg_direct.fetch("cache_lookup", params)
                return None if found is None else _call_from_joined_row(found)
        engine = self._autocommit_engine or self.engine
        with engine.connect() as conn:
            result = conn.execute(cache_lookup(), params).first()
        return None if result is None else _call_from_joined_row(result._mapping)

    def take_cached(
        self, call: CallRecord, cache_key: str, *, fence: int | None = None
    ) -> CallRecord | None:
        """The cache hit for ``cache_key`` (as ``cached_output``), with ``call`` recorded
        as taking it: the hit's artifact, source execution and metadata, status cached.

        None when there is no hit (nothing written). ``StaleOwnerError`` as for
        ``record_call``. On PostgreSQL both happen in one statement: one round trip.
        """
        if self._pg_direct is not None and fence is not None:
            params = {f"c_{k}": v for k, v in _call_row(call).items()}
            params.update(
                cache_key=cache_keys.stored(cache_key),
                exclude_exec_id=call.exec_id,
                g_exec_id=call.exec_id,
                g_fence=fence,
                c_error=None if call.error is None else json.dumps(call.error),
            )
            try:
                found = self._pg_direct.fetch("take_cached", params)
            except _pg_direct.AllBusy:
                pass
            else:
                if found is None:
                    return None
                if not found.pop("kitaru_written"):
                    raise self._stale(call.exec_id, fence)
                return _call_from_joined_row(found)
        hit = self.cached_output(cache_key, exclude_exec_id=call.exec_id)
        if hit is None:
            return None
        call.artifact_id, call.source_exec_id = hit.artifact_id, hit.exec_id
        call.metadata = dict(hit.metadata)
        saved = saved_copies.copies_for(
            self.saved_artifacts(hit.exec_id, hit.call_id),
            exec_id=call.exec_id,
            call_id=call.call_id,
            now=call.ended_at or time.time(),
        )
        self.record_call(call, extra_artifacts=saved, fence=fence)
        return hit

    def saved_artifacts(self, exec_id: str, call_id: str) -> list[ArtifactRecord]:
        """What ``kitaru.save`` wrote in call ``call_id`` of ``exec_id``, oldest first."""
        if self._sqlite is not None:  # read on every cache hit: without SQLAlchemy
            return self._sqlite.saved_artifacts(exec_id, call_id)
        a = t.artifacts.c
        query = (
            sa.select(t.artifacts)
            .where(a.exec_id == exec_id, a.call_id == call_id, a.kind == SAVED_KIND)
            .order_by(a.created_at, a.id)
        )
        with self.read() as conn:
            return [_artifact_from_row(row._mapping) for row in conn.execute(query)]

    def merge_execution_metadata(
        self, exec_id: str, fields: Mapping[str, Any], *, fence: int | None = None
    ) -> dict[str, Any]:
        """Merge ``kitaru.log()`` fields into the execution's metadata; returns the result."""
        ex = t.executions.c
        with self.write() as conn:
            if fence is not None:
                self._check_owner(conn, exec_id, fence)
            current = conn.execute(
                sa.select(ex.metadata).where(ex.id == exec_id)
            ).scalar_one_or_none()
            merged = merge_metadata(current or {}, fields)
            conn.execute(t.executions.update().where(ex.id == exec_id).values(metadata=merged))
        return merged

    # -- captured logs --------------------------------------------------------------

    def insert_logs(self, records: Sequence[LogRecord]) -> list[tuple[LogRecord, Exception]]:
        """Store captured lines (bad text escaped); returns those that could not be stored."""
        if self._sqlite is not None:  # flows print: no SQLAlchemy for their lines either
            return _logs.insert_logs_direct(self._sqlite.write_many, records)
        return _logs.insert_logs(self.write, records, postgres=not self._is_sqlite)

    def logs(
        self,
        exec_id: str,
        *,
        checkpoint: str | None = None,
        after_id: int | None = None,
        limit: int | None = None,
        source: str | None = None,
    ) -> list[LogRecord]:
        """Captured lines in the order they were written; ``checkpoint`` matches name or call id.

        ``source``: "step" for lines of checkpoint calls, "runner" for the flow body's.
        """
        lg = t.logs.c
        query = sa.select(t.logs).where(lg.exec_id == exec_id).order_by(lg.id)
        if source is not None:
            query = query.where(
                lg.call_id.is_(None) if source == "runner" else lg.call_id.isnot(None)
            )
        if checkpoint is not None:
            query = query.where(sa.or_(lg.checkpoint == checkpoint, lg.call_id == checkpoint))
        if after_id is not None:
            query = query.where(lg.id > after_id)
        if limit is not None:
            query = query.limit(limit)
        with self.read() as conn:
            rows = conn.execute(query).all()
        from kitaru._store.records_extra import LogRecord

        return [LogRecord(**{c.name: row._mapping[c.name] for c in t.logs.columns}) for row in rows]

    # -- events (see _events.py) ------------------------------------------------------

    def insert_events(self, events: Sequence[_events.EventRow]) -> None:
        if self._sqlite is not None:
            self._sqlite.insert_events(events)
            return
        _events.insert_events(self.write, events, postgres=not self._is_sqlite)

    def events(self, exec_id: str, **filters: Any) -> list[_events.EventRecord]:
        return _events.read_events(self.read, exec_id, **filters)

    # -- artifacts ------------------------------------------------------------------

    def get_artifact(self, artifact_id: str) -> ArtifactRecord | None:
        """An artifact row, a checkpoint call's input (ids ``<exec_id>:in:<seq>:<n>``) or an
        output kept in a call row (``<exec_id>:out:<seq>``)."""
        if not storable_text(artifact_id):
            return None
        as_input = call_inputs.parse_input_id(artifact_id)
        if as_input is not None:
            exec_id, seq, index = as_input
            c = t.checkpoint_calls.c
            with self.read() as conn:
                row = conn.execute(
                    sa.select(t.checkpoint_calls).where(c.exec_id == exec_id, c.seq == seq)
                ).first()
            inputs = (
                []
                if row is None
                else call_inputs.input_records(_call_from_joined_row(row._mapping))
            )
            return inputs[index] if index < len(inputs) else None
        with self.read() as conn:
            in_row = _outputs.in_row_output(conn, artifact_id)
            if in_row is not None:
                return in_row
            # An artifact row; also an in-row output whose execution was deleted.
            row = conn.execute(
                sa.select(t.artifacts).where(t.artifacts.c.id == artifact_id)
            ).first()
        return None if row is None else _artifact_from_row(row._mapping)

    def list_artifacts(
        self,
        *,
        exec_id: str | None = None,
        name: str | None = None,
        kind: str | None = None,
        call_id: str | None = None,
        limit: int | None = None,
    ) -> list[ArtifactRecord]:
        a = t.artifacts.c
        query = sa.select(t.artifacts).order_by(a.created_at, a.id)
        if exec_id is not None:
            query = query.where(a.exec_id == exec_id)
        if name is not None:
            query = query.where(a.name == name)
        if kind is not None:
            query = query.where(a.kind == kind)
        if call_id is not None:
            query = query.where(a.call_id == call_id)
        if limit is not None:
            query = query.limit(limit)
        with self.read() as conn:
            rows = conn.execute(query).all()
            found = [_artifact_from_row(row._mapping) for row in rows]
            if kind in (None, call_outputs.OUTPUT_KIND):  # outputs kept in call rows
                in_rows = _outputs.in_row_outputs(
                    conn, exec_id=exec_id, name=name, call_id=call_id, limit=limit
                )
                if in_rows:
                    found = sorted(found + in_rows, key=lambda r: (r.created_at, r.id))
        return found if limit is None else found[:limit]


def _store_error(url: sa.URL, exc: sa.exc.DBAPIError, action: str) -> KitaruBackendError | None:
    """A damaged file or an unreachable database as a KitaruBackendError; else None."""
    damaged = damaged_store_error(url, exc)
    if damaged is not None:
        return damaged
    if isinstance(exc, sa.exc.OperationalError) and url.get_backend_name() == "sqlite":
        return KitaruBackendError(sqlite_failure(url.database or "", exc.orig, action))
    if isinstance(exc, sa.exc.OperationalError) or _refused_by_the_database(exc):
        return KitaruBackendError(f"The Kitaru store failed to {action}: {exc.orig}")
    return None


#: SQLSTATE classes of a PostgreSQL server that refuses or cannot do the work (not a
#: wrong statement): connection (08), read-only transaction and other transaction states
#: (25: a standby, default_transaction_read_only), resources (53: disk full), operator
#: intervention (57), system errors (58); and 42501, a role without the privilege.
_REFUSING_STATES = ("08", "25", "53", "57", "58")


def _refused_by_the_database(exc: sa.exc.DBAPIError) -> bool:
    state = getattr(exc.orig, "sqlstate", None)
    return isinstance(state, str) and (state[:2] in _REFUSING_STATES or state == "42501")


# -- one store per URL per process -------------------------------------------------

_stores: dict[str, Store] = {}
_stores_lock = threading.Lock()


def get_store(url: str) -> Store:
    """The process-wide store for ``url`` (engines and pools are shared)."""
    key = normalize_url(url)
    store = _stores.get(key)
    if store is not None:
        return store
    with _stores_lock:
        store = _stores.get(key)
        if store is None:
            store = Store(key)
            _stores[key] = store
        return store


def forget_stores() -> None:
    """Dispose every cached store (tests switch KITARU_CONFIG_PATH between cases)."""
    with _stores_lock:
        for store in _stores.values():
            store.dispose()
        _stores.clear()


def _interrupted_call_error(
    status: ExecutionStatus, ended_at: float
) -> tuple[float, dict[str, Any]] | None:
    """``(ended_at, error)`` for the calls a run ending with ``status`` leaves running."""
    if status is not ExecutionStatus.CANCELLED:
        return None
    return ended_at, {
        "exception_type": "KitaruCancelled",
        "message": "The execution was cancelled while this call was running; its "
        "output was not recorded.",
    }

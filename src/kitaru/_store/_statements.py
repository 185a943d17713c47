"""Statements built once: the SQLite hot path's compiled SQL and PostgreSQL's one-statement
checkpoint write (see ``Store.record_call``)."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from kitaru._lazy import LazyModule
from kitaru._store import _columns as c
from kitaru._store import cache_keys, call_outputs
from kitaru._store._rows import _CALL_COLUMNS
from kitaru._store.records import (
    SAVED_KIND,
    ArtifactRecord,
    CallRecord,
    CallStatus,
    ExecutionRecord,
    ExecutionStatus,
)

if TYPE_CHECKING:
    import sqlalchemy as sa

    from kitaru._store import schema as t
else:  # imported on first use: the SQLite direct path needs neither (see _lazy)
    sa = LazyModule("sqlalchemy")
    t = LazyModule("kitaru._store.schema")


@functools.cache
def cache_lookup() -> sa.Select[Any]:
    """The newest completed call of another execution with a cache key, with its output
    (an artifact row, or the call row's own output columns)."""
    return (
        sa.select(
            t.checkpoint_calls,
            *[col.label(f"artifact__{col.name}") for col in t.artifacts.columns],
        )
        .select_from(
            t.checkpoint_calls.outerjoin(
                t.artifacts, t.checkpoint_calls.c.artifact_id == t.artifacts.c.id
            )
        )
        .where(
            t.checkpoint_calls.c.cache_key == sa.bindparam("cache_key"),
            t.checkpoint_calls.c.status == CallStatus.COMPLETED.value,
            t.checkpoint_calls.c.exec_id != sa.bindparam("exclude_exec_id"),
            # Its output: an artifact row, or kept in the call row (call_outputs).
            sa.or_(
                t.artifacts.c.id.is_not(None),
                t.checkpoint_calls.c.output_serializer.is_not(None),
            ),
        )
        .order_by(t.checkpoint_calls.c.ended_at.desc())
        .limit(1)
    )


@functools.cache
def recorded_calls_query() -> sa.Select[Any]:
    """What a resumed run reads of an execution's calls: ``RecordedCall``'s columns.

    No ORDER BY: sorting by ``seq`` needs a temporary B-tree on SQLite (no index
    covers it), which costs more than sorting the tuples in Python. An output kept
    in the call row comes in the artifact's places (``call_outputs``; no sha256).
    """
    c, a = t.checkpoint_calls.c, t.artifacts.c
    own = c.output_serializer.is_not(None)  # the output is in the row: its id and name
    own_id = c.exec_id + call_outputs.ID_MARK + sa.cast(c.seq, sa.Text)
    return (
        sa.select(
            c.call_id,
            c.seq,
            c.name,
            c.status,
            c.concurrent,
            c.attempts,
            sa.func.coalesce(a.id, c.artifact_id, sa.case((own, own_id))),
            sa.func.coalesce(a.name, sa.case((own, c.name))),
            sa.func.coalesce(a.serializer, c.output_serializer),
            sa.func.coalesce(a.type_path, c.output_type_path),
            a.sha256,
            sa.func.coalesce(a.inline_data, c.output_data),
            a.uri,
            c.output_crc32,
        )
        .select_from(t.checkpoint_calls.outerjoin(t.artifacts, c.artifact_id == a.id))
        .where(c.exec_id == sa.bindparam("exec_id"))
    )


def _dumps(value: Any) -> str:
    """``json.dumps(value)``; an empty mapping (a call's usual metadata) without the
    encoder, which costs a checkpoint's write ~2 µs for ``{}``."""
    if type(value) is dict and not value:
        return "{}"
    return json.dumps(value)


class _DriverStatement:
    """SQL for the ``sqlite3`` driver, executed with a plain tuple of ``names``' values."""

    def __init__(
        self, sql: str, names: Sequence[str], json_columns: frozenset[str] = frozenset()
    ) -> None:
        self.sql = sql
        self.names: list[str] = list(names)
        self._json = [name in json_columns for name in self.names]

    def record_values(
        self, convert: Mapping[str, Callable[[Any], Any]] | None = None
    ) -> Callable[[Any], tuple[Any, ...]]:
        """A function from a record (attributes named like the columns) to this
        statement's parameters: generated once, so a checkpoint builds its rows
        without an intermediate dict (enum values and JSON columns converted, and
        the columns in ``convert`` passed through their function)."""
        convert = dict(convert or {})
        parts = []
        for name, is_json in zip(self.names, self._json, strict=True):
            if not name.isidentifier():
                raise ValueError(f"column {name!r} is not an attribute name")
            if is_json:
                parts.append(f"None if r.{name} is None else dumps(r.{name})")
            elif name in convert:
                parts.append(f"convert_{name}(r.{name})")
            else:  # a StrEnum status binds as its text
                parts.append(f"r.{name}")
        source = f"lambda r: ({', '.join(parts)},)"
        names = {f"convert_{name}": function for name, function in convert.items()}
        # Only column names of Kitaru's own tables go into the source.
        function: Callable[[Any], tuple[Any, ...]] = eval(source, {"dumps": _dumps, **names})
        return function

    def values(self, row: Mapping[str, Any]) -> tuple[Any, ...]:
        return tuple(
            (None if row[name] is None else json.dumps(row[name])) if is_json else row[name]
            for name, is_json in zip(self.names, self._json, strict=True)
        )


def _insert(table: str, columns: Sequence[str], conflict: str = "") -> _DriverStatement:
    sql = (
        f"INSERT INTO {table} ({', '.join(columns)}) "
        f"VALUES ({', '.join('?' * len(columns))}){conflict}"
    )
    return _DriverStatement(sql, columns, c.JSON_COLUMNS[table])


def _qualified(table: str, columns: Sequence[str], label: str | None = None) -> str:
    if label is None:
        return ", ".join(f"{table}.{name}" for name in columns)
    return ", ".join(f"{table}.{name} AS {label}{name}" for name in columns)


class _SQLiteStatements:
    """The SQLite direct path's SQL, written from the column lists in ``_columns``
    (``tests/store`` checks them against the schema): no SQLAlchemy needed."""

    def __init__(self) -> None:
        call_columns = (*c.CALL_COLUMNS, *c.OUTPUT_COLUMNS)
        updates = ", ".join(
            f"{name} = excluded.{name}"
            for name in call_columns
            if name not in ("exec_id", "call_id")
        )
        self.artifact = _insert(c.ARTIFACTS, c.ARTIFACT_COLUMNS, " ON CONFLICT (id) DO NOTHING")
        # Parameters: ``call_values(record)`` followed by the output columns' values.
        self.call = _insert(
            c.CALLS, call_columns, f" ON CONFLICT (exec_id, call_id) DO UPDATE SET {updates}"
        )
        # The same write guarded by the execution's fence in the statement itself:
        # parameters as for ``call``, then the execution's id and fence. It writes no
        # row (rowcount 0) unless the execution is running under that fence, so a lone
        # call row is one statement, which SQLite commits on its own (no BEGIN/COMMIT).
        # (The SELECT's WHERE also keeps the upsert's ON CONFLICT unambiguous.)
        running = ExecutionStatus.RUNNING.value
        self.guarded_call = (
            f"INSERT INTO {c.CALLS} ({', '.join(call_columns)}) "
            f"SELECT {', '.join('?' * len(call_columns))} WHERE EXISTS (SELECT 1 FROM "
            f"{c.EXECUTIONS} WHERE id = ? AND fence = ? AND status = '{running}') "
            f"ON CONFLICT (exec_id, call_id) DO UPDATE SET {updates}"
        )
        # A long call's running mark (``Store.mark_running``): it never replaces a call
        # that has an output or the failure its own run recorded meanwhile.
        self.mark_running = _insert(
            c.CALLS,
            call_columns,
            " ON CONFLICT (exec_id, call_id) DO UPDATE SET status = excluded.status, "
            "started_at = excluded.started_at, ended_at = NULL "
            f"WHERE {c.CALLS}.status IN ('failed', 'running') "
            f"AND {c.CALLS}.attempts <= excluded.attempts",
        )
        # Without the autoincrement id, which SQLite assigns.
        self.attempt = _insert(c.ATTEMPTS, c.ATTEMPT_COLUMNS)
        self.execution = _insert(c.EXECUTIONS, c.EXECUTION_COLUMNS)
        # Records straight to parameters, for the checkpoint hot path.
        self.execution_values = self.execution.record_values()
        self.artifact_values = self.artifact.record_values()
        self.call_values = _DriverStatement(
            "", c.CALL_COLUMNS, c.JSON_COLUMNS[c.CALLS]
        ).record_values(
            # An int, not a bool: the driver binds exact ints, str, float and bytearray
            # as they are, and sends anything else through its adapter lookup (~0.4 µs).
            {"cache_key": cache_keys.stored, "concurrent": int}
        )
        self.attempt_values = self.attempt.record_values()
        self.owner = f"SELECT fence, status FROM {c.EXECUTIONS} WHERE id = ?"
        self.execution_by_id = (
            f"SELECT {', '.join(c.EXECUTION_COLUMNS)} FROM {c.EXECUTIONS} WHERE id = ?"
        )
        calls, artifacts = c.CALLS, c.ARTIFACTS
        join = f"{calls}.artifact_id = {artifacts}.id"
        # Rows of these read for ``call_from_row``: the call's columns, its output
        # columns, then its artifact row's (NULLs when the output is in the row).
        call_part = _qualified(calls, (*c.CALL_COLUMNS, *c.OUTPUT_COLUMNS))
        self.cache_lookup = _DriverStatement(
            f"SELECT {call_part}, {_qualified(artifacts, c.ARTIFACT_COLUMNS, 'artifact__')} "
            f"FROM {calls} LEFT OUTER JOIN {artifacts} ON {join} "
            f"WHERE {calls}.cache_key = ? AND {calls}.status = '{CallStatus.COMPLETED.value}' "
            f"AND {calls}.exec_id != ? "
            f"AND ({artifacts}.id IS NOT NULL OR {calls}.output_serializer IS NOT NULL) "
            f"ORDER BY {calls}.ended_at DESC LIMIT 1",
            ("cache_key", "exclude_exec_id"),
        )
        # Whether the lookup can find anything, with its parameters: a miss (every call
        # of a new run) costs a third of the lookup's time, whose 36 columns the driver
        # describes on every execute even when no row comes back.
        self.cache_probe = (
            f"SELECT 1 FROM {calls} WHERE cache_key = ? "
            f"AND status = '{CallStatus.COMPLETED.value}' AND exec_id != ? LIMIT 1"
        )
        # The end of a run: values in this order, then the id and the guards.
        self.finish_columns = (
            "status",
            "ended_at",
            "result_artifact_id",
            "failure",
            "lease_owner",
            "lease_expires_at",
            "flow_retries",  # times its current count: 1 keeps it, 0 resets it
        )
        self._finish: dict[tuple[int | None, bool], str] = {}
        # An execution's calls with their output artifacts, as plain tuples.
        self._call_names = c.CALL_COLUMNS
        self._artifact_names = c.ARTIFACT_COLUMNS
        self.calls = _DriverStatement(
            f"SELECT {call_part}, {_qualified(artifacts, c.ARTIFACT_COLUMNS)} "
            f"FROM {calls} LEFT OUTER JOIN {artifacts} ON {join} "
            f"WHERE {calls}.exec_id = ? ORDER BY {calls}.seq",
            ("exec_id",),
        )
        # What a resumed run reads of them (``RecordedCall``; ``recorded_calls_query``).
        memo_part = ", ".join(
            f"{calls}.{name}"
            for name in ("call_id", "seq", "name", "status", "concurrent", "attempts")
        )
        a, o = artifacts, calls
        own = f"CASE WHEN {o}.output_serializer IS NOT NULL THEN"
        mark = call_outputs.ID_MARK
        artifact_part = (
            f"COALESCE({a}.id, {o}.artifact_id, {own} {o}.exec_id || '{mark}' || {o}.seq END), "
            f"COALESCE({a}.name, {own} {o}.name END), "
            f"COALESCE({a}.serializer, {o}.output_serializer), "
            f"COALESCE({a}.type_path, {o}.output_type_path), {a}.sha256, "
            f"COALESCE({a}.inline_data, {o}.output_data), {a}.uri, {o}.output_crc32"
        )
        self.recorded_calls = _DriverStatement(
            f"SELECT {memo_part}, {artifact_part} FROM {calls} LEFT OUTER JOIN {artifacts} "
            f"ON {join} WHERE {calls}.exec_id = ?",
            ("exec_id",),
        )

    def finish_sql(self, statuses: int | None, fenced: bool) -> str:
        """``UPDATE`` of a run's end, guarded by ``statuses`` placeholders and the fence."""
        key = (statuses, fenced)
        sql = self._finish.get(key)
        if sql is None:
            sets = ", ".join(
                f"{name} = {name} * ?" if name == "flow_retries" else f"{name} = ?"
                for name in self.finish_columns
            )
            where = "id = ?"
            if statuses is not None:
                where += f" AND status IN ({', '.join('?' * statuses)})" if statuses else " AND 0"
            if fenced:
                where += " AND fence = ?"
            sql = f"UPDATE {c.EXECUTIONS} SET {sets} WHERE {where} RETURNING id"
            self._finish[key] = sql
        return sql

    @staticmethod
    def execution_from_row(row: tuple[Any, ...]) -> ExecutionRecord:
        """A row of ``execution_by_id`` as a record (JSON columns decoded)."""
        values = dict(zip(c.EXECUTION_COLUMNS, row, strict=True))
        for name in c.JSON_COLUMNS[c.EXECUTIONS]:
            values[name] = json_value(values[name])
        values["status"] = ExecutionStatus(values["status"])
        return ExecutionRecord(**values)

    def artifact_from_row(self, row: tuple[Any, ...]) -> ArtifactRecord:
        """A row of ``ARTIFACT_COLUMNS`` as a record."""
        art = dict(zip(self._artifact_names, row, strict=True))
        art["tags"] = json_value(art["tags"])
        if art["inline_data"] is not None:
            art["inline_data"] = bytes(art["inline_data"])
        return ArtifactRecord(**art)

    def call_from_row(self, row: tuple[Any, ...]) -> CallRecord:
        """A row of ``calls`` (or ``cache_lookup``) as a record (JSON columns decoded;
        ``{}``/``[]`` without a parser; an in-row output as its artifact record)."""
        n = len(self._call_names)
        values = dict(zip(self._call_names, row[:n], strict=True))
        values["status"] = CallStatus(values["status"])
        values["concurrent"] = bool(values["concurrent"])
        values["metadata"] = json_value(values["metadata"])
        values["error"] = json_value(values["error"])
        serializer, type_path, data, crc32 = row[n : n + 4]
        n += 4
        artifact = None
        if row[n] is not None:
            artifact = self.artifact_from_row(row[n:])
        elif serializer is not None:
            artifact = call_outputs.record_of_call(values, serializer, type_path, data, crc32)
            values["artifact_id"] = artifact.id
        return CallRecord(**values, artifact=artifact)


def dialect_insert(is_sqlite: bool) -> Any:
    """The dialect's ``insert`` (with ON CONFLICT); only the store's own dialect is imported
    (PostgreSQL's dialect modules cost a SQLite process ~40 ms of start-up)."""
    if is_sqlite:
        from sqlalchemy.dialects import sqlite

        return sqlite.insert
    from sqlalchemy.dialects import postgresql

    return postgresql.insert


def json_value(text: str | None) -> Any:
    """A JSON column's text decoded (``{}``/``[]`` without the parser)."""
    if text is None:
        return None
    if text == "{}":
        return {}
    if text == "[]":
        return []
    return json.loads(text)


def _pg_record_call(with_artifact: bool, with_attempt: bool, fenced: bool) -> sa.Insert:
    """One statement that writes a call, and optionally its artifact and attempt.

    When ``fenced``, every insert selects its values only if the execution is
    still running under the given fence, so a stale runner's write is a no-op
    (no row returned) instead of clobbering the new owner's records.
    """
    ex = t.executions.c
    # FOR SHARE: a claim committed after this statement's snapshot is seen (the row is
    # read again at its latest version), and one not yet committed waits for this write.
    guard = (
        sa.select(sa.literal_column("1"))
        .where(
            ex.id == sa.bindparam("g_exec_id"),
            ex.fence == sa.bindparam("g_fence", type_=sa.Integer),
            ex.status == ExecutionStatus.RUNNING.value,
        )
        .with_for_update(read=True)
        .exists()
        if fenced
        else sa.true()
    )

    def insert_from(table: sa.Table, prefix: str, skip: tuple[str, ...] = ()) -> Any:
        values = _bound_values(table, prefix, skip)
        return dialect_insert(False)(table).from_select(
            list(values), sa.select(*values.values()).where(guard)
        )

    call = insert_from(t.checkpoint_calls, "c_")
    statement: sa.Insert = call.on_conflict_do_update(
        index_elements=["exec_id", "call_id"],
        set_={
            name: call.excluded[name]
            for name in (*_CALL_COLUMNS, *c.OUTPUT_COLUMNS)
            if name not in ("exec_id", "call_id")
        },
    )
    if with_artifact:
        artifact = insert_from(t.artifacts, "a_").on_conflict_do_nothing(index_elements=["id"])
        statement = statement.add_cte(artifact.cte("kitaru_new_artifact"))
    if with_attempt:
        attempt = insert_from(t.checkpoint_attempts, "t_", skip=("id",))
        statement = statement.add_cte(attempt.cte("kitaru_new_attempt"))
    # The call row comes back only if the guard let the writes through.
    return statement.returning(t.checkpoint_calls.c.call_id)


def _bound_values(table: sa.Table, prefix: str, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    return {
        col.name: sa.bindparam(f"{prefix}{col.name}", type_=col.type)
        for col in table.columns
        if col.name not in skip
    }


def pg_take_cached_sql(dialect: sa.Dialect) -> str:
    """One PostgreSQL statement for a cache hit: find it and record the call that takes it.

    Parameters: ``cache_key`` (stored form), ``exclude_exec_id``, the new call's ``c_*`` columns
    (``artifact_id``, ``source_exec_id`` and ``metadata`` come from the hit) and the
    fence guard's ``g_exec_id``/``g_fence``. The row returned is the hit's call
    and artifact (``artifact__*``) plus ``kitaru_written`` (0: fenced out); no row:
    no hit. The hit's saved artifacts are copied to the new call in the same statement.
    """
    calls, artifacts, ex = t.checkpoint_calls.name, t.artifacts.name, t.executions.name
    call_columns = [c.name for c in t.checkpoint_calls.columns]
    from_hit = {
        # An output kept in the hit's row is taken by its id (call_outputs.output_id).
        "artifact_id": f"COALESCE(hit.artifact_id, hit.exec_id || '{call_outputs.ID_MARK}' "
        "|| hit.seq::TEXT)",
        "source_exec_id": "hit.exec_id",
        "metadata": "hit.metadata",
    }
    # Typed parameters: a NULL in a SELECT list is text to PostgreSQL otherwise.
    values = ", ".join(
        from_hit.get(c.name) or f"%(c_{c.name})s::{dialect.type_compiler_instance.process(c.type)}"
        for c in t.checkpoint_calls.columns
    )
    updates = ", ".join(
        f"{name} = excluded.{name}" for name in call_columns if name not in ("exec_id", "call_id")
    )
    hit_columns = ", ".join(
        [f"c.{name}" for name in call_columns]
        + [f"a.{c.name} AS artifact__{c.name}" for c in t.artifacts.columns]
    )
    # What the hit's call saved (kitaru.save) becomes the new call's too (saved_copies).
    copied = {
        "id": "gen_random_uuid()::TEXT",
        "exec_id": "%(g_exec_id)s",
        "call_id": "%(c_call_id)s",
        "created_at": "%(c_ended_at)s::DOUBLE PRECISION",
    }
    artifact_names = [c.name for c in t.artifacts.columns]
    saved_values = ", ".join(copied.get(name, f"s.{name}") for name in artifact_names)
    return (
        f"WITH hit AS (SELECT {hit_columns} FROM {calls} AS c "
        f"LEFT OUTER JOIN {artifacts} AS a ON c.artifact_id = a.id "
        f"WHERE c.cache_key = %(cache_key)s AND c.status = '{CallStatus.COMPLETED.value}' "
        f"AND c.exec_id <> %(exclude_exec_id)s "
        "AND (a.id IS NOT NULL OR c.output_serializer IS NOT NULL) "
        "ORDER BY c.ended_at DESC LIMIT 1), "
        f"taken AS (INSERT INTO {calls} ({', '.join(call_columns)}) "
        f"SELECT {values} FROM hit WHERE EXISTS (SELECT 1 FROM {ex} "
        f"WHERE {ex}.id = %(g_exec_id)s AND {ex}.fence = %(g_fence)s::INTEGER "
        f"AND {ex}.status = '{ExecutionStatus.RUNNING.value}' FOR SHARE) "
        f"ON CONFLICT (exec_id, call_id) DO UPDATE SET {updates} RETURNING 1), "
        f"saved AS (INSERT INTO {artifacts} ({', '.join(artifact_names)}) "
        f"SELECT {saved_values} FROM {artifacts} AS s, hit "
        f"WHERE s.exec_id = hit.exec_id AND s.call_id = hit.call_id AND s.kind = '{SAVED_KIND}' "
        "AND EXISTS (SELECT 1 FROM taken)) "
        "SELECT hit.*, (SELECT count(*) FROM taken) AS kitaru_written FROM hit"
    )

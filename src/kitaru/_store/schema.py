"""The metadata schema, as SQLAlchemy Core tables.

Timestamps are stored as float seconds since the epoch: cheap to write on the
hot path, ordered, and identical on SQLite and PostgreSQL. The client turns
them into ``datetime`` objects.

Alembic owns the DDL (see ``migrations/``); these tables are what the code
reads and writes, and ``tests/store`` checks that both agree.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles

#: Bumped with every migration: it lives in ``revision.py`` (no SQLAlchemy there).
from kitaru._store.revision import SCHEMA_REVISION  # noqa: F401


class JSONText(sa.JSON):
    """JSON whose SQLite column has text affinity (migration 0017).

    A column declared ``JSON`` has NUMERIC affinity on SQLite: a value that is a bare
    number is stored as a number, and an integer beyond 64 bits becomes a lossy REAL
    (a wait answered 123456789012345678901234567890 read back as 1.2345678901234568e+29).
    Declared ``JSON_TEXT``, the JSON text is kept as written.
    """

    cache_ok = True


@compiles(JSONText, "sqlite")
def _json_text_on_sqlite(type_: JSONText, compiler: object, **kw: object) -> str:
    return "JSON_TEXT"


metadata = sa.MetaData()

executions = sa.Table(
    "kitaru_executions",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("flow_name", sa.String(255), nullable=False),
    # Where the flow's code lives, so another process can import it again.
    sa.Column("flow_ref", sa.JSON, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("stack", sa.String(255), nullable=False),
    # The resolved settings (stack, cache, retries, image, sources) frozen at submission.
    sa.Column("config", sa.JSON, nullable=False),
    sa.Column("inputs_artifact_id", sa.String(36), nullable=True),
    sa.Column("result_artifact_id", sa.String(36), nullable=True),
    sa.Column("failure", sa.JSON, nullable=True),
    sa.Column("metadata", sa.JSON, nullable=False),
    sa.Column("original_exec_id", sa.String(36), nullable=True),
    # How a replay reuses the source execution (selector, overrides); None otherwise.
    sa.Column("replay_plan", sa.JSON, nullable=True),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("started_at", sa.Float, nullable=True),
    sa.Column("ended_at", sa.Float, nullable=True),
    # How many times the flow body has been started (flow-level retries, resumes).
    sa.Column("run_count", sa.Integer, nullable=False, server_default="0"),
    # Ownership: the runner holding the lease renews lease_expires_at; fence
    # increases on every takeover so a stale owner's writes can be refused.
    sa.Column("lease_owner", sa.String(64), nullable=True),
    sa.Column("lease_expires_at", sa.Float, nullable=True),
    sa.Column("fence", sa.Integer, nullable=False, server_default="0"),
    # Durable time and composition (migration 0010): the parent of a child flow,
    # the caller's idempotency key, and the schedule slot that started it.
    sa.Column("parent_exec_id", sa.String(36), nullable=True),
    sa.Column("idempotency_key", sa.String(255), nullable=True),
    sa.Column("schedule_name", sa.String(255), nullable=True),
    sa.Column("schedule_slot", sa.Float, nullable=True),
    # Flow-level retries this failure budget has used (migration 0016): kept across a
    # crash during the flow's backoff, back to 0 when the execution ends for good.
    sa.Column("flow_retries", sa.Integer, nullable=False, server_default="0"),
    sa.Index("ix_kitaru_executions_flow_created", "flow_name", "created_at"),
    sa.Index("ix_kitaru_executions_parent", "parent_exec_id"),
    sa.Index("ix_kitaru_executions_schedule", "schedule_name", "schedule_slot"),
    sa.Index("ix_kitaru_executions_status", "status"),
)

checkpoint_calls = sa.Table(
    "kitaru_checkpoint_calls",
    metadata,
    sa.Column("exec_id", sa.String(36), primary_key=True),
    sa.Column("call_id", sa.String(512), primary_key=True),
    # Order in which the body made the call (submission order for .submit()).
    sa.Column("seq", sa.Integer, nullable=False),
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column("type", sa.String(64), nullable=True),
    sa.Column("runtime", sa.String(16), nullable=False),
    # completed | failed | cached | reused | running
    sa.Column("status", sa.String(16), nullable=False),
    # A uuid (a row of ``artifacts``) or, for an output another call keeps in its row,
    # ``<exec_id>:out:<seq>`` (see _store/call_outputs.py): longer than a uuid.
    sa.Column("artifact_id", sa.String(64), nullable=True),
    # name + source hash + input hash; only set on calls whose output may be reused.
    sa.Column("cache_key", sa.String(255), nullable=True),
    # For cached/reused calls: the execution whose output was taken.
    sa.Column("source_exec_id", sa.String(36), nullable=True),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("metadata", sa.JSON, nullable=False),
    sa.Column("error", sa.JSON, nullable=True),
    sa.Column("started_at", sa.Float, nullable=True),
    sa.Column("ended_at", sa.Float, nullable=True),
    # Made with .submit() or as an async call: may have finished after later calls.
    sa.Column("concurrent", sa.Boolean, nullable=False, server_default=sa.false()),
    # The run of the flow body whose first attempt completed the call. Such a
    # call has no attempt row: its one attempt is read from this row instead
    # (one insert and two B-tree pages less per checkpoint).
    sa.Column("run", sa.Integer, nullable=True),
    # The arguments the call was made with, packed as JSON text (migration 0011;
    # see _store/call_inputs.py). In the row rather than as artifact rows: no extra
    # row or index per checkpoint; None for a call without arguments.
    sa.Column("inputs", sa.Text, nullable=True),
    # A small output kept in the call row instead of an artifact row (migration 0012;
    # see _store/call_outputs.py): one row and B-tree per checkpoint instead of three.
    # Its artifact id is ``<exec_id>:out:<seq>`` and ``artifact_id`` stays NULL.
    sa.Column("output_serializer", sa.String(32), nullable=True),
    sa.Column("output_type_path", sa.String(512), nullable=True),
    sa.Column("output_data", sa.LargeBinary, nullable=True),
    # CRC-32 of output_data: a damaged value is refused, never returned (a hash is
    # for blobs kept elsewhere; this guards bytes in the row against damage).
    sa.Column("output_crc32", sa.BigInteger, nullable=True),
    # Only calls whose output may be reused are looked up by key.
    sa.Index(
        "ix_kitaru_checkpoint_calls_cache_key",
        "cache_key",
        sqlite_where=sa.text("cache_key IS NOT NULL"),
        postgresql_where=sa.text("cache_key IS NOT NULL"),
    ),
)

checkpoint_attempts = sa.Table(
    "kitaru_checkpoint_attempts",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("exec_id", sa.String(36), nullable=False),
    sa.Column("call_id", sa.String(512), nullable=False),
    sa.Column("attempt", sa.Integer, nullable=False),
    # Which run of the flow body made this attempt (1 = first run).
    sa.Column("run", sa.Integer, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("started_at", sa.Float, nullable=False),
    sa.Column("ended_at", sa.Float, nullable=True),
    sa.Column("exception_type", sa.String(255), nullable=True),
    sa.Column("message", sa.Text, nullable=True),
    sa.Column("traceback", sa.Text, nullable=True),
    sa.Index("ix_kitaru_checkpoint_attempts_call", "exec_id", "call_id"),
)

artifacts = sa.Table(
    "kitaru_artifacts",
    metadata,
    # A uuid; or ``<exec_id>:out:<seq>`` for an in-row output kept here when the
    # execution that held it was deleted while other calls still use it.
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("exec_id", sa.String(36), nullable=True),
    sa.Column("call_id", sa.String(512), nullable=True),
    sa.Column("name", sa.String(255), nullable=False),
    # output | flow_inputs | flow_result | saved
    sa.Column("kind", sa.String(32), nullable=False),
    # For saved artifacts: prompt | response | context | input | output | blob
    sa.Column("type", sa.String(32), nullable=True),
    sa.Column("serializer", sa.String(32), nullable=False),
    sa.Column("type_path", sa.String(512), nullable=True),
    sa.Column("size", sa.Integer, nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False),
    # Small values live in the row; large ones in the blob store at ``uri``.
    sa.Column("inline_data", sa.LargeBinary, nullable=True),
    sa.Column("uri", sa.String(1024), nullable=True),
    sa.Column("tags", sa.JSON, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Index("ix_kitaru_artifacts_exec", "exec_id", "name"),
)

waits = sa.Table(
    "kitaru_waits",
    metadata,
    sa.Column("exec_id", sa.String(36), primary_key=True),
    # The wait's name, or wait / wait:2 / ... in the order the body reaches them.
    sa.Column("wait_id", sa.String(255), primary_key=True),
    sa.Column("name", sa.String(255), nullable=True),
    sa.Column("question", sa.Text, nullable=True),
    sa.Column("json_schema", sa.JSON, nullable=True),
    # The schema type itself (cloudpickle), so whoever gives input validates exactly.
    sa.Column("schema_pickle", sa.LargeBinary, nullable=True),
    sa.Column("metadata", sa.JSON, nullable=False),
    sa.Column("timeout", sa.Float, nullable=True),
    # pending | answered | aborted
    sa.Column("status", sa.String(16), nullable=False),
    # The validated answer in JSON form; the flow body gets it back as the schema type.
    sa.Column("value", JSONText, nullable=True),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("answered_at", sa.Float, nullable=True),
    sa.Index("ix_kitaru_waits_status", "status"),
)

logs = sa.Table(
    "kitaru_logs",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("exec_id", sa.String(36), nullable=False),
    # None for output of the flow body itself.
    sa.Column("call_id", sa.String(512), nullable=True),
    sa.Column("checkpoint", sa.String(255), nullable=True),
    sa.Column("ts", sa.Float, nullable=False),
    # stdout | stderr | logging
    sa.Column("stream", sa.String(16), nullable=False),
    sa.Column("level", sa.String(16), nullable=True),
    sa.Column("logger", sa.String(255), nullable=True),
    sa.Column("message", sa.Text, nullable=False),
    sa.Index("ix_kitaru_logs_exec", "exec_id", "id"),
)

events = sa.Table(
    "kitaru_events",
    metadata,
    sa.Column("exec_id", sa.String(36), primary_key=True),
    # Position in the execution's event stream (1, 2, ...): the reading cursor.
    # Writers take max + 1 in the inserting transaction, so a visible position
    # implies every earlier one is visible too (see _store/_events.py).
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("kind", sa.String(255), nullable=False),
    # The checkpoint call that published it (call id and checkpoint name).
    sa.Column("call_id", sa.String(512), nullable=True),
    sa.Column("checkpoint", sa.String(255), nullable=True),
    sa.Column("correlation_id", sa.String(255), nullable=True),
    # Order inside one correlation group (one checkpoint attempt).
    sa.Column("idx", sa.Integer, nullable=True),
    # The JSON document, as text: serialized once, where it was published.
    sa.Column("payload", sa.Text, nullable=False),
    sa.Column("ts", sa.Float, nullable=False),
    # SQLite: the rows live in the primary key's B-tree, not twice (migration 0014).
    sqlite_with_rowid=False,
)

# Sleeps, child joins and schedules (migration 0010) live in their own module.
# The server's auth tables (migration 0008) live in their own module.
from kitaru._store import auth_schema as _auth_schema  # noqa: E402, F401

# The secrets table (migration 0009) too.
from kitaru._store import secrets_schema as _secrets_schema  # noqa: E402, F401
from kitaru._store import time_schema as _time_schema  # noqa: E402, F401

"""Column names of the tables the SQLite direct path writes, without SQLAlchemy.

``schema.py`` (SQLAlchemy Core) stays the definition; these plain tuples let a
process that only runs flows on a current SQLite store build its SQL without
importing SQLAlchemy or building the metadata (see ``_lazy``). ``tests/store``
checks that they equal the schema's columns, in the schema's order.
"""

from __future__ import annotations

EXECUTIONS = "kitaru_executions"
CALLS = "kitaru_checkpoint_calls"
ARTIFACTS = "kitaru_artifacts"
ATTEMPTS = "kitaru_checkpoint_attempts"
EVENTS = "kitaru_events"
LOGS = "kitaru_logs"

EXECUTION_COLUMNS = (
    "id",
    "flow_name",
    "flow_ref",
    "status",
    "stack",
    "config",
    "inputs_artifact_id",
    "result_artifact_id",
    "failure",
    "metadata",
    "original_exec_id",
    "replay_plan",
    "created_at",
    "started_at",
    "ended_at",
    "run_count",
    "lease_owner",
    "lease_expires_at",
    "fence",
    "parent_exec_id",
    "idempotency_key",
    "schedule_name",
    "schedule_slot",
    "flow_retries",
)
CALL_COLUMNS = (
    "exec_id",
    "call_id",
    "seq",
    "name",
    "type",
    "runtime",
    "status",
    "artifact_id",
    "cache_key",
    "source_exec_id",
    "attempts",
    "metadata",
    "error",
    "started_at",
    "ended_at",
    "concurrent",
    "run",
    "inputs",
)
#: A small output kept in the call row (``call_outputs``); after ``CALL_COLUMNS`` in the
#: table, and not fields of ``CallRecord`` (its ``artifact`` carries them).
OUTPUT_COLUMNS = ("output_serializer", "output_type_path", "output_data", "output_crc32")
ARTIFACT_COLUMNS = (
    "id",
    "exec_id",
    "call_id",
    "name",
    "kind",
    "type",
    "serializer",
    "type_path",
    "size",
    "sha256",
    "inline_data",
    "uri",
    "tags",
    "created_at",
)
#: Without the autoincrement ``id``, which the database assigns.
ATTEMPT_COLUMNS = (
    "exec_id",
    "call_id",
    "attempt",
    "run",
    "status",
    "started_at",
    "ended_at",
    "exception_type",
    "message",
    "traceback",
)

#: JSON columns, stored as text: written with ``json.dumps``.
JSON_COLUMNS: dict[str, frozenset[str]] = {
    EXECUTIONS: frozenset({"flow_ref", "config", "failure", "metadata", "replay_plan"}),
    CALLS: frozenset({"metadata", "error"}),
    ARTIFACTS: frozenset({"tags"}),
    ATTEMPTS: frozenset(),
}

#: Width of each length-limited text column of the events table.
EVENT_WIDTHS: dict[str, int] = {
    "exec_id": 36,
    "kind": 255,
    "call_id": 512,
    "checkpoint": 255,
    "correlation_id": 255,
}

#: Columns of the logs table a captured line fills (``id`` is the database's).
LOG_COLUMNS = (
    "exec_id",
    "call_id",
    "checkpoint",
    "ts",
    "stream",
    "level",
    "logger",
    "message",
)

#: Width of each length-limited text column of the logs table.
LOG_WIDTHS: dict[str, int] = {
    "exec_id": 36,
    "call_id": 512,
    "checkpoint": 255,
    "stream": 16,
    "level": 16,
    "logger": 255,
}

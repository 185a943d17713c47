"""Rows <-> records for the store's tables, and small helpers on rows.

Kept apart from ``store.py`` (what the store does) so that both stay readable.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from kitaru._lazy import LazyModule
from kitaru._store import _columns, cache_keys, call_outputs
from kitaru._store.records import (
    ArtifactRecord,
    CallRecord,
    CallStatus,
    ExecutionRecord,
    ExecutionStatus,
    WaitStatus,
)

if TYPE_CHECKING:
    import sqlalchemy as sa

    from kitaru._store import schema as t
    from kitaru._store.records_extra import AttemptRecord, WaitRecord
else:  # imported on first use (see _lazy)
    sa = LazyModule("sqlalchemy")
    t = LazyModule("kitaru._store.schema")

_EXEC_COLUMNS = list(_columns.EXECUTION_COLUMNS)


_CALL_COLUMNS = list(_columns.CALL_COLUMNS)


_ART_COLUMNS = list(_columns.ARTIFACT_COLUMNS)


_ATTEMPT_COLUMNS = list(_columns.ATTEMPT_COLUMNS)


def _changed(conn: sa.Connection, update: sa.Update) -> bool:
    """Run a conditional update; True only if a row positively came back.

    Every store confirms its guarded writes with RETURNING rather than a rowcount,
    which some statement shapes report as -1 ("unknown") on some drivers.
    """
    table = update.table
    assert isinstance(table, sa.Table)
    key = next(iter(table.primary_key.columns))
    return conn.execute(update.returning(key)).first() is not None


_RUNNING = ExecutionStatus.RUNNING.value


_ACTIVE_VALUES = (ExecutionStatus.RUNNING.value, ExecutionStatus.WAITING.value)


_R = TypeVar("_R", CallRecord, "AttemptRecord", "WaitRecord")


def _by_exec(records: list[_R]) -> dict[str, list[_R]]:
    """Records grouped by execution id, each group in the order given."""
    grouped: dict[str, list[_R]] = {}
    for record in records:
        grouped.setdefault(record.exec_id, []).append(record)
    return grouped


def _execution_row(record: ExecutionRecord) -> dict[str, Any]:
    # Field by field: asdict() deep-copies the config and metadata, which are only
    # serialized here (a copy per execution start, for nothing).
    row = {name: getattr(record, name) for name in _EXEC_COLUMNS}
    row["status"] = record.status.value
    return row


def _execution_from_row(row: Mapping[Any, Any]) -> ExecutionRecord:
    values = {name: row[name] for name in _EXEC_COLUMNS}
    values["status"] = ExecutionStatus(values["status"])
    return ExecutionRecord(**values)


def _call_row(
    record: CallRecord, output: call_outputs.RowOutput = call_outputs.NO_OUTPUT
) -> dict[str, Any]:
    """The call's columns; ``output``: its in-row output's (``call_outputs.row_values``)."""
    serializer, type_path, data, crc32 = output
    return {
        "exec_id": record.exec_id,
        "call_id": record.call_id,
        "seq": record.seq,
        "name": record.name,
        "type": record.type,
        "runtime": record.runtime,
        "status": record.status.value,
        # An in-row output's id is its row's (call_outputs): not stored again.
        "artifact_id": record.artifact_id if serializer is None else None,
        "cache_key": cache_keys.stored(record.cache_key),  # stored short (cache_keys)
        "source_exec_id": record.source_exec_id,
        "attempts": record.attempts,
        "metadata": record.metadata,
        "error": record.error,
        "started_at": record.started_at,
        "ended_at": record.ended_at,
        "concurrent": record.concurrent,
        "run": record.run,
        "inputs": record.inputs,
        "output_serializer": serializer,
        "output_type_path": type_path,
        "output_data": data,
        "output_crc32": crc32,
    }


def _call_from_joined_row(row: Mapping[Any, Any]) -> CallRecord:
    values = {name: row[name] for name in _CALL_COLUMNS}
    values["status"] = CallStatus(values["status"])
    values["concurrent"] = bool(values["concurrent"])
    artifact = None
    if row.get("artifact__id") is not None:
        artifact = _artifact_from_row({name: row[f"artifact__{name}"] for name in _ART_COLUMNS})
    elif row.get("output_serializer") is not None:
        artifact = call_outputs.record_of_call(
            values,
            row["output_serializer"],
            row["output_type_path"],
            row["output_data"],
            row["output_crc32"],
        )
        values["artifact_id"] = artifact.id
    return CallRecord(**values, artifact=artifact)


def _artifact_row(record: ArtifactRecord) -> dict[str, Any]:
    return {
        "id": record.id,
        "exec_id": record.exec_id,
        "call_id": record.call_id,
        "name": record.name,
        "kind": record.kind,
        "type": record.type,
        "serializer": record.serializer,
        "type_path": record.type_path,
        "size": record.size,
        "sha256": record.sha256,
        "inline_data": record.inline_data,
        "uri": record.uri,
        "tags": record.tags,
        "created_at": record.created_at,
    }


def _artifact_from_row(row: Mapping[Any, Any]) -> ArtifactRecord:
    values = {name: row[name] for name in _ART_COLUMNS}
    if values["inline_data"] is not None:
        values["inline_data"] = bytes(values["inline_data"])
    return ArtifactRecord(**values)


def _attempt_row(record: AttemptRecord) -> dict[str, Any]:
    return {name: getattr(record, name) for name in _ATTEMPT_COLUMNS}


def _wait_row(record: WaitRecord) -> dict[str, Any]:
    return {
        "exec_id": record.exec_id,
        "wait_id": record.wait_id,
        "name": record.name,
        "question": record.question,
        "json_schema": record.json_schema,
        "schema_pickle": record.schema_pickle,
        "metadata": record.metadata,
        "timeout": record.timeout,
        "status": record.status.value,
        "value": record.value,
        "created_at": record.created_at,
        "answered_at": record.answered_at,
    }


def _wait_from_row(row: Mapping[Any, Any]) -> WaitRecord:
    values = {col.name: row[col.name] for col in t.waits.columns}
    values["status"] = WaitStatus(values["status"])
    if values["schema_pickle"] is not None:
        values["schema_pickle"] = bytes(values["schema_pickle"])
    from kitaru._store.records_extra import WaitRecord

    return WaitRecord(**values)


def merge_metadata(current: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """``kitaru.log`` semantics: dict values merge key by key, others are replaced."""
    merged = dict(current)
    for key, value in new.items():
        old = merged.get(key)
        if isinstance(old, dict) and isinstance(value, dict):
            merged[key] = {**old, **value}
        else:
            merged[key] = value
    return merged

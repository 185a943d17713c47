"""Small checkpoint outputs kept in their call row (``kitaru_checkpoint_calls.output_*``).

A checkpoint's output used to be an artifact row of its own, with its primary key
and an index: three B-tree pages written per step beside the call row, and about
300 bytes. An output small enough to be stored inline (``INLINE_LIMIT``) now lives
in the call row itself, so completing a checkpoint writes one row.

Readers cannot tell the difference: the store gives such a call's ``artifact`` as
an ``ArtifactRecord`` (kind ``output``) made from the row, with the id
``<exec_id>:out:<seq>``. ``Store.get_artifact`` resolves that id; another
execution's call that took the output (a cache hit, a replay) holds that id in
its ``artifact_id`` and the store reads the output from the owner's row.

* The runtime chooses: an output gets the in-row id when it is small
  (``Backend.store_serialized(in_row_id=...)``); the store keeps an artifact whose
  id is the call's own in-row id in the row (``row_values``), anything else as a row of
  ``kitaru_artifacts`` as before (large values, saved artifacts, older stores).
* An in-row output is stored with a CRC-32 of its bytes, not a SHA-256 (8 bytes
  instead of 64): damage is caught when it is read (the record's ``sha256`` is
  then left empty, so loading it fails as corrupted instead of returning a wrong
  value). A SHA-256 is computed for readers from checked bytes.
* Deleting an execution whose in-row output another execution's call still uses
  first copies that output into ``kitaru_artifacts`` under the same id
  (``Store.delete_execution``), so the id keeps resolving.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from typing import Any

from kitaru import _digest
from kitaru._store.records import ArtifactRecord, CallRecord, RecordedCall

ID_MARK = ":out:"
#: The ``kind`` of an output's artifact record (as for artifact rows).
OUTPUT_KIND = "output"
#: The row's output columns when it holds none.
NO_OUTPUT: tuple[None, None, None, None] = (None, None, None, None)
#: The output columns' values: serializer, type path, bytes and their CRC-32.
RowOutput = tuple[Any, Any, Any, Any]


def output_id(exec_id: str, seq: int) -> str:
    """The artifact id of the output kept in call ``seq``'s row of ``exec_id``."""
    return f"{exec_id}{ID_MARK}{seq}"


def parse_output_id(artifact_id: str) -> tuple[str, int] | None:
    """``(exec_id, call seq)`` of an in-row output's id; None for other ids."""
    exec_id, mark, seq = artifact_id.partition(ID_MARK)
    if not mark or not exec_id or not seq.isdigit():
        return None
    return exec_id, int(seq)


def row_values(call: CallRecord, artifact: ArtifactRecord | None) -> RowOutput:
    """The call row's output columns (``_columns.OUTPUT_COLUMNS``) for ``artifact``:
    its values when it is ``call``'s own small output (its id is the call's in-row id),
    else ``NO_OUTPUT`` (it is an artifact row, or there is none)."""
    if (
        artifact is None
        or artifact.inline_data is None
        or artifact.id != output_id(call.exec_id, call.seq)
    ):
        return NO_OUTPUT
    data = artifact.inline_data
    return artifact.serializer, artifact.type_path, data, zlib.crc32(data)


def intact(data: bytes, crc32: int | None) -> bool:
    """Whether an in-row output's bytes match the CRC-32 stored with them."""
    return crc32 is not None and zlib.crc32(data) == crc32


def record(
    exec_id: str,
    call_id: str,
    seq: int,
    name: str,
    ended_at: float | None,
    serializer: str,
    type_path: str | None,
    data: bytes,
    crc32: int | None,
) -> ArtifactRecord:
    """The artifact record of an output kept in a call row (damaged: an empty sha256,
    which makes loading it fail as corrupted)."""
    data = bytes(data)  # PostgreSQL's driver gives a memoryview
    return ArtifactRecord(
        id=output_id(exec_id, seq),
        exec_id=exec_id,
        call_id=call_id,
        name=name,
        kind=OUTPUT_KIND,
        serializer=serializer,
        type_path=type_path,
        size=len(data),
        sha256=_digest.sha256(data).hexdigest() if intact(data, crc32) else "",
        inline_data=data,
        created_at=ended_at or 0.0,
    )


def record_of_call(
    call: Mapping[str, Any], serializer: str, type_path: str | None, data: bytes, crc32: int | None
) -> ArtifactRecord:
    """``record`` for a call given by its column values (``exec_id``, ``call_id``, ...)."""
    return record(
        call["exec_id"],
        call["call_id"],
        call["seq"],
        call["name"],
        call["ended_at"],
        serializer,
        type_path,
        data,
        crc32,
    )


def taken_ids(calls: Sequence[RecordedCall]) -> set[str]:
    """Ids of in-row outputs of other calls that ``calls`` took (a cache hit, a replay):
    their rows hold only the id (no serializer of their own), and the output is read
    from its owner's row."""
    return {
        c.artifact_id
        for c in calls
        if c.serializer is None and c.artifact_id is not None and ID_MARK in c.artifact_id
    }


def taken_by(calls: Sequence[CallRecord]) -> set[str]:
    """``taken_ids`` for full call records (no ``artifact`` of their own)."""
    return {
        c.artifact_id
        for c in calls
        if c.artifact is None and c.artifact_id is not None and ID_MARK in c.artifact_id
    }

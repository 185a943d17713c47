"""Reading outputs kept in call rows (see ``call_outputs``), on the store's connections.

The hot paths (writing a call, loading an execution's own calls) handle in-row
outputs in their own statements. What is here runs when an id or a call points
at *another* row's output: a cache hit or a replay that took it, an artifact id
looked up, artifacts listed, and deleting an execution whose outputs others took.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from typing import Any

import sqlalchemy as sa

from kitaru._store import call_outputs
from kitaru._store import schema as t
from kitaru._store._rows import _artifact_row
from kitaru._store._statements import dialect_insert
from kitaru._store.records import ArtifactRecord, CallRecord, RecordedCall

Connect = Callable[[], AbstractContextManager[sa.Connection]]
#: Up to this many outputs of one execution are read by seq, more by scanning its calls.
_FEW = 100

_c = t.checkpoint_calls.c
#: What an in-row output's artifact record is made of (``call_outputs.record``'s order).
_RECORD_COLUMNS = (
    _c.exec_id,
    _c.call_id,
    _c.seq,
    _c.name,
    _c.ended_at,
    _c.output_serializer,
    _c.output_type_path,
    _c.output_data,
    _c.output_crc32,
)


def _records(
    conn: sa.Connection, where: Iterable[Any], limit: int | None = None
) -> list[ArtifactRecord]:
    """In-row outputs of the calls ``where`` selects, oldest first."""
    query = (
        sa.select(*_RECORD_COLUMNS)
        .where(_c.output_serializer.is_not(None), *where)
        .order_by(_c.ended_at)
        .limit(limit)
    )
    return [call_outputs.record(*row) for row in conn.execute(query).all()]


def in_row_output(conn: sa.Connection, artifact_id: str) -> ArtifactRecord | None:
    """The in-row output with this id (``<exec_id>:out:<seq>``), if its row exists."""
    parsed = call_outputs.parse_output_id(artifact_id)
    if parsed is None:
        return None
    exec_id, seq = parsed
    found = _records(conn, [_c.exec_id == exec_id, _c.seq == seq])
    return found[0] if found else None


def in_row_outputs(
    conn: sa.Connection,
    *,
    exec_id: str | None,
    name: str | None,
    call_id: str | None,
    limit: int | None,
) -> list[ArtifactRecord]:
    """In-row outputs matching ``list_artifacts``' filters, oldest first."""
    where = []
    if exec_id is not None:
        where.append(_c.exec_id == exec_id)
    if name is not None:
        where.append(_c.name == name)
    if call_id is not None:
        where.append(_c.call_id == call_id)
    return _records(conn, where, limit)


def _outputs_of(connect: Connect, ids: set[str]) -> dict[str, ArtifactRecord]:
    """The in-row outputs named by ``ids``, read execution by execution."""
    wanted: dict[str, set[int]] = {}
    for artifact_id in ids:
        parsed = call_outputs.parse_output_id(artifact_id)
        if parsed is not None:
            wanted.setdefault(parsed[0], set()).add(parsed[1])
    found: dict[str, ArtifactRecord] = {}
    if not wanted:
        return found
    with connect() as conn:
        for exec_id, seqs in wanted.items():
            where = [_c.exec_id == exec_id]
            # A few by seq; many (a fully cached execution takes thousands): all of
            # that execution's in-row outputs, its primary key's prefix.
            if len(seqs) <= _FEW:
                where.append(_c.seq.in_(sorted(seqs)))
            for record in _records(conn, where):
                if record.id in ids:
                    found[record.id] = record
    return found


def resolve_taken(connect: Connect, calls: Sequence[CallRecord], taken: set[str]) -> None:
    """Give calls that took another call's in-row output (cache, replay; ``taken``, see
    ``call_outputs.taken_by``) that output."""
    found = _outputs_of(connect, taken)
    for call in calls:
        if call.artifact is None and call.artifact_id in found:
            call.artifact = found[call.artifact_id]


def fill_recorded(
    connect: Connect, calls: list[RecordedCall], taken: set[str]
) -> list[RecordedCall]:
    """``calls`` with the in-row outputs they took from other calls (``taken``, see
    ``call_outputs.taken_ids``) filled in."""
    found = _outputs_of(connect, taken)
    filled = []
    for call in calls:
        record = found.get(call.artifact_id or "")
        if record is not None:
            call = call._replace(
                artifact_name=record.name,
                serializer=record.serializer,
                type_path=record.type_path,
                inline_data=record.inline_data,
                crc32=zlib.crc32(record.inline_data or b"") if record.sha256 else None,
            )
        filled.append(call)
    return filled


def keep_taken_outputs(conn: sa.Connection, exec_id: str) -> None:
    """Before ``exec_id``'s calls are deleted: copy each of its in-row outputs that
    another execution's call took into an artifact row with the same id, so that id
    keeps resolving (``delete_execution`` then keeps it as an artifact still in use)."""
    # LIKE on a prefix, not a range: PostgreSQL's collation may order ':' as it likes.
    mine = _c.artifact_id.startswith(f"{exec_id}{call_outputs.ID_MARK}", autoescape=True)
    taken = {
        row[0]
        for row in conn.execute(
            sa.select(_c.artifact_id).where(mine, _c.exec_id != exec_id).distinct()
        )
    }
    if not taken:
        return
    insert = dialect_insert(conn.dialect.name == "sqlite")(t.artifacts).on_conflict_do_nothing()
    for record in _records(conn, [_c.exec_id == exec_id]):
        if record.id in taken:
            conn.execute(insert, _artifact_row(record))

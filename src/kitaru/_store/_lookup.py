"""Read queries for the client: id prefixes and saved artifacts of many executions.

Kept out of ``store.py`` (which should not grow); they run on the store's
read connections like its own queries.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

import sqlalchemy as sa

from kitaru._store import schema as t
from kitaru._store.records import ArtifactRecord

if TYPE_CHECKING:
    from kitaru._store.store import Store

IdTable = Literal["executions", "artifacts"]

_TABLES: dict[str, sa.Table] = {"executions": t.executions, "artifacts": t.artifacts}


def _escape_like(text: str) -> str:
    """``text`` as a literal in a LIKE pattern with ``\\`` as the escape character."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _next_prefix(prefix: str) -> str | None:
    """The smallest string above every string starting with ``prefix`` (bytewise)."""
    for index in range(len(prefix) - 1, -1, -1):
        code = ord(prefix[index])
        if code < 0x10FFFF:
            return prefix[:index] + chr(code + 1)
    return None


def ids_with_prefix(store: Store, table: IdTable, prefix: str, *, limit: int) -> list[str]:
    """Up to ``limit`` ids of ``table`` that start with ``prefix``, in id order.

    One query on the primary key: a LIKE prefix pattern (``%`` and ``_`` in the
    prefix escaped), which PostgreSQL answers from the key's index under the C
    collation. SQLite's LIKE ignores case and so skips the index; the bytewise
    range added there uses it (and makes the match case-sensitive, as on
    PostgreSQL).
    """
    column = _TABLES[table].c.id
    query = (
        sa.select(column)
        .where(column.like(_escape_like(prefix) + "%", escape="\\"))
        .order_by(column)
        .limit(limit)
    )
    if store.engine.dialect.name == "sqlite":
        query = query.where(column >= prefix)
        upper = _next_prefix(prefix)
        if upper is not None:
            query = query.where(column < upper)
    with store.read() as conn:
        return [row[0] for row in conn.execute(query).all()]


def saved_artifacts_of(store: Store, exec_ids: Sequence[str]) -> dict[str, list[ArtifactRecord]]:
    """The ``kitaru.save`` artifacts of several executions in one query, oldest first."""
    from kitaru._store._rows import _artifact_from_row

    if not exec_ids:
        return {}
    a = t.artifacts.c
    query = (
        sa.select(t.artifacts)
        .where(a.exec_id.in_(list(exec_ids)), a.kind == "saved")
        .order_by(a.created_at, a.id)
    )
    with store.read() as conn:
        rows = conn.execute(query).all()
    found: dict[str, list[ArtifactRecord]] = {}
    for row in rows:
        record = _artifact_from_row(row._mapping)
        found.setdefault(record.exec_id or "", []).append(record)
    return found

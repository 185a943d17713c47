"""``GET /executions``: filters the client's ``list`` lacks (stack, time) and keyset pages.

The cursor is the (created_at, id) of the last row of a page, opaque to callers:
a page after it never repeats or skips a row when new executions arrive.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import sqlalchemy as sa

from kitaru._store import ExecutionRecord
from kitaru._store import schema as t
from kitaru._store._rows import _execution_from_row
from kitaru._text import storable_text
from kitaru.errors import KitaruUsageError

if TYPE_CHECKING:
    from kitaru._store import Store


@dataclass(frozen=True)
class Filters:
    statuses: Sequence[str] | None = None
    flow: str | None = None
    stack: str | None = None
    created_after: float | None = None
    created_before: float | None = None
    #: An id prefix or part of a flow name (case-insensitive).
    text: str | None = None
    #: Executions a schedule started (``executions list --schedule``).
    schedule: str | None = None


def encode_cursor(record: ExecutionRecord) -> str:
    raw = json.dumps([record.created_at, record.id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[float, str]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        created_at, exec_id = json.loads(base64.urlsafe_b64decode(padded.encode()))
        if not isinstance(exec_id, str) or isinstance(created_at, bool):
            raise ValueError
        return float(created_at), exec_id
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError):
        raise KitaruUsageError(
            f"cursor={cursor!r} is not a cursor this server returned; pass the next_cursor "
            "of the previous page, or omit it for the first page."
        ) from None


def page(
    store: Store, filters: Filters, *, limit: int, cursor: str | None
) -> tuple[list[ExecutionRecord], str | None]:
    """Up to ``limit`` executions, newest first, after ``cursor``; and the next cursor."""
    texts = [filters.flow, filters.stack, filters.text, filters.schedule]
    if any(v is not None and ("\x00" in v or not storable_text(v)) for v in texts):
        return [], None  # no stored name can hold that text (PostgreSQL refuses NUL)
    ex = t.executions.c
    query = sa.select(t.executions).order_by(ex.created_at.desc(), ex.id.desc())
    if filters.statuses:
        query = query.where(ex.status.in_(list(filters.statuses)))
    if filters.flow is not None:
        query = query.where(ex.flow_name == filters.flow)
    if filters.stack is not None:
        query = query.where(ex.stack == filters.stack)
    if filters.schedule is not None:
        query = query.where(ex.schedule_name == filters.schedule)
    if filters.text:
        query = query.where(
            sa.or_(
                ex.id.startswith(filters.text.lower(), autoescape=True),
                ex.flow_name.icontains(filters.text, autoescape=True),
            )
        )
    if filters.created_after is not None:
        query = query.where(ex.created_at >= filters.created_after)
    if filters.created_before is not None:
        query = query.where(ex.created_at < filters.created_before)
    if cursor is not None:
        created_at, exec_id = decode_cursor(cursor)
        query = query.where(
            sa.or_(
                ex.created_at < created_at,
                sa.and_(ex.created_at == created_at, ex.id < exec_id),
            )
        )
    with store.read() as conn:
        rows = conn.execute(query.limit(limit + 1)).all()
    records = [_execution_from_row(row._mapping) for row in rows[:limit]]
    next_cursor = encode_cursor(records[-1]) if len(rows) > limit and records else None
    return records, next_cursor

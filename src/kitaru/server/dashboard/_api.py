"""API routes the dashboard needs beyond the executions API: who am I, pending waits
across executions, flows with their success rate, and a live feed of execution changes.

They are ordinary ``/api/v1`` routes (same keys, same error bodies), usable by any client.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse

from kitaru._backend import get_backend
from kitaru._store import ExecutionStatus, WaitStatus
from kitaru._store import schema as t
from kitaru.server._auth import Reader
from kitaru.server._schemas import ErrorResponse
from kitaru.server.dashboard._models import FlowList, KeyInfo, PendingWaitList

_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse} for code in (400, 401, 403, 404, 422, 503)
}
router = APIRouter(tags=["dashboard"], responses=_ERRORS)

_ACTIVE = ("running", "waiting")
_SUCCESS = "completed"
_FINISHED = ("completed", "failed", "cancelled")
#: How far back the feed looks for rows that changed between two polls (clock slack).
_FEED_SLACK = 5.0
_FEED_POLL = 0.5
_KEEPALIVE = 15.0


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    from datetime import UTC, datetime

    try:
        return datetime.fromtimestamp(ts, UTC).isoformat()
    except (OverflowError, OSError, ValueError):  # past year 9999: the latest date there is
        return (datetime.max if ts > 0 else datetime.min).replace(tzinfo=UTC).isoformat()


@router.get("/me", response_model=KeyInfo, summary="The API key of this request")
def me(key: Reader) -> dict[str, Any]:
    """The dashboard hides action buttons for read-only keys."""
    return {
        "service_account": key.account,
        "name": key.name,
        "access": key.access,
        "can_write": key.access in ("write", "runner"),
    }


@router.get("/waits", response_model=PendingWaitList, summary="Pending waits of all executions")
def pending_waits(
    request: Request, _key: Reader, limit: Annotated[int, Query(ge=1)] = 200
) -> dict[str, Any]:
    limit = min(limit, request.app.state.settings.max_page_size)
    w, ex = t.waits.c, t.executions.c
    query = (
        sa.select(
            w.exec_id,
            w.wait_id,
            w.name,
            w.question,
            w.json_schema,
            w.schema_pickle.is_not(None).label("pickled_schema"),
            w.metadata,
            w.timeout,
            w.created_at,
            ex.flow_name,
            ex.status,
        )
        .join(t.executions, ex.id == w.exec_id)
        # As the store's pending_waits(): a wait is pending while its execution waits
        # for it. A cancelled (or failed, deleted...) execution keeps its wait row
        # "pending", but nothing can answer it any more.
        .where(w.status == WaitStatus.PENDING.value, ex.status == ExecutionStatus.WAITING.value)
        .order_by(w.created_at.desc())
        .limit(limit)
    )
    with get_backend().store.read() as conn:
        rows = conn.execute(query).all()
    items = [
        {
            "exec_id": r.exec_id,
            "wait_id": r.wait_id,
            "name": r.name or r.wait_id,
            "question": r.question,
            "schema": r.json_schema,
            "pickled_schema": bool(r.pickled_schema),
            "metadata": r.metadata or {},
            "timeout": r.timeout,
            "entered_waiting_at": _iso(r.created_at),
            "flow_name": r.flow_name,
            "execution_status": r.status,
        }
        for r in rows
    ]
    return {"items": items, "count": len(items)}


@router.get("/flows", response_model=FlowList, summary="Flows with counts and success rate")
def flows(
    _key: Reader,
    recent: Annotated[int, Query(ge=0, le=20)] = 5,
    limit: Annotated[int, Query(ge=1)] = 200,
) -> dict[str, Any]:
    ex = t.executions.c
    counts = (
        sa.select(ex.flow_name, ex.status, sa.func.count(), sa.func.max(ex.created_at))
        .group_by(ex.flow_name, ex.status)
        .order_by(ex.flow_name)
    )
    by_flow: dict[str, dict[str, Any]] = {}
    store = get_backend().store
    with store.read() as conn:
        for name, status, count, last in conn.execute(counts):
            entry = by_flow.setdefault(
                name, {"flow_name": name, "total": 0, "by_status": {}, "last_created_at": 0.0}
            )
            entry["total"] += count
            entry["by_status"][status] = count
            entry["last_created_at"] = max(entry["last_created_at"], last or 0.0)
        ordered = sorted(by_flow.values(), key=lambda e: -e["last_created_at"])[:limit]
        for entry in ordered:
            finished = sum(entry["by_status"].get(s, 0) for s in _FINISHED)
            done = entry["by_status"].get(_SUCCESS, 0)
            # Of the executions that ended: running or waiting ones have no outcome yet.
            entry["success_rate"] = None if finished == 0 else done / finished
            entry["last_created_at"] = _iso(entry["last_created_at"])
            entry["recent"] = []
            if recent:
                rows = conn.execute(
                    sa.select(ex.id, ex.status, ex.created_at, ex.started_at, ex.ended_at)
                    .where(ex.flow_name == entry["flow_name"])
                    .order_by(ex.created_at.desc(), ex.id.desc())
                    .limit(recent)
                ).all()
                entry["recent"] = [
                    {
                        "exec_id": r.id,
                        "status": r.status,
                        "created_at": _iso(r.created_at),
                        "duration": (
                            None
                            if r.started_at is None or r.ended_at is None
                            else r.ended_at - r.started_at
                        ),
                    }
                    for r in rows
                ]
    return {"items": ordered, "count": len(ordered)}


def _changes(since: float) -> list[tuple[str, str, int, float]]:
    """Executions that may have changed since ``since``: new, ended, or still active."""
    ex = t.executions.c
    query = sa.select(ex.id, ex.status, ex.run_count, ex.created_at).where(
        sa.or_(
            ex.status.in_(_ACTIVE),
            ex.created_at >= since,
            ex.ended_at >= since,
            ex.started_at >= since,
        )
    )
    with get_backend().store.read() as conn:
        return [(r.id, r.status, r.run_count, r.created_at) for r in conn.execute(query)]


async def _feed(request: Request) -> AsyncIterator[bytes]:
    """``change`` messages ({exec_id, status, new}) as executions appear or change state."""
    known: dict[str, tuple[str, int]] = {}
    first = True
    last_poll = time.time()
    idle = 0.0
    yield b"retry: 2000\n\n"
    while True:
        if await request.is_disconnected():
            return
        now = time.time()
        rows = await run_in_threadpool(_changes, last_poll - _FEED_SLACK)
        last_poll = now
        changed = []
        for exec_id, status, run_count, _created in rows:
            before = known.get(exec_id)
            known[exec_id] = (status, run_count)
            if not first and before != (status, run_count):
                changed.append({"exec_id": exec_id, "status": status, "new": before is None})
        # Forget rows that left the window (ended long ago): they cannot change silently
        # any more except by a retry/resume, which brings them back as "running".
        seen = {row[0] for row in rows}
        for exec_id in [k for k in known if k not in seen]:
            del known[exec_id]
        if first:
            first = False
            yield b"event: ready\ndata: {}\n\n"
        for change in changed:
            yield f"event: change\ndata: {json.dumps(change)}\n\n".encode()
        idle = 0.0 if changed else idle + _FEED_POLL
        if idle >= _KEEPALIVE:
            idle = 0.0
            yield b": keep-alive\n\n"
        await asyncio.sleep(_FEED_POLL)


# Not in the OpenAPI document: a stream that never ends by design (the dashboard
# reconnects), which schema-driven clients and fuzzers cannot use.
@router.get("/feed", include_in_schema=False)
async def feed(request: Request, _key: Reader) -> StreamingResponse:
    return StreamingResponse(
        _feed(request),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )

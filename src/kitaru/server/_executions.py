"""``/api/v1/executions``: list, read, logs, live stream, waits and control."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse

from kitaru._backend import get_backend
from kitaru._store import ExecutionStatus
from kitaru._store._lookup import saved_artifacts_of
from kitaru._store.records_extra import WaitRecord
from kitaru.client import KitaruClient
from kitaru.client._models import Execution, LogEntry, PendingWait
from kitaru.errors import KitaruUsageError
from kitaru.server import _control, _listing, _stream
from kitaru.server._auth import Reader, Writer
from kitaru.server._errors import ApiError
from kitaru.server._schemas import (
    Deleted,
    ErrorResponse,
    ExecutionDetail,
    ExecutionPage,
    HandleView,
    LogPage,
    ReplayRequest,
    ReplaySubmissionBody,
    WaitAbort,
    WaitInput,
    WaitList,
)
from kitaru.server._settings import DEFAULT_PAGE, MAX_ROW_ID

_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse} for code in (400, 401, 403, 404, 409, 422, 503)
}
router = APIRouter(prefix="/executions", tags=["executions"], responses=_ERRORS)


def _client() -> KitaruClient:
    return KitaruClient()


def _max_page(request: Request) -> int:
    value: int = request.app.state.settings.max_page_size
    return value


def _check_limit(request: Request, limit: int, *, factor: int = 1) -> None:
    """Refuse pages larger than the server's cap (log pages may be ``factor`` times larger)."""
    cap = _max_page(request) * factor
    if limit > cap:
        raise KitaruUsageError(
            f"limit={limit} is more than this server returns at once ({cap}, "
            "KITARU_SERVER_MAX_PAGE_SIZE); page through with cursor= instead."
        )


def _statuses(values: list[str] | None) -> list[str] | None:
    if not values:
        return None
    out = []
    for value in values:
        for part in value.split(","):
            try:
                out.append(ExecutionStatus(part.strip().lower()).value)
            except ValueError:
                known = ", ".join(s.value for s in ExecutionStatus)
                raise KitaruUsageError(f"Unknown status {part!r}; use one of: {known}.") from None
    return out


def _timestamp(value: datetime | None) -> float | None:
    if value is None:
        return None
    if value.tzinfo is None:
        raise KitaruUsageError(
            f"Times need a UTC offset (e.g. 2026-01-31T12:00:00Z), got {value.isoformat()}."
        )
    return value.timestamp()


def detail(execution: Execution) -> dict[str, Any]:
    """``to_dict()`` plus the lease (a remote client needs it for ``is_orphaned``)."""
    expires = execution.lease_expires_at
    return {
        **execution.to_dict(),
        "lease_owner": execution.lease_owner,
        "lease_expires_at": None if expires is None else expires.isoformat(),
    }


def handle_view(exec_id: str) -> dict[str, Any]:
    """What a remote ``FlowHandle`` needs: status, result artifact, the failure as stored."""
    record = get_backend().store.require_execution(_full(exec_id))
    return {
        "exec_id": record.id,
        "flow_name": record.flow_name,
        "status": record.status.value,
        "result_artifact_id": record.result_artifact_id,
        "failure": record.failure,
    }


def _full(exec_id: str) -> str:
    client = _client()
    return client.executions._record(exec_id).id


def _summary(execution: Execution) -> dict[str, Any]:
    """The summary plus how many checkpoint calls are done (the dashboard shows done/total)."""
    done = sum(1 for c in execution.checkpoints if c.status is ExecutionStatus.COMPLETED)
    return {**execution.summary_dict(), "checkpoints_done": done}


@router.get("", response_model=ExecutionPage, summary="List executions, newest first")
def list_executions(
    request: Request,
    _key: Reader,
    status: Annotated[list[str] | None, Query(description="One or more statuses.")] = None,
    flow: str | None = None,
    stack: str | None = None,
    schedule: Annotated[str | None, Query(description="Started by this schedule")] = None,
    q: Annotated[
        str | None, Query(description="Id prefix or part of the flow name (any case)")
    ] = None,
    created_after: Annotated[datetime | None, Query(description="ISO 8601 with offset")] = None,
    created_before: Annotated[datetime | None, Query(description="ISO 8601 with offset")] = None,
    limit: Annotated[int, Query(ge=1)] = DEFAULT_PAGE,
    cursor: str | None = None,
    full: Annotated[
        bool, Query(description="Whole executions (checkpoints, artifacts), not summaries")
    ] = False,
) -> dict[str, Any]:
    _check_limit(request, limit)
    filters = _listing.Filters(
        statuses=_statuses(status),
        flow=flow,
        stack=stack,
        schedule=schedule,
        text=q.strip() or None if q is not None else None,
        created_after=_timestamp(created_after),
        created_before=_timestamp(created_before),
    )
    backend = get_backend()
    store = backend.store
    records, next_cursor = _listing.page(store, filters, limit=limit, cursor=cursor)
    ids = [r.id for r in records]
    calls = store.calls_of(ids) if ids else {}
    attempts = store.attempts_of(ids) if ids else {}
    waiting = [r.id for r in records if r.status is ExecutionStatus.WAITING]
    waits = store.waits_of(waiting) if waiting else {}
    saved = saved_artifacts_of(store, ids)
    executions = [
        Execution.from_records(
            r,
            calls.get(r.id, []),
            attempts.get(r.id, []),
            None,
            waits.get(r.id),
            saved.get(r.id, []),
        )
        for r in records
    ]
    items = [detail(e) if full else _summary(e) for e in executions]
    return {"items": items, "count": len(items), "next_cursor": next_cursor}


@router.get("/{exec_id}", response_model=ExecutionDetail, summary="One execution, in full")
def get_execution(exec_id: str, _key: Reader) -> dict[str, Any]:
    return detail(_client().executions.get(exec_id))


@router.get(
    "/{exec_id}/result",
    response_model=HandleView,
    summary="Status, result artifact and failure record (what FlowHandle reads)",
)
def get_result(exec_id: str, _key: Reader) -> dict[str, Any]:
    return handle_view(exec_id)


@router.get("/{exec_id}/logs", response_model=LogPage, summary="Captured output, oldest first")
def get_logs(
    request: Request,
    exec_id: str,
    _key: Reader,
    after: Annotated[
        int | None, Query(ge=0, le=MAX_ROW_ID, description="Only lines after this id")
    ] = None,
    checkpoint: str | None = None,
    source: Annotated[str | None, Query(description="step | runner | all")] = "all",
    limit: Annotated[int, Query(ge=1)] = DEFAULT_PAGE * 10,
) -> dict[str, Any]:
    _check_limit(request, limit, factor=10)
    entries: list[LogEntry] = _client().executions.logs(
        exec_id,
        checkpoint=checkpoint,
        source=None if source == "all" else source,
        limit=limit,
        after_id=after,
    )
    items = [e.to_dict() for e in entries]
    return {
        "items": items,
        "count": len(items),
        "next_after": entries[-1].id if entries else after,
    }


@router.get(
    "/{exec_id}/stream",
    summary="Server-sent events: the execution's events and log lines, live",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def stream(
    request: Request,
    exec_id: str,
    _key: Reader,
    since: Annotated[str | None, Query(description="Last event id seen (resume)")] = None,
    follow: Annotated[bool, Query(description="false: stop at the last stored message")] = True,
    logs: Annotated[bool, Query(description="false: execution events only")] = True,
) -> StreamingResponse:
    full = await run_in_threadpool(_full, exec_id)
    await run_in_threadpool(get_backend().store.require_execution, full)
    cursor = _stream.Cursor.parse(request.headers.get("last-event-id") or since)
    return StreamingResponse(
        _stream.sse(request, full, cursor, follow=follow, logs=logs),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


@router.get("/{exec_id}/waits", response_model=WaitList, summary="Pending waits")
def pending_waits(
    exec_id: str,
    _key: Reader,
    every: Annotated[
        bool,
        Query(
            alias="all",
            description="Every wait of the execution, with its status and the answer "
            "recorded for it (as validated and stored), not only the pending ones.",
        ),
    ] = False,
) -> dict[str, Any]:
    if every:
        items = [_wait_record(w) for w in get_backend().store.waits(_full(exec_id))]
        return {"items": items, "count": len(items)}
    waits: list[PendingWait] = _client().executions.pending_waits(exec_id)
    return {"items": [w.to_dict() for w in waits], "count": len(waits)}


def _wait_record(record: WaitRecord) -> dict[str, Any]:
    return {
        **PendingWait.from_record(record).to_dict(),
        "status": record.status.value,
        "value": record.value,
        "answered_at": None if record.answered_at is None else _iso(record.answered_at),
    }


def _iso(ts: float) -> str:
    from datetime import UTC

    return datetime.fromtimestamp(ts, UTC).isoformat()


@router.post("/{exec_id}/input", response_model=ExecutionDetail, summary="Answer a wait")
def give_input(exec_id: str, body: WaitInput, _key: Writer) -> dict[str, Any]:
    full = _full(exec_id)
    _control.give_input(get_backend(), full, wait=body.wait, value=body.value)
    return detail(_client().executions.get(full))


@router.post("/{exec_id}/abort-wait", response_model=ExecutionDetail, summary="Abort a wait")
def abort_wait(exec_id: str, body: WaitAbort, _key: Writer) -> dict[str, Any]:
    full = _full(exec_id)
    _control.give_input(get_backend(), full, wait=body.wait, value=None, abort=True)
    return detail(_client().executions.get(full))


@router.post(
    "/{exec_id}/retry",
    response_model=ExecutionDetail,
    summary="Retry a failed execution (a worker runs it)",
)
def retry(exec_id: str, _key: Writer) -> dict[str, Any]:
    full = _full(exec_id)
    _control.retry(get_backend(), full)
    return detail(_client().executions.get(full))


@router.post(
    "/{exec_id}/resume",
    response_model=ExecutionDetail,
    summary="Resume a crashed or stopped execution (a worker runs it)",
)
def resume(
    exec_id: str,
    _key: Writer,
    gone_owner: Annotated[
        str | None,
        Query(
            max_length=255,
            description="The lease owner the client found gone on its own machine (a "
            "runner killed there): its lease no longer holds the execution.",
        ),
    ] = None,
) -> dict[str, Any]:
    full = _full(exec_id)
    _control.resume(get_backend(), full, gone_owner=gone_owner)
    return detail(_client().executions.get(full))


@router.post("/{exec_id}/cancel", response_model=ExecutionDetail, summary="Cancel")
def cancel(exec_id: str, _key: Writer) -> dict[str, Any]:
    return detail(_client().executions.cancel(exec_id))


@router.delete("/{exec_id}", response_model=Deleted, summary="Delete a finished execution")
def delete(exec_id: str, _key: Writer, recursive: bool = False) -> dict[str, Any]:
    full = _full(exec_id)
    _client().executions.delete(full, recursive=recursive)
    return {"exec_id": full, "deleted": True}


replays = APIRouter(prefix="/replays", tags=["executions"], responses=_ERRORS)


@replays.post(
    "",
    response_model=ReplaySubmissionBody,
    summary="Replay executions from a checkpoint (a worker runs the new executions)",
)
def replay(body: ReplayRequest, key: Writer) -> dict[str, Any]:
    from kitaru.client._replay import submit_replay

    named = _code_overrides(body)
    if named and key.access != "runner":
        raise ApiError(
            403,
            "KitaruPermissionError",
            f"API key {key.name!r} of service account {key.account!r} may not replay with "
            f"'code' overrides ({', '.join(repr(n) for n in named)}): they name code that "
            "workers import and run, which needs a key created with --runner (as recording "
            "executions and creating schedules do). Output, input and model overrides need "
            "only a read-write key.",
        )
    client = _client()
    submission = submit_replay(
        client.executions,
        body.executions,
        at=body.at,
        flow_overrides=body.flow_overrides,
        checkpoint_overrides=body.checkpoint_overrides,
        invocation_overrides=body.invocation_overrides,
        skip=body.skip,
        tag=body.tag,
        wait=False,
        on_error=body.on_error,
        launch=_control.hand_off_replay,
        import_code=False,  # the server never imports user code; the worker does
    )
    document: dict[str, Any] = submission.to_json()
    return document


def _code_overrides(body: ReplayRequest) -> list[str]:
    """The checkpoints and calls whose override entry gives ``code``."""
    named: list[str] = []
    for overrides in (body.checkpoint_overrides, body.invocation_overrides):
        for name, entry in (overrides or {}).items():
            if isinstance(entry, dict) and "code" in entry:
                named.append(name)
    return named

"""The MCP tools: plain functions over ``KitaruClient`` returning JSON-able data.

Names and arguments follow Kitaru 0.21's MCP server. Errors are raised as the
Kitaru errors the client raises; ``_server`` turns them into MCP tool errors.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

from kitaru.client import ExecutionStatus, KitaruClient
from kitaru.errors import KitaruStateError, KitaruUsageError

#: Statuses after which a run tool call stops waiting (waiting needs a person).
_SETTLED = {
    ExecutionStatus.COMPLETED,
    ExecutionStatus.FAILED,
    ExecutionStatus.CANCELLED,
    ExecutionStatus.WAITING,
}


def jsonable(value: Any) -> Any:
    """``value`` as plain JSON data (what does not encode becomes its repr)."""
    return json.loads(json.dumps(value, default=repr))


def _document(value: dict[str, Any]) -> dict[str, Any]:
    document: dict[str, Any] = jsonable(value)
    return document


def _client() -> KitaruClient:
    return KitaruClient()


def executions_list(
    flow: str | None = None, status: str | None = None, limit: int = 20
) -> dict[str, Any]:
    items = _client().executions.list(flow=flow, status=status, limit=limit)
    return {"items": [jsonable(e.summary_dict()) for e in items], "count": len(items)}


def executions_get(exec_id: str) -> dict[str, Any]:
    return _document(_client().executions.get(exec_id).to_dict())


def executions_latest(flow: str | None = None, status: str | None = None) -> dict[str, Any]:
    return _document(_client().executions.latest(flow=flow, status=status).to_dict())


def executions_run(
    target: str,
    inputs: dict[str, Any] | None = None,
    wait: bool = False,
    timeout: float = 60.0,
    stack: str | None = None,
) -> dict[str, Any]:
    from kitaru.mcp._targets import load_target

    if wait and not timeout > 0:  # checked before anything starts
        raise KitaruUsageError(f"timeout must be a positive number of seconds, got {timeout}.")
    flow = load_target(target)
    handle = flow.run(stack=stack, **(inputs or {}))
    client = _client()
    execution = client.executions.get(handle.exec_id)
    if wait:
        deadline = time.monotonic() + timeout
        while execution.status not in _SETTLED and time.monotonic() < deadline:
            time.sleep(0.05)
            execution = client.executions.get(handle.exec_id)
    document = _document(execution.to_dict())
    if execution.status is ExecutionStatus.COMPLETED:
        document["result"] = jsonable(handle.get())
    return document


def executions_cancel(exec_id: str) -> dict[str, Any]:
    return _document(_client().executions.cancel(exec_id).to_dict())


def executions_input(exec_id: str, value: Any, wait: str | None = None) -> dict[str, Any]:
    return _document(_client().executions.input(exec_id, wait=wait, value=value).to_dict())


def executions_abort_wait(exec_id: str, wait: str | None = None) -> dict[str, Any]:
    return _document(_client().executions.abort_wait(exec_id, wait=wait).to_dict())


def executions_resume(exec_id: str) -> dict[str, Any]:
    return _document(_client().executions.resume(exec_id).to_dict())


def executions_retry(exec_id: str) -> dict[str, Any]:
    return _document(_client().executions.retry(exec_id).to_dict())


def executions_replay(
    exec_id: str,
    at: str,
    flow_overrides: dict[str, Any] | None = None,
    checkpoint_overrides: dict[str, Any] | None = None,
    invocation_overrides: dict[str, Any] | None = None,
    skip: Sequence[str] | None = None,
    tag: str | None = None,
    wait: bool = True,
) -> dict[str, Any]:
    submission = _client().executions.replay(
        exec_id,
        at=at,
        flow_overrides=flow_overrides,
        checkpoint_overrides=checkpoint_overrides,
        invocation_overrides=invocation_overrides,
        skip=list(skip) if skip else None,
        tag=tag,
        wait=wait,
    )
    return _document(submission.to_json())


def executions_delete(exec_id: str, recursive: bool = False) -> dict[str, Any]:
    client = _client()
    resolved = client.executions.resolve_id(exec_id)
    try:
        client.executions.delete(resolved, recursive=recursive)
    except KitaruStateError:
        children = [] if recursive else client.executions.get(resolved).children
        if not children:
            raise
        # The client's message names its Python argument and the CLI flag; here the
        # way on is this tool's own parameter.
        shown = ", ".join(children[:5]) + (", ..." if len(children) > 5 else "")
        raise KitaruStateError(
            f"Execution {resolved} has {len(children)} child execution(s) ({shown}); nothing "
            "was deleted. Call kitaru_executions_delete again with recursive=true to delete "
            "them with it."
        ) from None
    return {"exec_id": resolved, "deleted": True}


def executions_statistics(
    group_by: Sequence[str] = (),
    metrics: Sequence[str] = (),
    flow: str | None = None,
    status: str | None = None,
    stack: str | None = None,
    tags: Sequence[str] | None = None,
    max_groups: int = 1000,
) -> dict[str, Any]:
    stats = _client().executions.statistics(
        group_by=list(group_by),
        metrics=list(metrics),
        flow=flow,
        status=status,
        stack=stack,
        tags=list(tags) if tags else None,
        max_groups=max_groups,
    )
    return _document(stats.to_dict())


def execution_logs(
    exec_id: str,
    checkpoint: str | None = None,
    source: str | None = "step",
    limit: int | None = None,
) -> dict[str, Any]:
    entries = _client().executions.logs(exec_id, checkpoint=checkpoint, source=source, limit=limit)
    items = [jsonable(e.to_dict()) for e in entries]
    return {"items": items, "count": len(items)}


def artifacts_list(
    exec_id: str,
    name: str | None = None,
    kind: str | None = None,
    producing_call: str | None = None,
    limit: int | None = None,
) -> dict[str, Any]:
    refs = _client().artifacts.list(
        exec_id, name=name, kind=kind, producing_call=producing_call, limit=limit
    )
    return {"items": [jsonable(r.to_dict()) for r in refs], "count": len(refs)}


def artifacts_get(artifact_id: str, include_value: bool = False) -> dict[str, Any]:
    ref = _client().artifacts.get(artifact_id)
    document = _document(ref.to_dict())
    if include_value:
        if ref.serializer == "pickle":
            # Unpickling runs code: the server never does (as the Kitaru server).
            document["value"] = None
            document["value_note"] = (
                "Stored with cloudpickle; load it with ArtifactRef.load() where the flow's "
                "code runs."
            )
        else:
            document["value"] = jsonable(ref.load())
    return document


def stacks_list() -> dict[str, Any]:
    from kitaru import list_stacks

    items = [{"id": s.id, "name": s.name, "is_active": s.is_active} for s in list_stacks()]
    return {"items": items, "count": len(items)}


def status() -> dict[str, Any]:
    from kitaru.cli._status import collect_status

    return _document(collect_status())

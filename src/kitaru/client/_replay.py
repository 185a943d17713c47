"""``executions.replay``: replay one or several executions and report each outcome.

Shapes are checked once for the whole request (a malformed override is the
caller's mistake whatever the source); everything that depends on a source
(its calls, its flow's signature) is checked per source, so with
``on_error="collect"`` one bad source does not stop the others.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from kitaru._runtime import replaying
from kitaru._runtime.replaying import ReplayRequest, UnknownSelectorError, check_entry
from kitaru._store import ExecutionStatus
from kitaru.errors import KitaruUsageError
from kitaru.handle import FlowHandle
from kitaru.replay import (
    ReplayFailureRow,
    ReplayPlanDocument,
    ReplayResultRow,
    ReplayRowStatus,
    ReplaySkippedRow,
    ReplaySubmission,
    new_submission_id,
    summarize,
)

if TYPE_CHECKING:
    from kitaru._backend import Backend
    from kitaru.client._client import ExecutionsAPI

#: Keywords of ``replay`` itself; any other keyword must be a parameter of the flow.
REPLAY_KEYWORDS = (
    "at",
    "flow_overrides",
    "checkpoint_overrides",
    "invocation_overrides",
    "skip",
    "tag",
    "wait",
    "on_error",
    "from_",
    "overrides",
)
FLOW_REPLAY_KEYWORDS = (*REPLAY_KEYWORDS, "stack", "image", "cache", "retries")
ON_ERROR = ("collect", "fail")


def legacy_execution(execution: Any, flow_inputs: dict[str, Any]) -> Any:
    """``execution``, or the ``exec_id=`` keyword releases up to 0.18 took instead
    (taken out of ``flow_inputs``, where it lands otherwise)."""
    if execution is None and "exec_id" in flow_inputs:
        return flow_inputs.pop("exec_id")
    return execution


def exec_refs(execution: Any) -> builtins.list[str]:
    """The execution ids of ``execution``: an id, an Execution, or a sequence of them."""
    if isinstance(execution, str) or hasattr(execution, "exec_id"):
        items: Iterable[Any] = [execution]
    elif hasattr(execution, "exec_ids"):  # a cohort result
        items = execution.exec_ids
    elif isinstance(execution, Iterable) and not isinstance(execution, bytes | Mapping):
        items = execution
    else:
        raise KitaruUsageError(
            f"replay() takes an execution id or a sequence of them, got {execution!r}."
        )
    refs: builtins.list[str] = []
    for item in items:
        ref = getattr(item, "exec_id", item)
        if not isinstance(ref, str) or not ref.strip():
            raise KitaruUsageError(
                f"replay() got {item!r} where an execution id (a non-empty string) belongs."
            )
        refs.append(ref.strip())
    if not refs:
        raise KitaruUsageError("replay() needs at least one execution id; none was given.")
    return refs


def _mapping(value: Any, name: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise KitaruUsageError(f"{name} must be a mapping, got {type(value).__name__}: {value!r}.")
    for key in value:
        if not isinstance(key, str) or not key.strip():
            raise KitaruUsageError(f"{name} keys must be non-empty strings, got {key!r}.")
    return dict(value)


def _selector(at: Any, from_: Any) -> str:
    if at is not None and from_ is not None and at != from_:
        raise KitaruUsageError(
            f"Pass either at= or the older from_=, not both (got at={at!r}, from_={from_!r})."
        )
    selector = at if at is not None else from_
    if selector is None:
        raise KitaruUsageError(
            "replay needs at= (a checkpoint name, invocation id or call id to start running "
            "live from)."
        )
    if not isinstance(selector, str) or not selector.strip():
        raise KitaruUsageError(
            f"at= must be a checkpoint name, invocation id or call id, got {selector!r}."
        )
    return selector.strip()


def _skip(skip: Any) -> builtins.list[str]:
    if skip is None:
        return []
    items = [skip] if isinstance(skip, str) else skip
    if not isinstance(items, Iterable):
        raise KitaruUsageError(f"skip= must be a sequence of selectors, got {skip!r}.")
    selectors: builtins.list[str] = []
    for item in items:
        if not isinstance(item, str) or not item.strip():
            raise KitaruUsageError(
                f"skip= selectors must be checkpoint names or call ids, got {item!r}."
            )
        selectors.append(item.strip())
    return selectors


def submit_replay(
    api: ExecutionsAPI,
    execution: Any,
    *,
    at: str | None,
    flow_overrides: Mapping[str, Any] | None = None,
    checkpoint_overrides: Mapping[str, Any] | None = None,
    invocation_overrides: Mapping[str, Any] | None = None,
    skip: Sequence[str] | None = None,
    tag: str | None = None,
    wait: bool | None = None,
    on_error: str | None = None,
    from_: str | None = None,
    overrides: Mapping[str, Any] | None = None,
    flow_inputs: Mapping[str, Any] | None = None,
    settings: Mapping[str, Any] | None = None,
    expect_flow: str | None = None,
    keywords: Sequence[str] = REPLAY_KEYWORDS,
    launch: Callable[[Backend, replaying.Prepared], Any] = replaying.submit,
    import_code: bool = True,
) -> ReplaySubmission:
    """``launch`` writes and starts a prepared replay (the server hands it to a worker);
    ``import_code=False``: ``code`` overrides are checked for form only (the server)."""
    flow_inputs = dict(flow_inputs or {})
    refs = exec_refs(legacy_execution(execution, flow_inputs))
    selector = _selector(at, from_)
    if on_error is None:
        on_error = "fail" if len(refs) == 1 else "collect"
    if on_error not in ON_ERROR:
        raise KitaruUsageError(f"on_error must be 'collect' or 'fail', got {on_error!r}.")
    if wait is None:
        wait = len(refs) == 1
    if not isinstance(wait, bool):
        raise KitaruUsageError(f"wait= must be True, False or None, got {wait!r}.")
    if tag is not None and (not isinstance(tag, str) or not tag.strip()):
        raise KitaruUsageError(f"tag= must be a non-empty string, got {tag!r}.")
    flows = _mapping(flow_overrides, "flow_overrides")
    checkpoints = {
        name: check_entry(entry, f"checkpoint_overrides[{name!r}]")
        for name, entry in _mapping(checkpoint_overrides, "checkpoint_overrides").items()
    }
    invocations = {
        name: check_entry(entry, f"invocation_overrides[{name!r}]")
        for name, entry in _mapping(invocation_overrides, "invocation_overrides").items()
    }
    legacy = _mapping(overrides, "overrides")
    for key in legacy:
        if not key.startswith("checkpoint.") or key == "checkpoint.":
            raise KitaruUsageError(
                f"Override key {key!r} is not supported: use 'checkpoint.<name>' in "
                "overrides=, or checkpoint_overrides={name: {'output': value}}."
            )
    skips = _skip(skip)
    request = ReplayRequest(
        at=selector,
        flow_overrides=flows,
        checkpoint_overrides=checkpoints,
        invocation_overrides=invocations,
        skip=skips,
        tag=None if tag is None else tag.strip(),
        legacy_outputs=legacy,
        legacy_inputs=dict(flow_inputs or {}),
        settings=dict(settings or {}),
        expect_flow=expect_flow,
        keywords=keywords,
        import_code=import_code,
    )

    backend = api._backend
    started: builtins.list[tuple[str, str, str]] = []
    failures: builtins.list[ReplayFailureRow] = []
    skipped: builtins.list[ReplaySkippedRow] = []
    matched: dict[str, builtins.list[str]] = {}
    for ref in refs:
        exec_id = ref
        try:
            exec_id = api.resolve_id(ref)  # a full id or a unique prefix
            prepared = replaying.prepare(backend, exec_id, request)
            launch(backend, prepared)
        except Exception as exc:
            if on_error == "fail":
                raise
            known = backend.store.get_execution(exec_id) is not None
            row_id = exec_id if known else None
            reason = str(exc) or type(exc).__name__
            if isinstance(exc, UnknownSelectorError):
                skipped.append(ReplaySkippedRow(ref, row_id, reason))
            else:
                failures.append(ReplayFailureRow(ref, row_id, reason))
            continue
        for key, call_ids in prepared.matched.items():
            merged = matched.setdefault(key, [])
            merged.extend(c for c in call_ids if c not in merged)
        started.append((ref, exec_id, prepared.record.id))

    results: builtins.list[ReplayResultRow] = []
    for ref, exec_id, replay_id in started:
        if not wait:
            results.append(
                ReplayResultRow(ref, exec_id, replay_id, "submitted", handle=FlowHandle(replay_id))
            )
            continue
        final = api.wait(replay_id)
        if final.status is not ExecutionStatus.COMPLETED and on_error == "fail":
            FlowHandle(replay_id).wait()  # raises the replay's KitaruExecutionError
        status: ReplayRowStatus = (
            "completed" if final.status is ExecutionStatus.COMPLETED else "failed"
        )
        results.append(ReplayResultRow(ref, exec_id, replay_id, status))

    plan_checkpoints: dict[str, Any] = dict(checkpoints)
    for key, value in legacy.items():
        plan_checkpoints.setdefault(key.removeprefix("checkpoint."), {"output": value})
    return ReplaySubmission(
        submission_id=new_submission_id(),
        tag=request.tag,
        at=selector,
        wait=wait,
        plan=ReplayPlanDocument(
            flow_overrides={**flows, **request.legacy_inputs},
            checkpoint_overrides=plan_checkpoints,
            invocation_overrides=invocations,
            skip=skips,
            matched_targets=matched,
        ),
        results=results,
        failures=failures,
        skipped=skipped,
        summary=summarize(results, failures, skipped),
        compare_url=None,
    )

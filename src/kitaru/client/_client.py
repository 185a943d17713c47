"""``KitaruClient``: read and control executions and artifacts from code."""

from __future__ import annotations

import builtins
import time
from collections.abc import Mapping, Sequence
from typing import Any

from kitaru._backend import Backend, get_backend
from kitaru._runtime import control
from kitaru._runtime.driver import get_live
from kitaru._runtime.execution import SAVE_CALL_TYPE
from kitaru._store import ArtifactRecord, CallRecord, ExecutionRecord, ExecutionStatus
from kitaru._store._lookup import saved_artifacts_of
from kitaru.client._ids import resolve_id
from kitaru.client._models import ArtifactRef, Execution, LogEntry, PendingWait
from kitaru.errors import (
    KitaruBackendError,
    KitaruFeatureNotAvailableError,
    KitaruTimeoutError,
    KitaruUsageError,
)

_POLL_MAX = 0.5
#: ``executions.logs(source=...)``: lines of checkpoint calls, or of the flow body.
LOG_SOURCES = ("step", "runner")


def _at_least_one(**values: int | None) -> None:
    """``limit``/``page``/``size`` are counts of 1 or more (as in Kitaru 0.21)."""
    for name, value in values.items():
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or value < 1
        ):
            raise KitaruUsageError(f"{name} must be an integer of 1 or more, got {value!r}.")


def _page(limit: int | None, page: int | None, size: int | None) -> tuple[int | None, int]:
    """(row limit, offset) for ``list``: ``limit`` alone, or ``page`` with ``size``."""
    _at_least_one(limit=limit, page=page, size=size)
    if limit is not None and (page is not None or size is not None):
        raise KitaruUsageError(
            "Pass either limit= or page=/size= to executions.list(), not both "
            "(limit=N takes the newest N; page=P, size=S takes page P of S)."
        )
    if page is not None and size is None:
        raise KitaruUsageError(
            f"page={page} needs size= (the page length), e.g. executions.list(page={page}, "
            "size=20)."
        )
    if size is not None:
        return size, ((page or 1) - 1) * size
    return limit, 0


def _statuses(status: Any) -> list[str] | None:
    if status is None:
        return None
    values = [status] if isinstance(status, str | ExecutionStatus) else list(status)
    out = []
    for value in values:
        try:
            out.append(ExecutionStatus(str(value).lower()).value)
        except ValueError:
            known = ", ".join(s.value for s in ExecutionStatus)
            raise KitaruUsageError(f"Unknown status {value!r}; use one of: {known}.") from None
    return out


class ExecutionsAPI:
    def __init__(self, client: KitaruClient) -> None:
        self._client = client
        self._backend: Backend = client._backend

    def resolve_id(self, exec_id: str) -> str:
        """The full id of the execution ``exec_id`` names (an id or a unique 4+ prefix).

        An ambiguous prefix raises ``KitaruUsageError`` naming the candidates; text
        that matches nothing comes back as it is (the lookup then reports it).
        """
        return resolve_id(self._backend.store, "executions", exec_id)

    def _record(self, exec_id: str) -> ExecutionRecord:
        return self._backend.store.require_execution(self.resolve_id(exec_id))

    def get(self, exec_id: str) -> Execution:
        """The execution with its checkpoints and artifacts (``exec_id`` may be a prefix)."""
        store = self._backend.store
        record = self._record(exec_id)
        return Execution.from_records(
            record,
            store.calls(record.id),
            store.attempts(record.id),
            self._client,
            store.waits(record.id) if record.status is ExecutionStatus.WAITING else None,
            saved_artifacts_of(store, [record.id]).get(record.id, []),
        )

    def list(
        self,
        *,
        flow: str | None = None,
        status: Any = None,
        limit: int | None = None,
        page: int | None = None,
        size: int | None = None,
    ) -> list[Execution]:
        """Executions, newest first.

        ``limit=N``: the newest N. ``page=P, size=S`` (1-based): the P-th page of S;
        ``size`` alone is page 1. Each value is 1 or more. ``status`` is an
        ``ExecutionStatus`` or its name (any case), or several of them.
        """
        row_limit, offset = _page(limit, page, size)
        records = self._backend.store.list_executions(
            flow=flow, status=_statuses(status), limit=row_limit, offset=offset
        )
        # A few queries for the whole page, not a few per execution.
        ids = [record.id for record in records]
        store = self._backend.store
        calls = store.calls_of(ids) if ids else {}
        attempts = store.attempts_of(ids) if ids else {}
        waiting = [r.id for r in records if r.status is ExecutionStatus.WAITING]
        waits = store.waits_of(waiting) if waiting else {}
        saved = saved_artifacts_of(store, ids)
        return [
            Execution.from_records(
                record,
                calls.get(record.id, []),
                attempts.get(record.id, []),
                self._client,
                waits.get(record.id),
                saved.get(record.id, []),
            )
            for record in records
        ]

    def latest(self, *, flow: str | None = None, status: Any = None) -> Execution:
        """The newest execution (of ``flow``, with ``status``); ``LookupError`` if none."""
        found = self.list(flow=flow, status=status, limit=1)
        if not found:
            what = f" of flow {flow!r}" if flow else ""
            if status is not None:
                what += f" with status {', '.join(_statuses(status) or [])}"
            raise LookupError(f"No executions{what} found.")
        return found[0]

    def wait(self, exec_id: str, timeout: float | None = None) -> Execution:
        """Block until the execution is finished; return its final state."""
        exec_id = self._record(exec_id).id
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = 0.01
        while True:
            execution = self.get(exec_id)
            if execution.status.is_finished:
                return execution
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise KitaruTimeoutError(
                    f"Execution {exec_id} did not finish within {timeout} s; it is "
                    f"{execution.status.value}."
                )
            live = get_live(exec_id)
            pause = delay if remaining is None else min(delay, remaining)
            if live is not None:
                live.done.wait(pause)
            else:
                time.sleep(pause)
            delay = min(delay * 2, _POLL_MAX)

    def resume(self, exec_id: str, *, wait: bool = False) -> Execution:
        """Continue an execution whose runner died (lease expired), in this process."""
        exec_id = self.resolve_id(exec_id)
        control.resume(self._backend, exec_id)
        return self.wait(exec_id) if wait else self.get(exec_id)

    def retry(self, exec_id: str, *, wait: bool = False) -> Execution:
        """Re-run a failed execution (same id); completed checkpoints are reused."""
        exec_id = self.resolve_id(exec_id)
        control.retry(self._backend, exec_id)
        return self.wait(exec_id) if wait else self.get(exec_id)

    def replay(
        self,
        execution: str | Execution,
        *,
        at: str | None = None,
        from_: str | None = None,
        checkpoint_overrides: Mapping[str, Any] | None = None,
        flow_overrides: Mapping[str, Any] | None = None,
        overrides: Mapping[str, Any] | None = None,
        wait: bool = False,
        invocation_overrides: Mapping[str, Any] | None = None,
        skip: Sequence[str] | None = None,
        tag: str | None = None,
        on_error: str | None = None,
        **flow_inputs: Any,
    ) -> Execution:
        """A new execution from ``at`` on, reusing the source's earlier outputs.

        Also accepts the older spelling ``from_=`` with
        ``overrides={"checkpoint.<name>": value}`` and flow inputs as keywords.
        """
        unsupported = {
            "invocation_overrides": invocation_overrides,
            "skip": skip,
            "tag": tag,
            "on_error": on_error,
        }
        given = [name for name, value in unsupported.items() if value is not None]
        if given:
            raise KitaruFeatureNotAvailableError(
                f"replay({', '.join(f'{n}=...' for n in given)}) is not supported yet; "
                "use at=, checkpoint_overrides= and flow_overrides=."
            )
        exec_id = execution.exec_id if isinstance(execution, Execution) else execution
        exec_id = self.resolve_id(exec_id)
        if at is not None and from_ is not None and at != from_:
            raise KitaruUsageError("Pass either at= or from_=, not both.")
        selector = at if at is not None else from_
        merged_checkpoints = dict(checkpoint_overrides or {})
        for key, value in (overrides or {}).items():
            if not isinstance(key, str) or not key.startswith("checkpoint."):
                raise KitaruUsageError(
                    f"Override key {key!r} is not supported: use 'checkpoint.<name>' "
                    "(or checkpoint_overrides={name: value})."
                )
            merged_checkpoints[key] = value
        merged_inputs = {**dict(flow_overrides or {}), **flow_inputs}
        record, _ = control.replay(
            self._backend,
            exec_id,
            at=selector,  # type: ignore[arg-type]
            checkpoint_overrides=merged_checkpoints,
            flow_overrides=merged_inputs,
        )
        return self.wait(record.id) if wait else self.get(record.id)

    def input(
        self,
        exec_id: str,
        *,
        wait: str | None = None,
        value: Any = None,
        resume: bool = True,
    ) -> Execution:
        """Answer a pending wait (the only one when ``wait`` is omitted).

        The value is validated against the wait's schema
        (``KitaruWaitValidationError`` with the details otherwise; nothing is
        stored). A runner still waiting wakes at once; an execution whose runner
        let go is resumed in this process unless ``resume=False`` (then a
        ``kitaru worker`` or ``executions.resume`` picks it up).
        """
        exec_id = self.resolve_id(exec_id)
        control.give_input(
            self._backend, exec_id, wait=wait, value=value, resume_if_released=resume
        )
        return self.get(exec_id)

    def abort_wait(
        self, exec_id: str, *, wait: str | None = None, resume: bool = True
    ) -> Execution:
        """Resolve a pending wait as aborted: ``kitaru.wait()`` raises KitaruWaitAbortedError."""
        exec_id = self.resolve_id(exec_id)
        control.give_input(self._backend, exec_id, wait=wait, abort=True, resume_if_released=resume)
        return self.get(exec_id)

    def pending_waits(self, exec_id: str | None = None) -> builtins.list[PendingWait]:
        """Pending waits of one execution (or of every waiting execution)."""
        if exec_id is not None:
            exec_id = self._record(exec_id).id
        return [PendingWait.from_record(w) for w in self._backend.store.pending_waits(exec_id)]

    def logs(
        self,
        exec_id: str,
        *,
        checkpoint: str | None = None,
        source: str | None = "step",
        limit: int | None = None,
        after_id: int | None = None,
    ) -> builtins.list[LogEntry]:
        """Captured output, oldest first.

        ``source="step"`` (the default): lines of checkpoint calls; ``"runner"``:
        lines of the flow body itself; ``None``: both. ``checkpoint`` (a checkpoint
        name or call id) narrows step lines to one checkpoint. ``after_id`` returns
        only lines newer than a previously seen entry (for following).
        """
        _at_least_one(limit=limit)
        if checkpoint is not None and (not isinstance(checkpoint, str) or not checkpoint.strip()):
            raise KitaruUsageError(
                f"checkpoint= must be a checkpoint name or call id, got {checkpoint!r}."
            )
        if source is not None and source not in LOG_SOURCES:
            raise KitaruUsageError(
                f"source= must be 'step' (checkpoint lines), 'runner' (flow body lines) or "
                f"None (both), got {source!r}."
            )
        if checkpoint is not None and source == "runner":
            raise KitaruUsageError(
                "checkpoint= selects lines of a checkpoint, which are source='step'; "
                "drop checkpoint= to read the flow body's (runner) lines."
            )
        exec_id = self._record(exec_id).id
        records = self._backend.store.logs(
            exec_id, checkpoint=checkpoint, after_id=after_id, limit=limit, source=source
        )
        return [LogEntry.from_record(r) for r in records]

    def cancel(self, exec_id: str) -> Execution:
        """Cancel a running or waiting execution; its runner stops at the next checkpoint."""
        exec_id = self.resolve_id(exec_id)
        control.cancel(self._backend, exec_id)
        return self.get(exec_id)

    def delete(self, exec_id: str) -> None:
        """Remove a finished execution and the artifacts nothing else uses."""
        exec_id = self.resolve_id(exec_id)
        control.delete(self._backend, exec_id)


class ArtifactsAPI:
    def __init__(self, client: KitaruClient) -> None:
        self._client = client
        self._backend: Backend = client._backend

    def list(
        self,
        exec_id: str,
        *,
        name: str | None = None,
        kind: str | None = None,
        producing_call: str | None = None,
        limit: int | None = None,
        type: str | None = None,
        role: str | None = None,
    ) -> list[ArtifactRef]:
        """Artifacts of an execution, oldest first: inputs, outputs, saved values, result.

        Filters: ``name``; ``kind`` (a saved artifact's ``kitaru.save(type=...)``,
        "response"/"output" for llm_call/tool_call outputs); ``producing_call``
        (the producing checkpoint's name or call id); ``type`` (the save type);
        ``role`` (output | saved | flow_inputs | flow_result).
        """
        _at_least_one(limit=limit)
        store = self._backend.store
        exec_id = resolve_id(store, "executions", exec_id)
        store.require_execution(exec_id)
        calls = store.calls(exec_id)
        records = {r.id: r for r in store.list_artifacts(exec_id=exec_id, name=name)}
        # Outputs reused from other executions (cache, replay) belong to this one too.
        for call in calls:
            artifact = call.artifact
            if artifact is not None and (name is None or artifact.name == name):
                records.setdefault(artifact.id, artifact)
        producers = _Producers(calls)
        refs = [producers.ref(record, self._client) for record in records.values()]
        refs = [
            ref
            for ref in refs
            if (kind is None or ref.kind == kind)
            and (producing_call is None or producing_call in (ref.producing_call, ref.call_id))
            and (type is None or ref.type == type)
            and (role is None or ref.role == role)
        ]
        refs.sort(key=lambda ref: (ref.created_at is None, ref.created_at))
        return refs[:limit] if limit is not None else refs

    def get(self, artifact_id: str) -> ArtifactRef:
        """One artifact by id (or a unique 4+ character prefix of it)."""
        store = self._backend.store
        record = store.get_artifact(resolve_id(store, "artifacts", artifact_id))
        if record is None:
            raise KitaruBackendError(
                f"Failed to load artifact '{artifact_id}': no artifact with this id. "
                "List an execution's artifacts with `kitaru artifacts list EXEC_ID`."
            )
        calls = []
        if record.exec_id is not None and record.call_id is not None:
            calls = store.calls(record.exec_id)
        return _Producers(calls).ref(record, self._client)


class _Producers:
    """Finds the checkpoint call that produced (returned or saved) an artifact."""

    def __init__(self, calls: Sequence[CallRecord]) -> None:
        self._by_artifact = {c.artifact_id: c for c in calls if c.artifact_id}
        self._by_call_id = {c.call_id: c for c in calls}

    def ref(self, record: ArtifactRecord, client: KitaruClient) -> ArtifactRef:
        # An output may come from another execution (cache): match it by artifact
        # first; a saved artifact names the call that saved it.
        call = self._by_artifact.get(record.id)
        if call is None and record.kind == "saved":
            call = self._by_call_id.get(record.call_id or "")
        if call is None or call.type == SAVE_CALL_TYPE:
            return ArtifactRef.from_record(record, client)
        return ArtifactRef.from_record(
            record, client, producing_call=call.name, call_type=call.type
        )


class KitaruClient:
    """Entry point for reading and controlling executions.

    ``server_url``/``auth_token`` are accepted for compatibility; Kitaru talks to
    its store directly (``KITARU_STORE_URL``), so passing a server raises
    ``KitaruFeatureNotAvailableError``.
    """

    def __init__(
        self,
        *,
        server_url: str | None = None,
        auth_token: str | None = None,
        project: str | None = None,
    ) -> None:
        if server_url is not None:
            raise KitaruFeatureNotAvailableError(
                "Kitaru has no server to connect to: it reads the store directly. Point "
                "KITARU_STORE_URL (or kitaru.configure(store_url=...)) at a shared "
                "PostgreSQL database instead."
            )
        del auth_token
        self.project = project
        self._backend = get_backend()
        self.executions = ExecutionsAPI(self)
        self.artifacts = ArtifactsAPI(self)

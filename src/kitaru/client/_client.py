"""``KitaruClient``: read and control executions and artifacts from code."""

from __future__ import annotations

import builtins
import time
from collections.abc import Mapping
from typing import Any

from kitaru._backend import Backend, get_backend
from kitaru._runtime import control
from kitaru._runtime.driver import get_live
from kitaru._store import ExecutionStatus
from kitaru.client._models import ArtifactRef, Execution, LogEntry, PendingWait
from kitaru.errors import (
    KitaruBackendError,
    KitaruFeatureNotAvailableError,
    KitaruNotFoundError,
    KitaruTimeoutError,
    KitaruUsageError,
)

_POLL_MAX = 0.5
#: Page size for ``list(page=N)`` when neither ``size`` nor ``limit`` is given.
DEFAULT_PAGE_SIZE = 20


def _at_least_one(**values: int | None) -> None:
    """``limit``/``page``/``size`` are counts of 1 or more (as in Kitaru 0.21)."""
    for name, value in values.items():
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or value < 1
        ):
            raise KitaruUsageError(f"{name} must be an integer of 1 or more, got {value!r}.")


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
    def __init__(self, backend: Backend) -> None:
        self._backend = backend

    def get(self, exec_id: str) -> Execution:
        """The execution with its checkpoints; ``KitaruBackendError`` if the id is unknown."""
        store = self._backend.store
        record = store.require_execution(exec_id)
        return Execution.from_records(
            record,
            store.calls(exec_id),
            store.attempts(exec_id),
            self._backend,
            store.waits(exec_id) if record.status is ExecutionStatus.WAITING else None,
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
        """Executions, newest first. ``page`` (1-based) with ``size`` paginates."""
        _at_least_one(limit=limit, page=page, size=size)
        per_page = size if size is not None else limit
        if page is not None and per_page is None:
            per_page = DEFAULT_PAGE_SIZE
        offset = (page - 1) * (per_page or 0) if page else 0
        records = self._backend.store.list_executions(
            flow=flow, status=_statuses(status), limit=per_page, offset=offset
        )
        # A few queries for the whole page, not a few per execution.
        ids = [record.id for record in records]
        store = self._backend.store
        calls = store.calls_of(ids) if ids else {}
        attempts = store.attempts_of(ids) if ids else {}
        waiting = [r.id for r in records if r.status is ExecutionStatus.WAITING]
        waits = store.waits_of(waiting) if waiting else {}
        return [
            Execution.from_records(
                record,
                calls.get(record.id, []),
                attempts.get(record.id, []),
                self._backend,
                waits.get(record.id),
            )
            for record in records
        ]

    def latest(self, *, flow: str | None = None, status: Any = None) -> Execution:
        found = self.list(flow=flow, status=status, limit=1)
        if not found:
            what = f" of flow {flow!r}" if flow else ""
            raise KitaruNotFoundError(f"No executions{what} found.")
        return found[0]

    def wait(self, exec_id: str, timeout: float | None = None) -> Execution:
        """Block until the execution is finished; return its final state."""
        started = time.monotonic()
        deadline = None if timeout is None else started + timeout
        delay = 0.01
        while True:
            execution = self.get(exec_id)
            if execution.status.is_finished:
                return execution
            remaining = None if deadline is None else deadline - time.monotonic()
            if timeout is not None and remaining is not None and remaining <= 0:
                raise KitaruTimeoutError(
                    exec_id=exec_id,
                    timeout_seconds=timeout,
                    elapsed_seconds=time.monotonic() - started,
                    last_status=execution.status,
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
        control.resume(self._backend, exec_id)
        return self.wait(exec_id) if wait else self.get(exec_id)

    def retry(self, exec_id: str, *, wait: bool = False) -> Execution:
        """Re-run a failed execution (same id); completed checkpoints are reused."""
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
        **flow_inputs: Any,
    ) -> Execution:
        """A new execution from ``at`` on, reusing the source's earlier outputs.

        Also accepts the older spelling ``from_=`` with
        ``overrides={"checkpoint.<name>": value}`` and flow inputs as keywords.
        """
        exec_id = execution.exec_id if isinstance(execution, Execution) else execution
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
        control.give_input(
            self._backend, exec_id, wait=wait, value=value, resume_if_released=resume
        )
        return self.get(exec_id)

    def abort_wait(
        self, exec_id: str, *, wait: str | None = None, resume: bool = True
    ) -> Execution:
        """Resolve a pending wait as aborted: ``kitaru.wait()`` raises KitaruWaitAbortedError."""
        control.give_input(self._backend, exec_id, wait=wait, abort=True, resume_if_released=resume)
        return self.get(exec_id)

    def pending_waits(self, exec_id: str | None = None) -> builtins.list[PendingWait]:
        """Pending waits of one execution (or of every waiting execution)."""
        if exec_id is not None:
            self._backend.store.require_execution(exec_id)
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
        """Captured output of the flow body and its checkpoints, oldest first.

        ``checkpoint`` is a checkpoint name or call id. ``source`` is accepted
        for compatibility: Kitaru captures user code only, so every source
        ("step", "runner", None) returns the same lines. ``after_id`` returns
        only lines newer than a previously seen entry (for following).
        """
        del source
        _at_least_one(limit=limit)
        self._backend.store.require_execution(exec_id)
        records = self._backend.store.logs(
            exec_id, checkpoint=checkpoint, after_id=after_id, limit=limit
        )
        return [LogEntry.from_record(r) for r in records]

    def cancel(self, exec_id: str) -> Execution:
        """Cancel a running or waiting execution; its runner stops at the next checkpoint."""
        control.cancel(self._backend, exec_id)
        return self.get(exec_id)

    def delete(self, exec_id: str) -> None:
        """Remove a finished execution and the artifacts nothing else uses."""
        control.delete(self._backend, exec_id)


class ArtifactsAPI:
    def __init__(self, backend: Backend) -> None:
        self._backend = backend

    def list(
        self,
        exec_id: str,
        *,
        name: str | None = None,
        kind: str | None = None,
        type: str | None = None,
        producing_call: str | None = None,
        limit: int | None = None,
    ) -> list[ArtifactRef]:
        """Artifacts of an execution: inputs, checkpoint outputs, saved artifacts, result.

        ``kind`` is output | saved | flow_inputs | flow_result; ``type`` filters
        saved artifacts by their ``kitaru.save(type=...)``.
        """
        _at_least_one(limit=limit)
        self._backend.store.require_execution(exec_id)
        # Outputs reused from other executions (cache, replay) belong to this one too.
        records = {
            r.id: r
            for r in self._backend.store.list_artifacts(
                exec_id=exec_id, name=name, kind=kind, call_id=producing_call
            )
        }
        for call in self._backend.store.calls(exec_id):
            artifact = call.artifact
            if artifact is None or artifact.id in records:
                continue
            if name is not None and artifact.name != name:
                continue
            if kind is not None and artifact.kind != kind:
                continue
            if producing_call is not None and call.call_id != producing_call:
                continue
            records[artifact.id] = artifact
        refs = [
            ArtifactRef.from_record(r, self._backend)
            for r in records.values()
            if type is None or r.type == type
        ]
        refs.sort(key=lambda ref: (ref.created_at is None, ref.created_at))
        return refs[:limit] if limit is not None else refs

    def get(self, artifact_id: str) -> ArtifactRef:
        record = self._backend.store.get_artifact(artifact_id)
        if record is None:
            raise KitaruBackendError(
                f"Failed to load artifact '{artifact_id}': no artifact with this id. "
                "List an execution's artifacts with "
                "`kitaru artifacts list EXEC_ID`."
            )
        return ArtifactRef.from_record(record, self._backend)


class KitaruClient:
    """Entry point for reading and controlling executions.

    ``server_url``/``auth_token``/``project`` are accepted for compatibility;
    Kitaru talks to its store directly (``KITARU_STORE_URL``), so passing any
    of them raises ``KitaruFeatureNotAvailableError`` (as in Kitaru 0.21).
    """

    def __init__(
        self,
        *,
        server_url: str | None = None,
        auth_token: str | None = None,
        project: str | None = None,
    ) -> None:
        given = [
            name
            for name, value in (
                ("server_url", server_url),
                ("auth_token", auth_token),
                ("project", project),
            )
            if value is not None
        ]
        if given:
            raise KitaruFeatureNotAvailableError(
                f"KitaruClient({', '.join(f'{n}=...' for n in given)}) is not supported: "
                "Kitaru reads its store directly. Point KITARU_STORE_URL (or "
                "kitaru.configure(store_url=...)) at a shared PostgreSQL database instead."
            )
        self._backend = get_backend()
        self.executions = ExecutionsAPI(self._backend)
        self.artifacts = ArtifactsAPI(self._backend)

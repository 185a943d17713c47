"""``KitaruClient``: read and control executions and artifacts from code."""

from __future__ import annotations

import builtins
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

from kitaru._backend import Backend, get_backend
from kitaru._runtime import control
from kitaru._runtime.driver import get_live, runner_failure
from kitaru._store import ExecutionStatus
from kitaru._text import storable_text
from kitaru.client._events import ExecutionEvent, iterate_events
from kitaru.client._models import ArtifactRef, Execution, LogEntry, PendingWait
from kitaru.config import resolve_store_location
from kitaru.errors import (
    KitaruFeatureNotAvailableError,
    KitaruStateError,
    KitaruTimeoutError,
    KitaruUsageError,
)

if TYPE_CHECKING:
    from kitaru.replay import ReplaySubmission

_POLL_MAX = 0.5
#: Page size for ``list(page=N)`` when neither ``size`` nor ``limit`` is given.
DEFAULT_PAGE_SIZE = 20


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
        """The execution with its checkpoints; ``KitaruStateError`` if the id is unknown."""
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
        if page is not None and page < 1:
            raise KitaruUsageError(f"page must be 1 or more, got {page}.")
        for name, value in (("limit", limit), ("size", size)):
            if value is not None and value < 0:
                raise KitaruUsageError(f"{name} must be 0 or more, got {value}.")
        per_page = size if size is not None else limit
        if page is not None and per_page is None:
            per_page = DEFAULT_PAGE_SIZE
        offset = (page - 1) * (per_page or 0) if page else 0
        if flow is not None and not storable_text(flow):
            return []  # no flow can have that name (undecodable bytes from argv)
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
            raise KitaruStateError(f"No executions{what} found.")
        return found[0]

    def wait(self, exec_id: str, timeout: float | None = None) -> Execution:
        """Block until the execution is finished; return its final state."""
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = 0.01
        while True:
            execution = self.get(exec_id)
            if execution.status.is_finished:
                return execution
            if runner_failure(exec_id) is not None:
                # This process's runner failed and could not record it: end the wait.
                from kitaru.handle import runner_failure_error

                error = runner_failure_error(exec_id, self._backend.store.get_execution(exec_id))
                if error is not None:
                    raise error
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
        control.resume(self._backend, exec_id)
        return self.wait(exec_id) if wait else self.get(exec_id)

    def retry(self, exec_id: str, *, wait: bool = False) -> Execution:
        """Re-run a failed execution (same id); completed checkpoints are reused."""
        control.retry(self._backend, exec_id)
        return self.wait(exec_id) if wait else self.get(exec_id)

    def replay(
        self,
        execution: str | Sequence[str] | Execution,
        *,
        at: str | None = None,
        flow_overrides: Mapping[str, Any] | None = None,
        checkpoint_overrides: Mapping[str, Any] | None = None,
        invocation_overrides: Mapping[str, Any] | None = None,
        skip: Sequence[str] | None = None,
        tag: str | None = None,
        wait: bool | None = None,
        on_error: Literal["collect", "fail"] | None = None,
        from_: str | None = None,
        overrides: Mapping[str, Any] | None = None,
        **flow_inputs: Any,
    ) -> ReplaySubmission:
        """Replay executions from checkpoint ``at``: each becomes a new execution.

        Calls before ``at`` reuse the source's recorded outputs; ``at`` and later
        calls run live. ``checkpoint_overrides`` ({name: entry}, every call of that
        checkpoint) and ``invocation_overrides`` ({call id: entry}, one call, wins)
        take entries with ``output``, ``input``, ``code`` or ``model``; ``skip``
        names calls after ``at`` that reuse their recorded output. ``wait``
        defaults to True for one id, ``on_error`` to "fail" for one id ("collect"
        for several). Also accepts the older ``from_=``, ``overrides={"checkpoint.<name>":
        value}`` and flow inputs as keywords.
        """
        from kitaru.client._replay import submit_replay

        return submit_replay(
            self,
            execution,
            at=at,
            flow_overrides=flow_overrides,
            checkpoint_overrides=checkpoint_overrides,
            invocation_overrides=invocation_overrides,
            skip=skip,
            tag=tag,
            wait=wait,
            on_error=on_error,
            from_=from_,
            overrides=overrides,
            flow_inputs=flow_inputs,
        )

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
        self._backend.store.require_execution(exec_id)
        if checkpoint is not None and not storable_text(checkpoint):
            return []
        records = self._backend.store.logs(
            exec_id, checkpoint=checkpoint, after_id=after_id, limit=limit
        )
        return [LogEntry.from_record(r) for r in records]

    def events(
        self,
        exec_id: str,
        *,
        kinds: builtins.list[str] | None = None,
        checkpoint: str | None = None,
        correlation_ids: builtins.list[str] | None = None,
        since: str | None = None,
        reconnect: bool = True,
        follow: bool = True,
    ) -> Iterator[ExecutionEvent]:
        """The execution's events, oldest first; follows it live until it finishes.

        Filters: event ``kinds``, ``checkpoint`` (a name or call id),
        ``correlation_ids``; ``since`` is the ``cursor`` of an event already seen.
        ``reconnect`` retries reads the store failed (a few times, with pauses).
        ``follow=False`` stops at the last stored event instead of waiting for more
        (a waiting execution is otherwise followed until it is resumed and finishes).
        Arguments are checked, and the execution looked up, before iterating.
        """
        return iterate_events(
            self._backend,
            exec_id,
            kinds=kinds,
            checkpoint=checkpoint,
            correlation_ids=correlation_ids,
            since=since,
            reconnect=reconnect,
            follow=follow,
        )

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
        self._backend.store.require_execution(exec_id)
        if not all(storable_text(v) for v in (name, kind, producing_call) if v is not None):
            return []  # no stored artifact can match undecodable text
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
            raise KitaruStateError(
                f"No artifact with id {artifact_id!r}. List an execution's artifacts with "
                "`kitaru artifacts list EXEC_ID`."
            )
        return ArtifactRef.from_record(record, self._backend)


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
        url, source = resolve_store_location()
        if source is not None:  # a store the user named must exist: never read a new empty one
            from kitaru._store.engine import require_existing_store

            require_existing_store(url, source)
        self._backend = get_backend()
        self.executions = ExecutionsAPI(self._backend)
        self.artifacts = ArtifactsAPI(self._backend)

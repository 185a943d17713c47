"""``KitaruClient``: read and control executions and artifacts from code."""

from __future__ import annotations

import builtins
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

from kitaru._backend import Backend, get_backend
from kitaru._runtime import control
from kitaru._runtime.driver import get_live, runner_failure
from kitaru._runtime.execution import SAVE_CALL_TYPE
from kitaru._store import ArtifactRecord, CallRecord, ExecutionRecord, ExecutionStatus
from kitaru._text import storable_text
from kitaru.client._events import ExecutionEvent, iterate_events
from kitaru.client._ids import resolve_id
from kitaru.client._models import ArtifactRef, Execution, LogEntry, PendingWait
from kitaru.config import resolve_store_location
from kitaru.errors import (
    KitaruFeatureNotAvailableError,
    KitaruNotFoundError,
    KitaruTimeoutError,
    KitaruUsageError,
    artifact_not_found,
)

if TYPE_CHECKING:
    from kitaru.analysis import CohortQuery, ExecutionStatistics
    from kitaru.client._remote_config import Connection
    from kitaru.replay import ReplaySubmission
    from kitaru.schedules import SchedulesAPI

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


def _saved_artifacts_of(store: Any, ids: Sequence[str]) -> dict[str, Any]:
    # Imported here: it needs SQLAlchemy, which `import kitaru` does not load.
    from kitaru._store._lookup import saved_artifacts_of

    return saved_artifacts_of(store, ids)


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
        """The execution with its checkpoints and artifacts (``exec_id`` may be a prefix).

        ``KitaruBackendError`` if no execution has that id.
        """
        store = self._backend.store
        record = self._record(exec_id)
        return Execution.from_records(
            record,
            store.calls(record.id),
            store.attempts(record.id),
            self._client,
            store.waits(record.id) if record.status is ExecutionStatus.WAITING else None,
            _saved_artifacts_of(store, [record.id]).get(record.id, []),
            suspensions=store.suspensions(record.id)
            if record.status is ExecutionStatus.WAITING
            else None,
            children=[child.id for child in store.children(record.id)],
        )

    def list(
        self,
        *,
        flow: str | None = None,
        status: Any = None,
        limit: int | None = None,
        page: int | None = None,
        size: int | None = None,
        schedule: str | None = None,
    ) -> list[Execution]:
        """Executions, newest first (``schedule``: only those that schedule started).

        ``limit=N``: the newest N. ``page=P, size=S`` (1-based): the P-th page of S;
        ``size`` alone is page 1. Each value is 1 or more. ``status`` is an
        ``ExecutionStatus`` or its name (any case), or several of them.
        """
        row_limit, offset = _page(limit, page, size)
        if flow is not None and not storable_text(flow):
            return []  # no flow can have that name (undecodable bytes from argv)
        extra: dict[str, Any] = {} if schedule is None else {"schedule": schedule}
        records = self._backend.store.list_executions(
            flow=flow, status=_statuses(status), limit=row_limit, offset=offset, **extra
        )
        # A few queries for the whole page, not a few per execution.
        ids = [record.id for record in records]
        store = self._backend.store
        calls = store.calls_of(ids) if ids else {}
        attempts = store.attempts_of(ids) if ids else {}
        waiting = [r.id for r in records if r.status is ExecutionStatus.WAITING]
        waits = store.waits_of(waiting) if waiting else {}
        paused = store.suspensions_of(waiting) if waiting else {}
        saved = _saved_artifacts_of(store, ids)
        return [
            Execution.from_records(
                record,
                calls.get(record.id, []),
                attempts.get(record.id, []),
                self._client,
                waits.get(record.id),
                saved.get(record.id, []),
                suspensions=paused.get(record.id),
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
            raise KitaruNotFoundError(f"No executions{what} found.")
        return found[0]

    def wait(self, exec_id: str, timeout: float | None = None) -> Execution:
        """Block until the execution is finished; return its final state."""
        exec_id = self._record(exec_id).id
        started = time.monotonic()
        deadline = None if timeout is None else started + timeout
        delay = 0.01
        while True:
            execution = self.get(exec_id)
            if execution.status.is_finished:
                return execution
            if runner_failure(exec_id) is not None:
                # This process's runner failed itself. Recorded meanwhile (between the
                # read above and now): return the finished execution like any other.
                # Not recorded: nothing else will end the wait, so raise.
                from kitaru.handle import runner_failure_error

                record = self._backend.store.get_execution(exec_id)
                if record is not None and record.status.is_finished:
                    continue
                error = runner_failure_error(exec_id, record)
                if error is not None:
                    raise error
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
        exec_id = self.resolve_id(exec_id)
        control.resume(self._backend, exec_id)
        return self.wait(exec_id) if wait else self._restarted(exec_id)

    def retry(self, exec_id: str, *, wait: bool = False) -> Execution:
        """Re-run a failed execution (same id); completed checkpoints are reused."""
        exec_id = self.resolve_id(exec_id)
        control.retry(self._backend, exec_id)
        return self.wait(exec_id) if wait else self._restarted(exec_id)

    def _restarted(self, exec_id: str) -> Execution:
        """The execution just restarted: its checkpoints are read when first used.

        Restarting a long execution must not pay for reading all of its calls
        (while its runner is replaying them) only to return a snapshot.
        """
        store = self._backend.store
        record = store.require_execution(exec_id)

        def parts() -> Any:
            return (
                store.calls(exec_id),
                store.attempts(exec_id),
                _saved_artifacts_of(store, [exec_id]).get(exec_id, []),
            )

        return Execution.from_records(
            record,
            [],
            [],
            self._client,
            store.waits(exec_id) if record.status is ExecutionStatus.WAITING else None,
            parts=parts,
        )

    def replay(
        self,
        execution: str | Sequence[str] | Execution | None = None,
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

    def statistics(
        self,
        *,
        group_by: Sequence[Any] = (),
        metrics: Sequence[Any] = (),
        flow: str | None = None,
        status: Any = None,
        stack: str | None = None,
        tags: Sequence[str] | None = None,
        max_groups: int = 1000,
    ) -> ExecutionStatistics:
        """Executions grouped by ``group_by`` with aggregated ``metrics`` (see kitaru.analysis).

        ``group_by``: ``status|flow|stack|tag|time:<hour|day|week|month>|metadata:<key>``;
        ``metrics``: ``<name>:<duration|step_count|cached_step_count|output_artifact_count>:<agg>``
        or ``<name>:metadata:<key>:<agg>`` (agg ``avg|sum|min|max``). ``tags``: executions
        carrying all of them. Groups come largest first, at most ``max_groups`` (1..10000).
        """
        from kitaru.analysis._statistics import compute_statistics

        return compute_statistics(
            self._backend.store,
            group_by=group_by,
            metrics=metrics,
            flow=flow,
            status=_statuses(status),
            stack=stack,
            tags=tags,
            max_groups=max_groups,
        )

    def cohort(
        self,
        *,
        flow: str,
        at: str,
        deployment: str | None = None,
        deployment_version: str | None = None,
        order_by: str = "-started_at",
        limit: int = 50,
        originals_only: bool = True,
        status: str | Sequence[str] | None = "completed",
        since: Any = None,
        until: Any = None,
    ) -> CohortQuery:
        """Executions of ``flow`` replayable from ``at``; ``.resolve()`` reads them."""
        from kitaru.analysis import cohort

        return cohort(
            flow=flow,
            at=at,
            deployment=deployment,
            deployment_version=deployment_version,
            order_by=order_by,
            limit=limit,
            originals_only=originals_only,
            status=status,
            since=since,
            until=until,
            client=self._client,
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
        if checkpoint is not None and not storable_text(checkpoint):
            return []  # no checkpoint can have that name (undecodable text)
        records = self._backend.store.logs(
            exec_id, checkpoint=checkpoint, after_id=after_id, limit=limit, source=source
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
        exec_id = self.resolve_id(exec_id)
        control.cancel(self._backend, exec_id)
        return self.get(exec_id)

    def delete(self, exec_id: str, *, recursive: bool = False) -> None:
        """Remove a finished execution and the artifacts nothing else uses.

        An execution with child flows needs ``recursive=True`` (its children go too).
        """
        exec_id = self.resolve_id(exec_id)
        control.delete(self._backend, exec_id, recursive=recursive)


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
        if not all(storable_text(v) for v in (name, kind, producing_call) if v is not None):
            return []  # no stored artifact can match undecodable text
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
            raise artifact_not_found(
                artifact_id,
                "no artifact with this id. List an execution's artifacts with "
                "`kitaru artifacts list EXEC_ID`.",
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


def _connected() -> bool:
    """Whether this process talks to a Kitaru server (see kitaru.client._remote_config)."""
    from kitaru.client._remote_config import current_connection

    return current_connection() is not None


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
        if given == ["server_url", "auth_token"] or (not given and _connected()):
            # Connected to a Kitaru server: the same API over HTTP (kitaru.client._remote*).
            from kitaru.client._remote_client import attach_remote

            attach_remote(self, server_url, auth_token)
            return
        if given:
            raise KitaruFeatureNotAvailableError(
                f"KitaruClient({', '.join(f'{n}=...' for n in given)}) is not supported: "
                "Kitaru reads its store directly. Point KITARU_STORE_URL (or "
                "kitaru.configure(store_url=...)) at a shared PostgreSQL database instead."
            )
        url, source = resolve_store_location()
        if source is not None:  # a store the user named must exist: never read a new empty one
            from kitaru._store.engine import require_existing_store

            require_existing_store(url, source)
        self._backend = get_backend()
        self.executions = ExecutionsAPI(self)
        self.artifacts = ArtifactsAPI(self)
        #: The Kitaru server this client talks to; None when it reads the store itself.
        self.connection: Connection | None = None

    @property
    def schedules(self) -> SchedulesAPI:
        """Cron schedules (``kitaru schedule``); ``kitaru worker`` fires them."""
        if self.connection is not None:
            from kitaru.client._remote import session_for
            from kitaru.client._remote_schedules import RemoteSchedulesAPI

            # Same methods and models, through the server's /schedules routes.
            return RemoteSchedulesAPI(session_for(self.connection))  # type: ignore[return-value]
        from kitaru.schedules import SchedulesAPI

        return SchedulesAPI(self._backend)

"""What the client returns: plain, read-only views of stored executions.

Field names and types follow Kitaru 0.21's models (``KITARU_CONTRACT.md`` §4), so
code written against 0.21 reads them unchanged. Fields of our own come after the
0.21 ones, keyword-only; where 0.21 uses a name for something else, 0.21's
meaning wins and ours moved to another name (a call's finer status is
``call_status``, an artifact's role in the execution is ``role``).
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from kitaru._runtime.execution import SAVE_CALL_TYPE
from kitaru._runtime.leases import runner_gone
from kitaru._runtime.sleeps import waiting_reason
from kitaru._runtime.usage import LLM_USAGE_KEY, summarize_usage, usage_records
from kitaru._store import (
    ArtifactRecord,
    AttemptRecord,
    CallRecord,
    CallStatus,
    ExecutionRecord,
    ExecutionStatus,
    LogRecord,
    SuspensionRecord,
    SuspensionStatus,
    WaitRecord,
    WaitStatus,
)
from kitaru._store.call_inputs import INPUT_KIND, input_records
from kitaru.client._deferred import Deferred
from kitaru.client._time_models import PendingSleep
from kitaru.config import ImageSettings, KitaruConfig
from kitaru.errors import FailureOrigin

if TYPE_CHECKING:
    from kitaru.client._client import KitaruClient
    from kitaru.replay import ReplaySubmission

#: What an execution's checkpoints are built from: calls, attempts, saved artifacts.
_Parts = tuple[list[CallRecord], list[AttemptRecord], list[ArtifactRecord]]

#: ``ArtifactRef.save_type`` of a value stored with ``kitaru.save``.
SAVE_TYPE_MANUAL = "manual"
#: ``ArtifactRef.save_type`` of a checkpoint's return value (and the flow's result).
SAVE_TYPE_STEP_OUTPUT = "step_output"
#: ``ArtifactRef.save_type`` of the flow's stored inputs (given from outside, as
#: ZenML calls such values).
SAVE_TYPE_EXTERNAL = "external"

#: 0.21's artifact ``kind`` of the output of a typed checkpoint.
_OUTPUT_KIND_BY_CALL_TYPE = {"llm_call": "response", "tool_call": "output"}


def _dt(value: float | None) -> datetime | None:
    if value is None:
        return None
    try:
        return datetime.fromtimestamp(value, tz=UTC)
    except (OverflowError, OSError, ValueError):  # e.g. a wake-up time past year 9999
        return datetime.max.replace(tzinfo=UTC) if value > 0 else datetime.min.replace(tzinfo=UTC)


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _require_client(client: KitaruClient | None) -> KitaruClient:
    if client is None:
        from kitaru.client._client import KitaruClient

        return KitaruClient()  # a model built by hand: use the configured store
    return client


def _cancelled_on_request(record: ExecutionRecord) -> bool:
    """Cancelled by a user's request (``cancel``), not stopped by an error or Ctrl-C."""
    stored = record.failure or {}
    return (
        record.status is ExecutionStatus.CANCELLED
        and not stored.get("exception_type")
        and not stored.get("reason")
        and not stored.get("resumable")
    )


def runner_lost(owner: str | None, expires_at: datetime | None) -> bool:
    """The lease's holder no longer renews it: it ran out, or its holder was a process
    of this machine that has exited (told at once, without waiting the lease out)."""
    if expires_at is None:
        return False
    if expires_at < datetime.now(tz=UTC):
        return True
    return owner is not None and runner_gone(owner)


@dataclass(frozen=True)
class FailureInfo:
    """Why an execution, a checkpoint call or one attempt failed."""

    message: str
    exception_type: str | None
    traceback: str | None
    origin: FailureOrigin
    #: The checkpoint that raised (execution failures only), else None.
    checkpoint: str | None = field(default=None, kw_only=True)

    @classmethod
    def from_dict(
        cls, data: dict[str, Any], *, origin: FailureOrigin = FailureOrigin.UNKNOWN
    ) -> FailureInfo:
        try:
            found = FailureOrigin(data.get("origin", origin.value))
        except ValueError:
            found = FailureOrigin.UNKNOWN
        return cls(
            message=str(data.get("message") or ""),
            exception_type=data.get("exception_type"),
            traceback=data.get("traceback"),
            origin=found,
            checkpoint=data.get("checkpoint"),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "message": self.message,
            "exception_type": self.exception_type,
            "traceback": self.traceback,
            "origin": self.origin.value,
            "checkpoint": self.checkpoint,
        }


@dataclass(frozen=True)
class ArtifactRef:
    """A stored value: a checkpoint output, a saved artifact, flow inputs or result."""

    artifact_id: str
    name: str
    #: The ``kitaru.save(type=...)`` of a saved artifact; None for a plain
    #: checkpoint output ("response"/"output" for llm_call/tool_call checkpoints).
    kind: str | None
    #: "manual" (``kitaru.save``), "step_output" (a return value) or "external"
    #: (the flow's inputs).
    save_type: str
    #: Name of the checkpoint that produced or saved it (None for flow-level values).
    producing_call: str | None
    metadata: dict[str, Any]
    direction: Literal["input", "output"] = "output"
    input_type: str | None = None
    # -- ours --
    #: Its role in the execution: output | saved | flow_inputs | flow_result.
    role: str = field(default="output", kw_only=True)
    #: The ``kitaru.save(type=...)`` (saved artifacts only).
    type: str | None = field(default=None, kw_only=True)
    serializer: str = field(default="", kw_only=True)
    size: int = field(default=0, kw_only=True)
    #: The execution that stored it (another one for a cached or replayed output).
    exec_id: str | None = field(default=None, kw_only=True)
    #: Call id of the call that produced or saved it.
    call_id: str | None = field(default=None, kw_only=True)
    created_at: datetime | None = field(default=None, kw_only=True)
    tags: list[str] = field(default_factory=list, kw_only=True)
    uri: str | None = field(default=None, kw_only=True)
    #: SHA-256 of the stored bytes, and the class they hold (None for plain JSON/bytes);
    #: both describe a value without loading (for a pickled one: running) it.
    sha256: str = field(default="", kw_only=True)
    type_path: str | None = field(default=None, kw_only=True)
    #: The client it was read through (for ``refresh()``, ``load()``, …).
    _client: KitaruClient | None = field(default=None, repr=False, compare=False, kw_only=True)

    @classmethod
    def from_record(
        cls,
        record: ArtifactRecord,
        client: KitaruClient | None,
        *,
        producing_call: str | None = None,
        call_type: str | None = None,
    ) -> ArtifactRef:
        """``producing_call``/``call_type``: name and type of the producing checkpoint."""
        direction: Literal["input", "output"] = "output"
        input_type = None
        if record.kind == "saved":
            kind, save_type = record.type, SAVE_TYPE_MANUAL
        elif record.kind == INPUT_KIND:
            # An argument the call was made with (see kitaru._store.call_inputs).
            kind, save_type, direction, input_type = None, SAVE_TYPE_EXTERNAL, "input", "argument"
        elif record.kind == "flow_inputs":
            # The arguments the flow was started with: an input of the execution, as a
            # call's arguments are of the call.
            kind, save_type, direction, input_type = None, SAVE_TYPE_EXTERNAL, "input", "flow"
        else:
            kind, save_type = _OUTPUT_KIND_BY_CALL_TYPE.get(call_type or ""), SAVE_TYPE_STEP_OUTPUT
        return cls(
            artifact_id=record.id,
            name=record.name,
            kind=kind,
            save_type=save_type,
            producing_call=producing_call,
            metadata={},
            direction=direction,
            input_type=input_type,
            role=record.kind,
            type=record.type,
            serializer=record.serializer,
            size=record.size,
            exec_id=record.exec_id,
            call_id=record.call_id,
            created_at=_dt(record.created_at),
            tags=list(record.tags),
            uri=record.uri,
            sha256=record.sha256,
            type_path=record.type_path,
            _client=client,
        )

    def load(self) -> Any:
        """The stored value (``KitaruBackendError`` if it is missing or corrupted)."""
        client = _require_client(self._client)
        return client._backend.load_artifact(self.artifact_id, from_script=True)

    def to_dict(self) -> dict[str, Any]:
        return {
            "artifact_id": self.artifact_id,
            "name": self.name,
            "kind": self.kind,
            "save_type": self.save_type,
            "producing_call": self.producing_call,
            "metadata": self.metadata,
            "direction": self.direction,
            "input_type": self.input_type,
            "role": self.role,
            "type": self.type,
            "serializer": self.serializer,
            "size": self.size,
            "exec_id": self.exec_id,
            "call_id": self.call_id,
            "created_at": _iso(self.created_at),
            "tags": self.tags,
            "uri": self.uri,
            "sha256": self.sha256,
            "type_path": self.type_path,
        }


def _adapter_origin(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """A framework adapter's call (kitaru.adapters) names its adapter and kind in metadata."""
    origin = metadata.get("kitaru_adapter")
    if not isinstance(origin, dict):
        return {}
    return {
        "checkpoint_origin": "adapter",
        "adapter": origin.get("adapter"),
        "adapter_checkpoint_kind": origin.get("kind"),
    }


def public_status(status: CallStatus | str) -> ExecutionStatus:
    """A call's or attempt's status as 0.21 reports it: cached/reused are completed."""
    value = str(status)
    if value in (CallStatus.CACHED.value, CallStatus.REUSED.value):
        return ExecutionStatus.COMPLETED
    try:
        return ExecutionStatus(value)
    except ValueError:  # a status this client does not know yet
        return ExecutionStatus.FAILED


@dataclass(frozen=True)
class CheckpointAttempt:
    """One try of a checkpoint call's body (retries make several)."""

    attempt_id: str
    status: ExecutionStatus
    started_at: datetime | None
    ended_at: datetime | None
    metadata: dict[str, Any]
    failure: FailureInfo | None
    # -- ours --
    #: 1-based number of the attempt within its call (counting every run).
    attempt: int = field(default=1, kw_only=True)
    #: Which run of the flow body made it (resumes and retries start new runs).
    run: int = field(default=1, kw_only=True)
    exception_type: str | None = field(default=None, kw_only=True)
    message: str | None = field(default=None, kw_only=True)
    traceback: str | None = field(default=None, kw_only=True)

    @property
    def llm_usage_records(self) -> builtins.list[dict[str, Any]]:
        """LLM usage recorded by this attempt (its call hands them out by attempt number)."""
        return usage_records(self.metadata)

    @classmethod
    def from_record(cls, record: AttemptRecord) -> CheckpointAttempt:
        failure = None
        if record.status == CallStatus.FAILED.value:
            failure = FailureInfo(
                message=record.message or "",
                exception_type=record.exception_type,
                traceback=record.traceback,
                origin=FailureOrigin.USER_CODE,
            )
        return cls(
            attempt_id=f"{record.exec_id}:{record.call_id}#{record.attempt}",
            status=public_status(record.status),
            started_at=_dt(record.started_at),
            ended_at=_dt(record.ended_at),
            metadata={},
            failure=failure,
            attempt=record.attempt,
            run=record.run,
            exception_type=record.exception_type,
            message=record.message,
            traceback=record.traceback,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "attempt_id": self.attempt_id,
            "status": self.status.value,
            "started_at": _iso(self.started_at),
            "ended_at": _iso(self.ended_at),
            "metadata": self.metadata,
            "failure": None if self.failure is None else self.failure.to_dict(),
            "attempt": self.attempt,
            "run": self.run,
            "exception_type": self.exception_type,
            "message": self.message,
            "traceback": self.traceback,
        }


@dataclass(frozen=True)
class CheckpointCall:
    """One checkpoint call of an execution, with its attempts and artifacts."""

    call_id: str
    name: str
    #: completed (also for cached and replay-reused calls), failed or running.
    status: ExecutionStatus
    started_at: datetime | None
    ended_at: datetime | None
    metadata: dict[str, Any]
    #: For a cached or replay-reused call: the call whose output it took.
    original_call_id: str | None
    parent_call_ids: list[str]
    #: The last attempt's failure.
    failure: FailureInfo | None
    attempts: list[CheckpointAttempt]
    artifacts: list[ArtifactRef]
    #: The checkpoint's ``type=`` (e.g. "llm_call", "tool_call").
    checkpoint_type: str | None
    checkpoint_origin: Literal["user", "adapter"] = "user"
    adapter: str | None = None
    adapter_checkpoint_kind: str | None = None
    replay_input_slots: list[str] = field(default_factory=list)
    replay_output_slots: list[str] = field(default_factory=list)
    # -- ours --
    #: The finer status: running | completed | failed | cached | reused.
    call_status: CallStatus = field(default=CallStatus.COMPLETED, kw_only=True)
    #: inline | isolated.
    runtime: str = field(default="inline", kw_only=True)
    #: For a cached or replay-reused call: the execution its output came from.
    source_exec_id: str | None = field(default=None, kw_only=True)
    #: The recorded error of a failed call (exception_type, message, traceback).
    error: dict[str, Any] | None = field(default=None, kw_only=True)
    #: The arguments the call was made with, one ``ArtifactRef`` each (direction
    #: "input", named by parameter). Kept apart from ``artifacts`` (what the call
    #: produced) so 0.21 code reading ``artifacts`` sees what it always did.
    inputs: list[ArtifactRef] = field(default_factory=list, kw_only=True)

    @property
    def duration(self) -> float | None:
        if self.started_at is None or self.ended_at is None:
            return None
        return (self.ended_at - self.started_at).total_seconds()

    @property
    def output(self) -> ArtifactRef | None:
        """The call's return value (not its saved artifacts)."""
        return next((a for a in self.artifacts if a.role == "output"), None)

    @property
    def llm_usage_records(self) -> builtins.list[dict[str, Any]]:
        """LLM usage recorded by this call: one record per model request (all attempts)."""
        return usage_records(self.metadata)

    @property
    def llm_usage_incurred(self) -> bool:
        """False for a cached or replay-reused call: its requests were paid for elsewhere."""
        return self.call_status not in (CallStatus.CACHED, CallStatus.REUSED)

    @property
    def aggregated_llm_usage_summary(self) -> dict[str, Any] | None:
        return _usage_summary(self.llm_usage_records)

    @classmethod
    def from_record(
        cls,
        call: CallRecord,
        attempts: builtins.list[CheckpointAttempt],
        saved: Iterable[ArtifactRecord],
        client: KitaruClient | None,
    ) -> CheckpointCall:
        artifacts = []
        if call.artifact is not None:
            artifacts.append(
                ArtifactRef.from_record(
                    call.artifact, client, producing_call=call.name, call_type=call.type
                )
            )
        artifacts.extend(
            ArtifactRef.from_record(record, client, producing_call=call.name) for record in saved
        )

        original_call_id = None
        if call.status is CallStatus.CACHED:
            original_call_id = call.artifact.call_id if call.artifact else None
        elif call.status is CallStatus.REUSED:
            original_call_id = call.call_id  # a replay keeps its source's call ids
        failure = None
        if call.error is not None:
            failure = FailureInfo.from_dict(call.error, origin=FailureOrigin.USER_CODE)
        attempts = _with_usage(attempts, usage_records(call.metadata))
        return cls(
            call_id=call.call_id,
            name=call.name,
            status=public_status(call.status),
            started_at=_dt(call.started_at),
            ended_at=_dt(call.ended_at),
            metadata=dict(call.metadata),
            original_call_id=original_call_id,
            parent_call_ids=[],
            failure=failure,
            attempts=attempts,
            artifacts=artifacts,
            checkpoint_type=call.type,
            inputs=[ArtifactRef.from_record(record, client) for record in input_records(call)],
            **_adapter_origin(call.metadata),
            call_status=call.status,
            runtime=call.runtime,
            source_exec_id=call.source_exec_id,
            error=call.error,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "call_id": self.call_id,
            "name": self.name,
            "status": self.status.value,
            "started_at": _iso(self.started_at),
            "ended_at": _iso(self.ended_at),
            "metadata": self.metadata,
            "original_call_id": self.original_call_id,
            "parent_call_ids": self.parent_call_ids,
            "failure": None if self.failure is None else self.failure.to_dict(),
            "attempts": [a.to_dict() for a in self.attempts],
            "artifacts": [a.to_dict() for a in self.artifacts],
            "checkpoint_type": self.checkpoint_type,
            "checkpoint_origin": self.checkpoint_origin,
            "adapter": self.adapter,
            "adapter_checkpoint_kind": self.adapter_checkpoint_kind,
            "replay_input_slots": self.replay_input_slots,
            "replay_output_slots": self.replay_output_slots,
            "call_status": self.call_status.value,
            "runtime": self.runtime,
            "duration": self.duration,
            "source_exec_id": self.source_exec_id,
            "error": self.error,
            "inputs": [a.to_dict() for a in self.inputs],
        }


@dataclass(frozen=True)
class LogEntry:
    """One captured line: printed output or a logging record."""

    message: str
    level: str | None
    #: When it was written, ISO 8601 (UTC).
    timestamp: str | None
    #: "step" for a line of a checkpoint, "runner" for one of the flow body.
    source: str | None
    checkpoint_name: str | None
    module: str | None
    filename: str | None
    lineno: int | None
    # -- ours --
    #: Position in the execution's log (pass as ``after_id`` to read newer lines).
    id: int = field(default=0, kw_only=True)
    exec_id: str = field(default="", kw_only=True)
    call_id: str | None = field(default=None, kw_only=True)
    #: stdout | stderr | logging.
    stream: str = field(default="stdout", kw_only=True)
    #: The logger's name (logging records).
    logger: str | None = field(default=None, kw_only=True)

    @property
    def logged_at(self) -> datetime | None:
        """``timestamp`` as a timezone-aware datetime."""
        return None if self.timestamp is None else datetime.fromisoformat(self.timestamp)

    @classmethod
    def from_record(cls, record: LogRecord) -> LogEntry:
        return cls(
            message=record.message,
            level=record.level,
            timestamp=_iso(_dt(record.ts)),
            source=log_source(record.call_id),
            checkpoint_name=record.checkpoint,
            module=None,
            filename=None,
            lineno=None,
            id=record.id or 0,
            exec_id=record.exec_id,
            call_id=record.call_id,
            stream=record.stream,
            logger=record.logger,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "message": self.message,
            "level": self.level,
            "timestamp": self.timestamp,
            "source": self.source,
            "checkpoint_name": self.checkpoint_name,
            "module": self.module,
            "filename": self.filename,
            "lineno": self.lineno,
            "id": self.id,
            "exec_id": self.exec_id,
            "call_id": self.call_id,
            "stream": self.stream,
            "logger": self.logger,
        }


def log_source(call_id: str | None) -> str:
    """0.21's log source of a line: "step" inside a checkpoint, else "runner"."""
    return "runner" if call_id is None else "step"


@dataclass(frozen=True)
class PendingWait:
    """A ``kitaru.wait()`` an execution is paused at."""

    wait_id: str
    #: The ``wait(name=...)``, else its generated id (wait, wait:2, …).
    name: str
    question: str | None
    #: JSON schema of the value it expects (None: any JSON value).
    schema: dict[str, Any] | None
    metadata: dict[str, Any]
    entered_waiting_at: datetime | None
    # -- ours --
    exec_id: str = field(default="", kw_only=True)
    #: The ``wait(timeout=...)``: seconds the runner holds on before letting go.
    timeout: float | None = field(default=None, kw_only=True)

    @classmethod
    def from_record(cls, record: WaitRecord) -> PendingWait:
        return cls(
            wait_id=record.wait_id,
            name=record.name or record.wait_id,
            question=record.question,
            schema=record.json_schema,
            metadata=dict(record.metadata),
            entered_waiting_at=_dt(record.created_at),
            exec_id=record.exec_id,
            timeout=record.timeout,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "wait_id": self.wait_id,
            "name": self.name,
            "question": self.question,
            "schema": self.schema,
            "metadata": self.metadata,
            "entered_waiting_at": _iso(self.entered_waiting_at),
            "exec_id": self.exec_id,
            "timeout": self.timeout,
        }


@dataclass(frozen=True)
class ResolvedExecutionConfig:
    """The settings an execution runs with (frozen at submission)."""

    stack: str | None
    image: ImageSettings | None
    cache: bool
    retries: int
    llm_estimated_costs: str | None = None


@dataclass(frozen=True)
class ResolvedConnectionConfig:
    """Where the execution's store was reached (Kitaru talks to its store directly)."""

    server_url: str | None = None
    auth_token: str | None = None
    project: str | None = None


@dataclass(frozen=True)
class FrozenExecutionSpec:
    """The settings snapshot stored with an execution (used again by resume and replay)."""

    resolved_execution: ResolvedExecutionConfig
    #: What the ``@flow(...)`` decorator set (None where it set nothing).
    flow_defaults: KitaruConfig
    connection: ResolvedConnectionConfig
    model_registry: dict[str, Any] | None = None
    version: int = 1

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> FrozenExecutionSpec:
        """Built from an execution record's frozen settings (see ``ResolvedSettings``)."""
        sources = config.get("sources") or {}
        image = _image(config.get("image"))
        retries = config.get("retries")
        cache = config.get("cache")
        frozen_llm = config.get("llm")
        llm: dict[str, Any] = frozen_llm if isinstance(frozen_llm, dict) else {}
        costs = llm.get("llm_estimated_costs")
        resolved = ResolvedExecutionConfig(
            stack=config.get("stack"),
            image=image,
            cache=cache if isinstance(cache, bool) else True,
            retries=retries if isinstance(retries, int) else 0,
            llm_estimated_costs=costs if isinstance(costs, str) else None,
        )

        def from_decorator(key: str, value: Any) -> Any:
            return value if sources.get(key) == "decorator" else None

        defaults = KitaruConfig(
            stack=from_decorator("stack", resolved.stack),
            image=from_decorator("image", image),
            cache=from_decorator("cache", resolved.cache),
            retries=from_decorator("retries", resolved.retries),
        )
        registry = llm.get("model_registry")
        return cls(
            resolved_execution=resolved,
            flow_defaults=defaults,
            connection=ResolvedConnectionConfig(),
            # Aliases, default alias and KITARU_DEFAULT_MODEL as frozen at submission.
            model_registry=(
                {**registry, "default_model": llm.get("default_model")}
                if isinstance(registry, dict)
                else ({"default_model": llm["default_model"]} if llm.get("default_model") else None)
            ),
        )

    def to_dict(self) -> dict[str, Any]:
        resolved, defaults = self.resolved_execution, self.flow_defaults
        return {
            "version": self.version,
            "resolved_execution": {
                "stack": resolved.stack,
                "image": None if resolved.image is None else resolved.image.to_dict(),
                "cache": resolved.cache,
                "retries": resolved.retries,
                "llm_estimated_costs": resolved.llm_estimated_costs,
            },
            "flow_defaults": {
                "stack": defaults.stack,
                "image": None if defaults.image is None else defaults.image.to_dict(),
                "cache": defaults.cache,
                "retries": defaults.retries,
                "llm_estimated_costs": defaults.llm_estimated_costs,
                "project": defaults.project,
            },
            "connection": {
                "server_url": self.connection.server_url,
                "project": self.connection.project,
            },
            "model_registry": self.model_registry,
        }


def _image(value: Any) -> ImageSettings | None:
    if not isinstance(value, dict) or not value:
        return None
    try:
        return ImageSettings.coerce(value)
    except Exception:  # a record written by another version: show none rather than fail
        return None


def _usage_summary(records: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """Token and cost totals of LLM usage records; None when there are none."""
    return summarize_usage(records)


def _with_usage(
    attempts: builtins.list[CheckpointAttempt], records: builtins.list[dict[str, Any]]
) -> builtins.list[CheckpointAttempt]:
    """Each attempt with the usage records it made (records carry their attempt number)."""
    if not records:
        return attempts
    out = []
    for attempt in attempts:
        mine = [r for r in records if r.get("attempt") == attempt.attempt]
        if mine:
            attempt = replace(attempt, metadata={**attempt.metadata, LLM_USAGE_KEY: mine})
        out.append(attempt)
    return out


#: Keys of an execution's summary (``executions list`` JSON items), in 0.21's order.
SUMMARY_KEYS = (
    "exec_id",
    "flow_id",
    "flow_name",
    "status",
    "started_at",
    "ended_at",
    "stack_name",
    "status_reason",
    "pending_wait",
    "failure",
    "metadata",
    "checkpoint_count",
    "artifact_count",
    "llm_usage_summary",
)


@dataclass(frozen=True)
class Execution:
    """A stored execution with its checkpoint calls and artifacts.

    A snapshot: the methods read the store again and return new objects; this
    one never changes.
    """

    exec_id: str
    flow_id: str | None
    flow_name: str | None
    status: ExecutionStatus
    started_at: datetime | None
    ended_at: datetime | None
    stack_name: str | None
    metadata: dict[str, Any]
    #: Why it failed or was cancelled (the failure's message), else None.
    status_reason: str | None
    failure: FailureInfo | None
    #: The wait it is paused at (the first, if several), else None.
    pending_wait: PendingWait | None
    frozen_execution_spec: FrozenExecutionSpec | None
    #: For a replay: the execution it replays.
    original_exec_id: str | None
    checkpoints: list[CheckpointCall]
    #: Every artifact of its calls (outputs and saved), once.
    artifacts: list[ArtifactRef]
    project_id: str | None = None
    project_name: str | None = None
    # -- ours --
    created_at: datetime | None = field(default=None, kw_only=True)
    #: The frozen settings as stored, with where each came from (``sources``).
    config: dict[str, Any] = field(default_factory=dict, kw_only=True)
    #: How many times the flow body has been started (retries, resumes).
    run_count: int = field(default=0, kw_only=True)
    lease_owner: str | None = field(default=None, kw_only=True)
    lease_expires_at: datetime | None = field(default=None, kw_only=True)
    #: Every wait it is paused at (``wait()`` in concurrent branches may open several).
    pending_waits: list[PendingWait] = field(default_factory=list, kw_only=True)
    #: The ``kitaru.sleep()`` (or child wait) it is paused at, with its wake-up time.
    pending_sleep: PendingSleep | None = field(default=None, kw_only=True)
    #: For a child flow: the execution whose body started it.
    parent_exec_id: str | None = field(default=None, kw_only=True)
    #: Child executions its body started, oldest first (read by ``executions.get``).
    children: list[str] = field(default_factory=list, kw_only=True)
    #: The ``execution_id=`` it was started with, when that was not a UUID.
    idempotency_key: str | None = field(default=None, kw_only=True)
    #: The schedule and slot that started it.
    schedule_name: str | None = field(default=None, kw_only=True)
    schedule_slot: datetime | None = field(default=None, kw_only=True)
    #: The client it was read through (for ``refresh()``, ``load()``, …).
    _client: KitaruClient | None = field(default=None, repr=False, compare=False, kw_only=True)

    @property
    def stack(self) -> str | None:
        """Same as ``stack_name``."""
        return self.stack_name

    @property
    def is_orphaned(self) -> bool:
        """Running, or waiting with its runner holding the wait, but that runner stopped
        renewing its lease (crashed or killed) or was a process of this machine that has
        exited (known at once). (A runner that lets a wait go holds no lease: a released
        wait is not orphaned; its answer resumes it.)"""
        if self.status is ExecutionStatus.RUNNING:
            return runner_lost(self.lease_owner, self.lease_expires_at)
        return (
            self.status is ExecutionStatus.WAITING
            and self.lease_owner is not None
            and runner_lost(self.lease_owner, self.lease_expires_at)
        )

    @property
    def duration(self) -> float | None:
        if self.started_at is None or self.ended_at is None:
            return None
        return (self.ended_at - self.started_at).total_seconds()

    @property
    def llm_usage_records(self) -> builtins.list[dict[str, Any]]:
        """LLM usage its calls incurred (cached and replay-reused calls did not)."""
        return [
            r
            for call in self.checkpoints
            if call.llm_usage_incurred
            for r in call.llm_usage_records
        ]

    @property
    def llm_usage_summary(self) -> dict[str, Any] | None:
        return _usage_summary(self.llm_usage_records)

    # -- re-reading and controlling (each returns a new snapshot) ----------------------

    def _api(self) -> KitaruClient:
        return _require_client(self._client)

    def refresh(self) -> Execution:
        """This execution as stored now."""
        return self._api().executions.get(self.exec_id)

    def retry(self) -> Execution:
        """Run it again (same id) after a failure; completed checkpoints are reused."""
        return self._api().executions.retry(self.exec_id)

    def resume(self) -> Execution:
        """Continue it after its runner died."""
        return self._api().executions.resume(self.exec_id)

    def cancel(self) -> Execution:
        return self._api().executions.cancel(self.exec_id)

    def replay(
        self,
        *,
        at: str,
        flow_overrides: dict[str, Any] | None = None,
        checkpoint_overrides: dict[str, Any] | None = None,
        invocation_overrides: dict[str, Any] | None = None,
        skip: Sequence[str] | None = None,
        tag: str | None = None,
        wait: bool | None = None,
        on_error: Literal["collect", "fail"] | None = None,
    ) -> ReplaySubmission:
        """A new execution from ``at`` on (see ``KitaruClient().executions.replay``)."""
        given = {
            "flow_overrides": flow_overrides,
            "checkpoint_overrides": checkpoint_overrides,
            "invocation_overrides": invocation_overrides,
            "skip": skip,
            "tag": tag,
            "wait": wait,
            "on_error": on_error,
        }
        kwargs: dict[str, Any] = {key: value for key, value in given.items() if value is not None}
        return self._api().executions.replay(self.exec_id, at=at, **kwargs)

    def list_checkpoints(self) -> builtins.list[CheckpointCall]:
        return list(self.checkpoints)

    def list_artifacts(self) -> builtins.list[ArtifactRef]:
        return list(self.artifacts)

    # -- building -------------------------------------------------------------------------

    @classmethod
    def from_records(
        cls,
        record: ExecutionRecord,
        calls: builtins.list[CallRecord],
        attempts: builtins.list[AttemptRecord],
        client: KitaruClient | None,
        waits: builtins.list[WaitRecord] | None = None,
        saved: builtins.list[ArtifactRecord] | None = None,
        *,
        parts: Callable[[], _Parts] | None = None,
        suspensions: builtins.list[SuspensionRecord] | None = None,
        children: builtins.list[str] | None = None,
    ) -> Execution:
        """``saved``: the execution's ``kitaru.save`` artifacts (listed on their calls).

        With ``parts`` (a function returning calls, attempts and saved artifacts)
        the checkpoints and artifacts are read only when first used (``Deferred``).
        """
        if parts is None:
            checkpoints, artifacts = _checkpoints_and_artifacts(calls, attempts, saved, client)
        else:
            built: builtins.list[Any] = []

            def read() -> Any:
                if not built:
                    built.extend(_checkpoints_and_artifacts(*parts(), client))
                return built

            checkpoints = Deferred(lambda: read()[0])
            artifacts = Deferred(lambda: read()[1])
        failure = FailureInfo.from_dict(record.failure) if record.failure else None
        pending = [
            PendingWait.from_record(w)
            for w in waits or ()
            if w.status is WaitStatus.PENDING and record.status is ExecutionStatus.WAITING
        ]
        paused_at = [
            s
            for s in suspensions or ()
            if s.status is SuspensionStatus.PENDING and record.status is ExecutionStatus.WAITING
        ]
        status_reason = (
            failure.message
            if failure is not None
            and record.status in (ExecutionStatus.FAILED, ExecutionStatus.CANCELLED)
            else waiting_reason(record.status, paused_at)
        )
        if _cancelled_on_request(record):
            failure = None  # nothing failed: status_reason says why it stopped
        return cls(
            exec_id=record.id,
            flow_id=_flow_id(record.flow_ref),
            flow_name=record.flow_name,
            status=record.status,
            started_at=_dt(record.started_at),
            ended_at=_dt(record.ended_at),
            stack_name=record.stack,
            metadata=dict(record.metadata),
            status_reason=status_reason,
            failure=failure,
            pending_wait=pending[0] if pending else None,
            frozen_execution_spec=FrozenExecutionSpec.from_config(dict(record.config)),
            original_exec_id=record.original_exec_id,
            checkpoints=checkpoints,
            artifacts=artifacts,
            created_at=_dt(record.created_at),
            config=dict(record.config),
            run_count=record.run_count,
            lease_owner=record.lease_owner,
            lease_expires_at=_dt(record.lease_expires_at),
            pending_waits=pending,
            pending_sleep=PendingSleep.from_record(paused_at[-1]) if paused_at else None,
            parent_exec_id=record.parent_exec_id,
            children=list(children or ()),
            idempotency_key=record.idempotency_key,
            schedule_name=record.schedule_name,
            schedule_slot=_dt(record.schedule_slot),
            _client=client,
        )

    def summary_dict(self) -> dict[str, Any]:
        """The ``executions list`` JSON item: 0.21's summary keys, then ours."""
        return {
            "exec_id": self.exec_id,
            "flow_id": self.flow_id,
            "flow_name": self.flow_name,
            "status": self.status.value,
            "started_at": _iso(self.started_at),
            "ended_at": _iso(self.ended_at),
            "stack_name": self.stack_name,
            "status_reason": self.status_reason,
            "pending_wait": None if self.pending_wait is None else self.pending_wait.to_dict(),
            "failure": None if self.failure is None else self.failure.to_dict(),
            "metadata": self.metadata,
            "checkpoint_count": len(self.checkpoints),
            "artifact_count": len(self.artifacts),
            "llm_usage_summary": self.llm_usage_summary,
            "project_id": self.project_id,
            "project_name": self.project_name,
            "original_exec_id": self.original_exec_id,
            "created_at": _iso(self.created_at),
            "duration": self.duration,
            "run_count": self.run_count,
            "is_orphaned": self.is_orphaned,
            "pending_sleep": None if self.pending_sleep is None else self.pending_sleep.to_dict(),
            "parent_exec_id": self.parent_exec_id,
            "idempotency_key": self.idempotency_key,
            "schedule_name": self.schedule_name,
            "schedule_slot": _iso(self.schedule_slot),
        }

    def to_dict(self) -> dict[str, Any]:
        """The ``executions get`` JSON item: summary keys, the details, then ours."""
        return {
            **self.summary_dict(),
            "frozen_execution_spec": None
            if self.frozen_execution_spec is None
            else self.frozen_execution_spec.to_dict(),
            "llm_usage_records": self.llm_usage_records,
            "checkpoints": [c.to_dict() for c in self.checkpoints],
            "artifacts": [a.to_dict() for a in self.artifacts],
            "config": self.config,
            "pending_waits": [w.to_dict() for w in self.pending_waits],
            "children": list(self.children),
        }


def _flow_id(flow_ref: dict[str, Any]) -> str | None:
    """Where the flow's code lives (``module:qualname``): the same for all its executions."""
    module, qualname = flow_ref.get("module"), flow_ref.get("qualname")
    return f"{module}:{qualname}" if module and qualname else None


def _checkpoints_and_artifacts(
    calls: builtins.list[CallRecord],
    attempts: builtins.list[AttemptRecord],
    saved: builtins.list[ArtifactRecord] | None,
    client: KitaruClient | None,
) -> tuple[builtins.list[CheckpointCall], builtins.list[ArtifactRef]]:
    """An execution's checkpoint models, and every artifact of its calls (once)."""
    by_call: dict[str, builtins.list[CheckpointAttempt]] = {}
    for attempt in attempts:
        by_call.setdefault(attempt.call_id, []).append(CheckpointAttempt.from_record(attempt))
    saved_by_call: dict[str | None, builtins.list[ArtifactRecord]] = {}
    for artifact in saved or ():
        saved_by_call.setdefault(artifact.call_id, []).append(artifact)
    checkpoints: builtins.list[CheckpointCall] = []
    artifacts: dict[str, ArtifactRef] = {}
    for call in calls:
        if call.type == SAVE_CALL_TYPE:
            # A flow-scope save: its artifact belongs to the execution, no checkpoint.
            for artifact in saved_by_call.get(call.call_id, ()):
                artifacts.setdefault(artifact.id, ArtifactRef.from_record(artifact, client))
            continue
        checkpoint = CheckpointCall.from_record(
            call, by_call.get(call.call_id, []), saved_by_call.get(call.call_id, ()), client
        )
        checkpoints.append(checkpoint)
        for ref in checkpoint.artifacts:
            artifacts.setdefault(ref.artifact_id, ref)
    return checkpoints, list(artifacts.values())

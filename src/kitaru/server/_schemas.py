"""Request and response bodies of the REST API (what ``/api/v1/openapi.json`` describes).

Responses carry the same keys as the client models' ``to_dict()`` (the CLI's
``-o json`` items), so a remote client rebuilds the same models from them.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Open(BaseModel):
    """A response model that keeps keys a newer server adds."""

    model_config = ConfigDict(extra="allow")


class ErrorDetail(BaseModel):
    path: list[str | int] = Field(description="Where in the value: keys and list indexes.")
    message: str
    keyword: str | None = Field(None, description="The JSON-schema keyword that failed.")


class ErrorBody(BaseModel):
    type: str = Field(description="The Kitaru error class, e.g. KitaruStateError.")
    message: str
    details: list[ErrorDetail] | None = Field(
        None, description="One entry per problem (invalid wait input only)."
    )


class ErrorResponse(BaseModel):
    error: ErrorBody


class Failure(_Open):
    message: str
    exception_type: str | None = None
    traceback: str | None = None
    origin: str
    checkpoint: str | None = None


class Wait(_Open):
    wait_id: str
    name: str
    question: str | None = None
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    metadata: dict[str, Any] = {}
    entered_waiting_at: str | None = None
    exec_id: str = ""
    timeout: float | None = None


class Artifact(_Open):
    artifact_id: str
    name: str
    kind: str | None = None
    save_type: str
    producing_call: str | None = None
    metadata: dict[str, Any] = {}
    direction: str = "output"
    input_type: str | None = None
    role: str = "output"
    type: str | None = None
    serializer: str = ""
    size: int = 0
    exec_id: str | None = None
    call_id: str | None = None
    created_at: str | None = None
    tags: list[str] = []
    uri: str | None = None
    sha256: str | None = None
    type_path: str | None = None


class Attempt(_Open):
    attempt_id: str
    status: str
    started_at: str | None = None
    ended_at: str | None = None
    metadata: dict[str, Any] = {}
    failure: Failure | None = None
    attempt: int = 1
    run: int = 1
    exception_type: str | None = None
    message: str | None = None
    traceback: str | None = None


class Checkpoint(_Open):
    call_id: str
    name: str
    status: str
    started_at: str | None = None
    ended_at: str | None = None
    metadata: dict[str, Any] = {}
    original_call_id: str | None = None
    parent_call_ids: list[str] = []
    failure: Failure | None = None
    attempts: list[Attempt] = []
    artifacts: list[Artifact] = []
    checkpoint_type: str | None = None
    checkpoint_origin: str = "user"
    call_status: str = "completed"
    runtime: str = "inline"
    duration: float | None = None
    source_exec_id: str | None = None
    error: dict[str, Any] | None = None
    #: The arguments the call was made with (direction "input", one per parameter).
    inputs: list[Artifact] = []


class ExecutionSummary(_Open):
    exec_id: str
    flow_id: str | None = None
    flow_name: str | None = None
    status: str
    started_at: str | None = None
    ended_at: str | None = None
    stack_name: str | None = None
    status_reason: str | None = None
    pending_wait: Wait | None = None
    failure: Failure | None = None
    metadata: dict[str, Any] = {}
    checkpoint_count: int = 0
    artifact_count: int = 0
    original_exec_id: str | None = None
    created_at: str | None = None
    duration: float | None = None
    run_count: int = 0
    is_orphaned: bool = False
    # Durable time: the sleep (or child wait) it is paused at, its parent, its start.
    pending_sleep: dict[str, Any] | None = None
    parent_exec_id: str | None = None
    idempotency_key: str | None = None
    schedule_name: str | None = None
    schedule_slot: str | None = None


class ExecutionDetail(ExecutionSummary):
    frozen_execution_spec: dict[str, Any] | None = None
    llm_usage_records: list[dict[str, Any]] = []
    checkpoints: list[Checkpoint] = []
    artifacts: list[Artifact] = []
    config: dict[str, Any] = {}
    pending_waits: list[Wait] = []
    children: list[str] = []


class ExecutionPage(BaseModel):
    items: list[ExecutionSummary]
    count: int
    next_cursor: str | None = Field(
        default=None, description="Pass as cursor= to get the next page; null on the last."
    )


class HandleView(BaseModel):
    exec_id: str
    flow_name: str
    status: str
    result_artifact_id: str | None = None
    failure: dict[str, Any] | None = None


class LogLine(_Open):
    id: int
    message: str
    level: str | None = None
    timestamp: str | None = None
    source: str | None = None
    checkpoint_name: str | None = None
    exec_id: str = ""
    call_id: str | None = None
    stream: str = "stdout"
    logger: str | None = None


class LogPage(BaseModel):
    items: list[LogLine]
    count: int
    next_after: int | None = Field(
        default=None, description="The id of the last line: pass as after= to follow."
    )


class WaitList(BaseModel):
    items: list[Wait]
    count: int


class ArtifactList(BaseModel):
    items: list[Artifact]
    count: int
    next_offset: int | None = Field(
        default=None, description="Pass as offset= to get the next page; null on the last."
    )


class ArtifactPreview(BaseModel):
    artifact_id: str
    serializer: str
    previewable: bool
    value: Any = None
    reason: str | None = Field(default=None, description="Why there is no preview.")


class Stack(_Open):
    id: str
    name: str
    kind: str
    is_active: bool = False


class StackList(BaseModel):
    items: list[Stack]
    count: int


class Health(BaseModel):
    status: Literal["ok"] = "ok"


class Version(BaseModel):
    version: str
    api: str = "v1"
    #: The most rows one page returns (``kitaru server start --max-page-size``).
    max_page_size: int | None = None
    #: The store contract's form over HTTP (``kitaru._store._wire.PROTOCOL``): runners
    #: refuse a server that speaks another.
    protocol: int = 1
    #: The largest request body it takes (``--max-body-bytes``): runners send their log
    #: lines in parts under it.
    max_body_bytes: int | None = None
    #: The largest body of an answer to a wait (``POST /executions/{id}/input``): room for
    #: the largest answer ``KITARU_MAX_WAIT_INPUT_BYTES`` allows there. Clients refuse a
    #: larger answer before sending it.
    max_input_body_bytes: int | None = None


class WaitInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    wait: str | None = Field(
        default=None, description="The wait's id or name; the only one if omitted."
    )
    value: Any = Field(
        default=None, description="The answer, checked against the wait's JSON schema."
    )


class WaitAbort(BaseModel):
    model_config = ConfigDict(extra="forbid")

    wait: str | None = None


class ReplayRequest(BaseModel):
    """The arguments of ``KitaruClient().executions.replay`` (values as JSON)."""

    model_config = ConfigDict(extra="forbid")

    executions: list[str] = Field(
        min_length=1,
        description="Source execution ids (`execution`, one id or a list, as the client's "
        "argument is named, is accepted too).",
    )
    at: str
    flow_overrides: dict[str, Any] | None = None
    checkpoint_overrides: dict[str, Any] | None = None
    invocation_overrides: dict[str, Any] | None = None
    skip: list[str] | None = None
    tag: str | None = None
    on_error: Literal["collect", "fail"] | None = None

    @model_validator(mode="before")
    @classmethod
    def _execution_as_the_client_names_it(cls, data: Any) -> Any:
        """``execution`` (the client's argument) for ``executions``; not both."""
        if isinstance(data, dict) and "execution" in data and "executions" not in data:
            data = dict(data)
            given = data.pop("execution")
            data["executions"] = [given] if isinstance(given, str) else given
        return data


class ReplayRow(_Open):
    original_exec_ref: str
    original_exec_id: str | None = None
    replay_exec_id: str | None = None
    status: str | None = None
    reason: str | None = None


class ReplaySubmissionBody(_Open):
    """A replay submission: its new executions are run by a ``kitaru worker``."""

    submission_id: str
    tag: str | None = None
    at: str
    wait: bool
    plan: dict[str, Any]
    results: list[ReplayRow]
    failures: list[ReplayRow]
    skipped: list[ReplayRow]
    summary: dict[str, int]
    compare_url: str | None = None


class Deleted(BaseModel):
    exec_id: str
    deleted: bool = True

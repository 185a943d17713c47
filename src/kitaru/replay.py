"""What a replay submission returns, and what replayed code can ask about its replay.

``KitaruClient().executions.replay(...)`` (also ``Execution.replay`` and
``my_flow.replay``) returns a :class:`ReplaySubmission`: one row per source
execution that was replayed (``results``), refused (``failures``) or had
nothing to replay at the selector (``skipped``). Inside a replayed execution,
:func:`is_replay` is true and :func:`get_replay_runtime_context` describes the
replay's overrides.

Only dataclasses here: this module is imported by ``import kitaru``.
"""

from __future__ import annotations

import dataclasses
import datetime
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from kitaru._runtime.context import current_execution, is_replay

if TYPE_CHECKING:
    from kitaru.handle import FlowHandle

ReplayRowStatus = Literal["submitted", "completed", "failed"]


def new_submission_id(now: datetime.datetime | None = None) -> str:
    """``rs-<UTC yyyymmddThhmmssZ>-<8 hex>``, e.g. ``rs-20260101T120000Z-1a2b3c4d``."""
    moment = (now or datetime.datetime.now(tz=datetime.UTC)).astimezone(datetime.UTC)
    return f"rs-{moment.strftime('%Y%m%dT%H%M%SZ')}-{secrets.token_hex(4)}"


def jsonable(value: Any) -> Any:
    """A JSON-compatible copy of an override value (models and dataclasses as dicts)."""
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(v) for v in value]
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        try:
            return jsonable(dump(mode="json"))
        except Exception:  # a model that cannot dump itself is shown as text
            return repr(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return jsonable(dataclasses.asdict(value))
    if isinstance(value, bytes | bytearray):
        return f"<{len(value)} bytes>"
    return repr(value)


@dataclass(frozen=True)
class ReplayResultRow:
    """A source execution that was replayed as a new execution."""

    original_exec_ref: str
    original_exec_id: str
    replay_exec_id: str
    status: ReplayRowStatus
    compare_url: str | None = None
    #: A handle on the replay when the submission did not wait for it, else None.
    handle: FlowHandle | None = field(default=None, compare=False, repr=False)

    def to_json(self) -> dict[str, Any]:
        return {
            "original_exec_ref": self.original_exec_ref,
            "original_exec_id": self.original_exec_id,
            "replay_exec_id": self.replay_exec_id,
            "status": self.status,
            "compare_url": self.compare_url,
        }


@dataclass(frozen=True)
class _UnsubmittedRow:
    """A source execution that got no replay, and why."""

    original_exec_ref: str
    original_exec_id: str | None
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {
            "original_exec_ref": self.original_exec_ref,
            "original_exec_id": self.original_exec_id,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class ReplayFailureRow(_UnsubmittedRow):
    """A source execution whose replay could not be submitted (``on_error="collect"``)."""


@dataclass(frozen=True)
class ReplaySkippedRow(_UnsubmittedRow):
    """A source execution with no checkpoint call matching ``at`` (``on_error="collect"``)."""


@dataclass(frozen=True)
class ReplaySummary:
    submitted: int
    completed: int
    failed: int
    skipped: int

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class ReplayPlanDocument:
    """The overrides as requested, and which calls each selector matched."""

    flow_overrides: dict[str, Any] = field(default_factory=dict)
    checkpoint_overrides: dict[str, Any] = field(default_factory=dict)
    invocation_overrides: dict[str, Any] = field(default_factory=dict)
    skip: list[str] = field(default_factory=list)
    #: ``{"checkpoint:<name>": [call ids], "invocation:<sel>": [...], "skip:<sel>": [...]}``.
    matched_targets: dict[str, list[str]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        document: dict[str, Any] = {
            "flow_overrides": jsonable(self.flow_overrides),
            "checkpoint_overrides": jsonable(self.checkpoint_overrides),
            "invocation_overrides": jsonable(self.invocation_overrides),
            "skip": list(self.skip),
        }
        if self.matched_targets:
            document["matched_targets"] = {k: list(v) for k, v in self.matched_targets.items()}
        return document


@dataclass(frozen=True)
class ReplaySubmission:
    """The outcome of one ``replay`` request over one or several source executions."""

    submission_id: str
    tag: str | None
    at: str
    wait: bool
    plan: ReplayPlanDocument
    results: list[ReplayResultRow]
    failures: list[ReplayFailureRow]
    skipped: list[ReplaySkippedRow]
    summary: ReplaySummary
    compare_url: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "submission_id": self.submission_id,
            "tag": self.tag,
            "at": self.at,
            "wait": self.wait,
            "plan": self.plan.to_json(),
            "results": [row.to_json() for row in self.results],
            "failures": [row.to_json() for row in self.failures],
            "skipped": [row.to_json() for row in self.skipped],
            "summary": self.summary.to_json(),
            "compare_url": self.compare_url,
        }

    @property
    def exec_id(self) -> str:
        """The new execution's id when one replay was started (releases up to 0.18
        returned an object with ``exec_id``); ``KitaruStateError`` otherwise."""
        return self._only_row().replay_exec_id

    @property
    def original_exec_id(self) -> str | None:
        """The source execution's id when one replay was started (as ``exec_id``)."""
        return self._only_row().original_exec_id

    def _only_row(self) -> ReplayResultRow:
        if len(self.results) != 1:
            from kitaru.errors import KitaruStateError

            raise KitaruStateError(
                f"This submission started {len(self.results)} replays, so it has no single "
                "exec_id: read each one's from .results (row.replay_exec_id)."
            )
        return self.results[0]

    def wait_for_handles(self) -> ReplaySubmission:
        """Wait for every replay that was submitted without waiting; returns self.

        A replay that fails raises its ``KitaruExecutionError``, as ``FlowHandle.wait`` does.
        """
        for row in self.results:
            if row.handle is not None:
                row.handle.wait()
        return self


def summarize(
    results: list[ReplayResultRow],
    failures: list[ReplayFailureRow],
    skipped: list[ReplaySkippedRow],
) -> ReplaySummary:
    return ReplaySummary(
        submitted=len(results),
        completed=sum(1 for row in results if row.status == "completed"),
        failed=len(failures) + sum(1 for row in results if row.status == "failed"),
        skipped=len(skipped),
    )


@dataclass(frozen=True)
class ReplayRuntimeContext:
    """What a replayed execution was asked to do differently (keys are call ids).

    ``at`` is the call the replay started running live from; ``output_mocks``
    the values given for calls instead of running them; ``code_overrides`` the
    ``"module.function"`` run instead of a tool call's body; ``model_overrides``
    the models for LLM calls; ``input_overrides`` the new arguments of calls.
    """

    at: str
    output_mocks: dict[str, Any] = field(default_factory=dict)
    code_overrides: dict[str, str] = field(default_factory=dict)
    model_overrides: dict[str, str] = field(default_factory=dict)
    input_overrides: dict[str, Any] = field(default_factory=dict)


def get_replay_runtime_context() -> ReplayRuntimeContext | None:
    """The running replay's context, or None outside a replayed execution."""
    ctx = current_execution.get()
    if ctx is None or not is_replay():
        return None
    context: ReplayRuntimeContext | None = ctx.replay_runtime_context()
    return context


__all__ = [
    "ReplayFailureRow",
    "ReplayPlanDocument",
    "ReplayResultRow",
    "ReplayRuntimeContext",
    "ReplaySkippedRow",
    "ReplaySubmission",
    "ReplaySummary",
    "get_replay_runtime_context",
    "is_replay",
]

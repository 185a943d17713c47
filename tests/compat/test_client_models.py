"""Kitaru 0.21's client models: field names and types, and their values after a real flow.

The flow has a checkpoint retried after a failure, a ``kitaru.save`` inside an
``llm_call`` checkpoint, a ``kitaru.wait`` answered through the client, a second
run answered from the cross-run cache and a replay; every model is read back on
SQLite and PostgreSQL.
"""

from __future__ import annotations

import dataclasses
import time
import types
import typing
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar

import pytest

import kitaru
from kitaru import FailureOrigin, KitaruClient, KitaruStateError, KitaruUserCodeError
from kitaru.client import (
    ArtifactRef,
    CallStatus,
    CheckpointAttempt,
    CheckpointCall,
    Execution,
    ExecutionStatus,
    FailureInfo,
    FrozenExecutionSpec,
    LogEntry,
    PendingWait,
)
from kitaru.config import KitaruConfig
from tests.compat._client_support import replay_id

T = TypeVar("T")

# --- the 0.21 field lists (KITARU_CONTRACT.md §4), in 0.21's order ---------------------------

OPT_STR = str | None
OPT_DT = datetime | None
DICT = dict[str, Any]

CONTRACT_FIELDS: dict[type, list[tuple[str, Any]]] = {
    Execution: [
        ("exec_id", str),
        ("flow_id", OPT_STR),
        ("flow_name", OPT_STR),
        ("status", ExecutionStatus),
        ("started_at", OPT_DT),
        ("ended_at", OPT_DT),
        ("stack_name", OPT_STR),
        ("metadata", DICT),
        ("status_reason", OPT_STR),
        ("failure", FailureInfo | None),
        ("pending_wait", PendingWait | None),
        ("frozen_execution_spec", FrozenExecutionSpec | None),
        ("original_exec_id", OPT_STR),
        ("checkpoints", list[CheckpointCall]),
        ("artifacts", list[ArtifactRef]),
        ("project_id", OPT_STR),
        ("project_name", OPT_STR),
    ],
    CheckpointCall: [
        ("call_id", str),
        ("name", str),
        ("status", ExecutionStatus),
        ("started_at", OPT_DT),
        ("ended_at", OPT_DT),
        ("metadata", DICT),
        ("original_call_id", OPT_STR),
        ("parent_call_ids", list[str]),
        ("failure", FailureInfo | None),
        ("attempts", list[CheckpointAttempt]),
        ("artifacts", list[ArtifactRef]),
        ("checkpoint_type", OPT_STR),
        ("checkpoint_origin", Literal["user", "adapter"]),
        ("adapter", OPT_STR),
        ("adapter_checkpoint_kind", OPT_STR),
        ("replay_input_slots", list[str]),
        ("replay_output_slots", list[str]),
    ],
    CheckpointAttempt: [
        ("attempt_id", str),
        ("status", ExecutionStatus),
        ("started_at", OPT_DT),
        ("ended_at", OPT_DT),
        ("metadata", DICT),
        ("failure", FailureInfo | None),
    ],
    ArtifactRef: [
        ("artifact_id", str),
        ("name", str),
        ("kind", OPT_STR),
        ("save_type", str),
        ("producing_call", OPT_STR),
        ("metadata", DICT),
        ("direction", Literal["input", "output"]),
        ("input_type", OPT_STR),
    ],
    FailureInfo: [
        ("message", str),
        ("exception_type", OPT_STR),
        ("traceback", OPT_STR),
        ("origin", FailureOrigin),
    ],
    PendingWait: [
        ("wait_id", str),
        ("name", str),
        ("question", OPT_STR),
        ("schema", DICT | None),
        ("metadata", DICT),
        ("entered_waiting_at", OPT_DT),
    ],
    LogEntry: [
        ("message", str),
        ("level", OPT_STR),
        ("timestamp", OPT_STR),
        ("source", OPT_STR),
        ("checkpoint_name", OPT_STR),
        ("module", OPT_STR),
        ("filename", OPT_STR),
        ("lineno", int | None),
    ],
}
#: Defaults 0.21 gives (so code constructing the models keeps working).
CONTRACT_DEFAULTS: dict[type, dict[str, Any]] = {
    Execution: {"project_id": None, "project_name": None},
    CheckpointCall: {"checkpoint_origin": "user"},
    ArtifactRef: {"direction": "output", "input_type": None},
}


def _hints(cls: type) -> dict[str, Any]:
    from kitaru.client import KitaruClient

    return typing.get_type_hints(cls, localns={"KitaruClient": KitaruClient})


def _same_type(actual: Any, expected: Any) -> bool:
    """Equal types; unions compare as sets of members (``X | None`` == ``Optional[X]``)."""
    if typing.get_origin(actual) in (typing.Union, types.UnionType):
        if typing.get_origin(expected) not in (typing.Union, types.UnionType):
            return False
        return set(typing.get_args(actual)) == set(typing.get_args(expected))
    return bool(actual == expected)


@pytest.mark.parametrize("model", list(CONTRACT_FIELDS), ids=lambda m: m.__name__)
def test_each_model_has_the_0_21_fields_first_with_their_types(model: type) -> None:
    assert dataclasses.is_dataclass(model)
    assert model.__dataclass_params__.frozen  # type: ignore[attr-defined]
    expected = CONTRACT_FIELDS[model]
    fields = dataclasses.fields(model)
    # 0.21's fields, in 0.21's order; ours (keyword-only) come after them.
    assert [f.name for f in fields[: len(expected)]] == [name for name, _ in expected]
    assert all(f.kw_only for f in fields[len(expected) :])
    hints = _hints(model)
    for name, expected_type in expected:
        assert _same_type(hints[name], expected_type), (model.__name__, name, hints[name])
    by_name = {f.name: f for f in fields}
    for name, default in CONTRACT_DEFAULTS.get(model, {}).items():
        assert by_name[name].default == default, (model.__name__, name)


def test_the_frozen_execution_spec_has_0_21_parts() -> None:
    hints = _hints(FrozenExecutionSpec)
    assert set(hints) >= {
        "version",
        "resolved_execution",
        "flow_defaults",
        "connection",
        "model_registry",
    }
    assert hints["flow_defaults"] is KitaruConfig
    resolved = typing.get_type_hints(hints["resolved_execution"])
    assert set(resolved) >= {"stack", "image", "cache", "retries", "llm_estimated_costs"}
    assert set(typing.get_type_hints(hints["connection"])) == {
        "server_url",
        "auth_token",
        "project",
    }


# --- a real flow --------------------------------------------------------------------------------

attempts_made: dict[str, int] = {}


@kitaru.checkpoint(retries=2)
def flaky(x: int) -> int:
    attempts_made["flaky"] = attempts_made.get("flaky", 0) + 1
    if attempts_made["flaky"] == 1:
        raise ConnectionError("the network blinked")
    return x + 1


@kitaru.checkpoint(type="llm_call")
def ask(y: int) -> str:
    print(f"asking about {y}")
    kitaru.save("notes", {"y": y}, type="context", tags=["draft"])
    return f"answer {y}"


@kitaru.checkpoint
def finish(answer: str, approved: bool) -> str:
    return f"{answer} ({'shipped' if approved else 'held'})"


@kitaru.flow(retries=0)
def agent(x: int) -> str:
    print("agent starting")
    answer = ask(flaky(x))
    approved = kitaru.wait(schema=bool, name="approve", question="Ship it?")
    return finish(answer, approved)


def _eventually(probe: Callable[[], T | None], what: str, timeout: float = 60) -> T:
    deadline = time.monotonic() + timeout
    while True:
        found = probe()
        if found is not None:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def _waiting(client: KitaruClient, exec_id: str) -> Execution:
    def probe() -> Execution | None:
        execution = client.executions.get(exec_id)
        return execution if execution.pending_wait is not None else None

    return _eventually(probe, f"{exec_id} to wait for input")


def _approve_and_finish(client: KitaruClient, exec_id: str) -> Execution:
    """Answer the "approve" wait (if the run gets there) and return the finished run."""

    def probe() -> Execution | None:
        execution = client.executions.get(exec_id)
        done = execution.pending_wait is not None or execution.status.is_finished
        return execution if done else None

    if _eventually(probe, f"{exec_id} to wait or finish").pending_wait is not None:
        client.executions.input(exec_id, wait="approve", value=True)
    return client.executions.wait(exec_id, timeout=60)


def _utc(value: datetime | None) -> datetime:
    assert value is not None
    assert value.utcoffset() == UTC.utcoffset(None)
    return value


def test_models_after_a_real_flow(any_store: str) -> None:
    attempts_made.clear()
    client = KitaruClient()
    before = datetime.now(tz=UTC)
    handle = agent.run(1)

    # -- while it waits --------------------------------------------------------------
    waiting = _waiting(client, handle.exec_id)
    assert waiting.status is ExecutionStatus.WAITING
    wait = waiting.pending_wait
    assert isinstance(wait, PendingWait)
    assert (wait.wait_id, wait.name, wait.question) == ("approve", "approve", "Ship it?")
    assert wait.schema == {"type": "boolean"}
    assert wait.metadata == {}
    assert before <= _utc(wait.entered_waiting_at) <= datetime.now(tz=UTC)
    assert client.executions.pending_waits(handle.exec_id) == [wait]
    assert waiting.to_dict()["pending_wait"]["entered_waiting_at"] == (
        wait.entered_waiting_at.isoformat()  # type: ignore[union-attr]
    )

    client.executions.input(handle.exec_id, wait="approve", value=True)
    assert handle.wait(timeout=60) == "answer 2 (shipped)"
    execution = client.executions.get(handle.exec_id)

    # -- the execution ------------------------------------------------------------------
    assert execution.status is ExecutionStatus.COMPLETED
    assert execution.flow_name == "agent"
    assert execution.flow_id is not None
    assert execution.flow_id.endswith(":agent")
    assert execution.stack_name == "local"
    assert execution.pending_wait is None
    assert execution.pending_waits == []
    assert execution.failure is None
    assert execution.status_reason is None
    assert execution.original_exec_id is None
    assert (execution.project_id, execution.project_name) == (None, None)
    assert before <= _utc(execution.started_at) <= _utc(execution.ended_at)
    spec = execution.frozen_execution_spec
    assert spec is not None
    assert spec.version == 1
    assert (spec.resolved_execution.stack, spec.resolved_execution.cache) == ("local", True)
    assert spec.resolved_execution.retries == 0
    assert spec.flow_defaults.retries == 0  # from @flow(retries=0)
    assert spec.flow_defaults.stack is None  # @flow set no stack
    assert spec.connection.auth_token is None

    # -- checkpoint calls -----------------------------------------------------------------
    flaky_call, ask_call, _finish_call = execution.checkpoints
    assert execution.list_checkpoints() == execution.checkpoints
    assert [c.call_id for c in execution.checkpoints] == ["flaky", "ask", "finish"]
    for call in execution.checkpoints:
        assert call.status is ExecutionStatus.COMPLETED
        assert call.call_status is CallStatus.COMPLETED
        assert call.original_call_id is None
        assert call.parent_call_ids == []
        assert call.failure is None
        assert call.checkpoint_origin == "user"
        assert _utc(call.started_at) <= _utc(call.ended_at)
    assert (ask_call.checkpoint_type, flaky_call.checkpoint_type) == ("llm_call", None)

    # A retried call: one CheckpointCall, its attempts in order.
    first, second = flaky_call.attempts
    assert (first.status, second.status) == (ExecutionStatus.FAILED, ExecutionStatus.COMPLETED)
    assert first.attempt_id != second.attempt_id
    assert isinstance(first.failure, FailureInfo)
    assert first.failure.message == "the network blinked"
    assert first.failure.exception_type == "ConnectionError"
    assert first.failure.origin is FailureOrigin.USER_CODE
    assert "ConnectionError" in (first.failure.traceback or "")
    assert second.failure is None
    assert _utc(first.ended_at) <= _utc(second.started_at)

    # -- artifacts: the output and the saved value on their call, once on the execution --------
    output, notes = ask_call.artifacts
    assert (output.name, output.kind, output.save_type, output.producing_call) == (
        "ask",
        "response",  # an llm_call's output
        "step_output",
        "ask",
    )
    assert (notes.name, notes.kind, notes.save_type, notes.producing_call) == (
        "notes",
        "context",
        "manual",
        "ask",
    )
    assert notes.direction == "output"
    assert notes.input_type is None
    assert notes.tags == ["draft"]
    assert notes.role == "saved"
    assert (output.load(), notes.load()) == ("answer 2", {"y": 2})
    (flaky_output,) = flaky_call.artifacts
    assert (flaky_output.kind, flaky_output.save_type) == (None, "step_output")
    every = [a for call in execution.checkpoints for a in call.artifacts]
    assert execution.artifacts == every
    assert execution.list_artifacts() == every
    assert len({a.artifact_id for a in execution.artifacts}) == 4
    assert client.artifacts.get(notes.artifact_id) == notes
    assert client.artifacts.list(handle.exec_id, kind="context") == [notes]
    # Oldest first: the save happened before the call returned.
    assert client.artifacts.list(handle.exec_id, producing_call="ask") == [notes, output]

    # -- logs ----------------------------------------------------------------------------------
    (line,) = client.executions.logs(handle.exec_id)  # source="step": checkpoint lines
    assert (line.message, line.source, line.checkpoint_name) == ("asking about 2", "step", "ask")
    assert line.timestamp is not None
    assert before <= _utc(datetime.fromisoformat(line.timestamp)) <= datetime.now(tz=UTC)
    (body,) = client.executions.logs(handle.exec_id, source="runner")
    assert (body.message, body.source, body.checkpoint_name) == ("agent starting", "runner", None)

    # -- a second run with the same input: every call answered by the cache ---------------------
    cached_handle = agent.run(1)
    cached = _approve_and_finish(client, cached_handle.exec_id)
    assert cached.status is ExecutionStatus.COMPLETED
    for call in cached.checkpoints:
        assert call.status is ExecutionStatus.COMPLETED  # 0.21 reports a cached call completed
        assert call.call_status is CallStatus.CACHED
        assert call.source_exec_id == handle.exec_id
        assert call.original_call_id == call.call_id
        assert call.attempts == []
    # The cached llm call's output is the first execution's; its body (and save) did not
    # run, and what it saved comes with it (a row of this execution, the same value).
    outputs = [a for a in cached.checkpoints[1].artifacts if a.save_type == "step_output"]
    assert [a.artifact_id for a in outputs] == [output.artifact_id]
    assert outputs[0].producing_call == "ask"
    (saved,) = [a for a in cached.checkpoints[1].artifacts if a.save_type == "manual"]
    assert saved.artifact_id != notes.artifact_id
    assert (saved.name, saved.kind, saved.producing_call) == (notes.name, "context", "ask")
    assert saved.load() == {"y": 2}

    # -- a replay from "finish": earlier calls reused ------------------------------------------
    replay = _approve_and_finish(client, replay_id(execution.replay(at="finish", wait=False)))
    assert replay.original_exec_id == handle.exec_id
    assert replay.status is ExecutionStatus.COMPLETED
    reused = replay.checkpoints[:2]
    assert [c.call_status for c in reused] == [CallStatus.REUSED, CallStatus.REUSED]
    assert [c.status for c in reused] == [ExecutionStatus.COMPLETED] * 2
    assert [c.original_call_id for c in reused] == ["flaky", "ask"]
    assert replay.checkpoints[2].call_status is CallStatus.COMPLETED

    # -- the dict forms carry 0.21's keys ------------------------------------------------------
    as_dict = execution.to_dict()
    assert as_dict["checkpoint_count"] == 3
    assert as_dict["artifact_count"] == 4
    assert as_dict["stack_name"] == "local"
    assert as_dict["checkpoints"][0]["attempts"][0]["failure"]["origin"] == "user_code"
    assert as_dict["frozen_execution_spec"]["resolved_execution"]["stack"] == "local"
    assert [a["save_type"] for a in as_dict["artifacts"]] == [
        "step_output",
        "step_output",
        "manual",
        "step_output",
    ]


@kitaru.checkpoint
def breaks_once(state: dict[str, bool]) -> str:
    if not state.get("fixed"):
        raise ValueError("not yet")
    return "fixed"


broken_state: dict[str, bool] = {}


@kitaru.flow
def repairable() -> str:
    return breaks_once(broken_state)


def test_execution_methods_read_again_and_never_change_the_snapshot(any_store: str) -> None:
    broken_state.clear()
    client = KitaruClient()
    handle = repairable.run()
    with pytest.raises(KitaruUserCodeError):
        handle.wait(timeout=60)
    failed = client.executions.get(handle.exec_id)
    assert failed.status is ExecutionStatus.FAILED
    assert failed.failure is not None
    assert failed.status_reason == failed.failure.message
    (call,) = failed.checkpoints
    assert call.status is ExecutionStatus.FAILED
    assert call.failure is not None
    assert call.failure.message == "not yet"
    assert call.failure.exception_type == "ValueError"
    assert failed.refresh() == failed
    with pytest.raises(dataclasses.FrozenInstanceError):
        failed.status = ExecutionStatus.COMPLETED  # type: ignore[misc]

    broken_state["fixed"] = True
    retried = failed.retry()
    assert isinstance(retried, Execution)
    assert retried.exec_id == failed.exec_id
    assert failed.status is ExecutionStatus.FAILED  # the snapshot did not change
    final = client.executions.wait(failed.exec_id, timeout=60)
    assert final.status is ExecutionStatus.COMPLETED
    assert failed.refresh() == final

    with pytest.raises(KitaruStateError):
        final.retry()  # only a failed execution can be retried
    with pytest.raises(KitaruStateError):
        final.cancel()  # a finished one cannot be cancelled


def test_a_log_entry_with_a_checkpoint_reads_as_step(any_store: str) -> None:
    attempts_made.clear()
    client = KitaruClient()
    handle = agent.run(5)
    execution = _approve_and_finish(client, handle.exec_id)
    lines = client.executions.logs(execution.exec_id, source=None)
    assert [(e.source, e.checkpoint_name) for e in lines] == [("runner", None), ("step", "ask")]
    assert all(isinstance(e.timestamp, str) for e in lines)
    assert all(e.to_dict()["timestamp"] == e.timestamp for e in lines)

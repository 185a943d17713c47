"""``kitaru.wait()`` and the client's input API: the rules of issue 4, one by one."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

import kitaru
from kitaru import (
    KitaruBackendError,
    KitaruContextError,
    KitaruStateError,
    KitaruUserCodeError,
    KitaruWaitValidationError,
)
from kitaru._backend import get_backend
from kitaru._store import WaitStatus
from kitaru.client import KitaruClient
from tests.waits import _flows
from tests.waits._flows import Plan
from tests.waits.conftest import (
    assert_not_finished,
    eventually,
    interrupt_while_waiting,
    wait_for_status,
    wait_until_live_waiting,
    wait_until_released,
)

# --- where wait() may be called -------------------------------------------------------------


def test_wait_outside_a_flow_is_a_context_error() -> None:
    with pytest.raises(KitaruContextError, match="outside a running flow"):
        kitaru.wait(schema=bool)
    with pytest.raises(KitaruContextError):
        kitaru.wait()


def test_wait_inside_a_checkpoint_is_a_context_error(client: KitaruClient) -> None:
    handle = _flows.wait_in_checkpoint.run()
    with pytest.raises(KitaruUserCodeError) as info:
        handle.wait(timeout=30)
    assert info.value.exception_type == "kitaru.errors.KitaruContextError"
    assert "inside checkpoint 'waits_inside'" in (info.value.exception_message or "")
    assert client.executions.pending_waits(handle.exec_id) == []
    assert get_backend().store.waits(handle.exec_id) == []


def test_negative_timeout_is_a_usage_error() -> None:
    handle = _flows.bad_timeout.run()
    with pytest.raises(KitaruUserCodeError) as info:
        handle.wait(timeout=30)
    assert info.value.exception_type == "kitaru.errors.KitaruUsageError"


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"metadata": "notadict"}, "must be a dict with string keys"),
        ({"metadata": {1: "x"}}, "must be a dict with string keys"),
        ({"metadata": {"when": object()}}, "not JSON-serializable"),
        ({"question": 42}, "question=...) must be a string"),
        ({"timeout": True}, "timeout=...) must be seconds"),
        ({"timeout": float("inf")}, "timeout=...) must be seconds"),
        ({"timeout": float("nan")}, "timeout=...) must be seconds"),
    ],
)
def test_bad_wait_arguments_are_usage_errors(
    client: KitaruClient, arguments: dict[str, Any], message: str
) -> None:
    # Refused in the flow's code, with the argument named; nothing is recorded.
    handle = _flows.bad_wait_argument.run(arguments)
    with pytest.raises(KitaruUserCodeError) as info:
        handle.wait(timeout=30)
    assert info.value.exception_type == "kitaru.errors.KitaruUsageError"
    assert message in (info.value.exception_message or "")
    assert get_backend().store.waits(handle.exec_id) == []


# --- schemas and the types wait() returns ---------------------------------------------------

ANSWERS: dict[str, tuple[Any, Any, str, str | None]] = {
    # kind: (input given, data returned, type name, list item type name)
    "bool": (True, True, "bool", None),
    "int": (7, 7, "int", None),
    # Beyond 64 bits: exact on SQLite too (it used to come back as a float; migration 0017).
    "bigint": (2**100 + 1, 2**100 + 1, "int", None),
    "str": ("ship it", "ship it", "str", None),
    "dict": ({"a": [1, 2], "b": None}, {"a": [1, 2], "b": None}, "dict", None),
    # Validation coerces ("3" -> 3) and fills defaults, as Pydantic does.
    "model": ({"title": "rollout", "steps": "3"}, {"title": "rollout", "steps": 3}, "Plan", None),
    "list": (
        [{"title": "a"}, Plan(title="b", steps=2)],
        [{"title": "a", "steps": 1}, {"title": "b", "steps": 2}],
        "list",
        "Plan",
    ),
}


@pytest.mark.parametrize("released", [False, True], ids=["live", "released"])
@pytest.mark.parametrize("kind", list(ANSWERS))
def test_typed_answer_is_validated_and_returned_as_its_type(
    any_store: str, client: KitaruClient, kind: str, released: bool
) -> None:
    given, data, type_name, item_type = ANSWERS[kind]
    handle = _flows.typed.run(kind, 0 if released else 30)
    if released:
        wait_until_released(client, handle.exec_id)
    else:
        wait_until_live_waiting(client, handle.exec_id)

    client.executions.input(handle.exec_id, value=given)
    result = handle.wait(timeout=30)

    assert result["type"] == type_name
    assert result["item_types"] == ([item_type] * len(data) if item_type else None)
    assert result["data"] == data
    (seen,) = _flows.SEEN[handle.exec_id]
    if kind == "model":
        assert isinstance(seen, Plan)
        assert seen == Plan(title="rollout", steps=3)
    elif kind == "list":
        assert all(isinstance(item, Plan) for item in seen)
        assert seen == [Plan(title="a"), Plan(title="b", steps=2)]
    else:
        assert type(seen).__name__ == type_name
        assert seen == data
    # A released runner let go; the answer brought the execution back in this process.
    assert client.executions.get(handle.exec_id).run_count == (2 if released else 1)


def test_schema_none_is_a_plain_gate_that_returns_none(
    any_store: str, client: KitaruClient
) -> None:
    handle = _flows.gate.run(30)
    execution = wait_until_live_waiting(client, handle.exec_id)
    wait = execution.pending_wait
    assert wait is not None
    assert wait.schema is None
    assert wait.question == "Continue?"

    # A gate takes no value: giving one is refused and changes nothing.
    with pytest.raises(KitaruWaitValidationError, match="continue gate"):
        client.executions.input(handle.exec_id, value="yes")
    assert client.executions.get(handle.exec_id).pending_wait == wait

    client.executions.input(handle.exec_id)
    assert handle.wait(timeout=30) == "through"
    assert _flows.SEEN[handle.exec_id] == [None]


def test_unusable_schema_is_a_usage_error() -> None:
    @kitaru.flow(cache=False)
    def odd_schema() -> Any:
        return kitaru.wait(schema=object(), timeout=0)

    with pytest.raises(KitaruUserCodeError) as info:
        odd_schema.run().wait(timeout=30)
    assert info.value.exception_type == "kitaru.errors.KitaruUsageError"
    assert "not a type Kitaru can validate" in (info.value.exception_message or "")


# --- what a waiting execution shows ---------------------------------------------------------


def test_waiting_execution_shows_its_pending_wait(any_store: str, client: KitaruClient) -> None:
    started = datetime.now(tz=UTC)
    handle = _flows.typed.run("model", 30)
    execution = wait_until_live_waiting(client, handle.exec_id)

    assert execution.status is kitaru.ExecutionStatus.WAITING
    assert handle.status is kitaru.ExecutionStatus.WAITING
    wait = execution.pending_wait
    assert wait is not None
    assert wait.exec_id == handle.exec_id
    assert wait.wait_id == "ask-model"
    assert wait.name == "ask-model"
    assert wait.question == "Give me a model"
    assert wait.schema == Plan.model_json_schema()
    assert wait.metadata == {"kind": "model", "nested": {"n": 1}}
    assert wait.timeout == 30
    assert wait.entered_waiting_at is not None
    assert started.timestamp() - 1 <= wait.entered_waiting_at.timestamp() <= time.time() + 1
    assert execution.pending_waits == [wait]
    assert client.executions.pending_waits(handle.exec_id) == [wait]
    assert execution.to_dict()["pending_waits"] == [wait.to_dict()]

    # Across executions: pending_waits() without an id lists every waiting one.
    other = _flows.gate.run(30)
    wait_until_live_waiting(client, other.exec_id)
    everything = client.executions.pending_waits()
    assert {(w.exec_id, w.wait_id) for w in everything} == {
        (handle.exec_id, "ask-model"),
        (other.exec_id, "wait"),
    }
    # The list view reads no waits; get() does.
    listed = {e.exec_id: e for e in client.executions.list()}
    assert listed[handle.exec_id].status is kitaru.ExecutionStatus.WAITING

    with pytest.raises(KitaruBackendError, match="Failed to load execution 'no-such-execution'"):
        client.executions.pending_waits("no-such-execution")


def test_wait_ids_are_stable_by_name_and_by_order(any_store: str, client: KitaruClient) -> None:
    """Unnamed waits get wait, wait:2, ... in order; each resume finds the earlier answers."""
    handle = _flows.three_waits.run(0)
    answers: list[Any] = [11, "looks good", 33]
    for expected_id, answer in zip(["wait", "review", "wait:2"], answers, strict=True):
        execution = wait_until_released(client, handle.exec_id)
        assert [w.wait_id for w in execution.pending_waits] == [expected_id]
        client.executions.input(handle.exec_id, value=answer)
    assert handle.wait(timeout=30) == answers

    execution = client.executions.get(handle.exec_id)
    assert execution.run_count == 4  # the first run and one resume per answer
    # Each checkpoint ran once: the resumed bodies reused them.
    assert [(c.call_id, len(c.attempts)) for c in execution.checkpoints] == [
        ("step", 1),
        ("step:2", 1),
        ("step:3", 1),
    ]
    stored = get_backend().store.waits(handle.exec_id)
    assert [(w.wait_id, w.status, w.value) for w in stored] == [
        ("wait", WaitStatus.ANSWERED, 11),
        ("review", WaitStatus.ANSWERED, "looks good"),
        ("wait:2", WaitStatus.ANSWERED, 33),
    ]


# --- giving input: the refusals -----------------------------------------------------------


def test_invalid_input_is_refused_with_details_and_nothing_is_stored(
    any_store: str, client: KitaruClient
) -> None:
    handle = _flows.typed.run("model", 30)
    before = wait_until_live_waiting(client, handle.exec_id)

    with pytest.raises(KitaruWaitValidationError) as info:
        client.executions.input(handle.exec_id, value={"steps": "many"})
    message = str(info.value)
    assert "ask-model" in message
    assert handle.exec_id in message
    assert "title" in message
    assert "Field required" in message
    assert "steps" in message
    assert "valid integer" in message
    # One detail per problem, with the field it is about (for a form), as the server gives.
    details = {tuple(d["path"]): d for d in info.value.details}
    assert set(details) == {("title",), ("steps",)}
    assert details[("title",)]["message"] == "Field required"
    assert "valid integer" in details[("steps",)]["message"]

    with pytest.raises(KitaruWaitValidationError, match="valid dictionary"):
        client.executions.input(handle.exec_id, value=42)

    stored = get_backend().store.get_wait(handle.exec_id, "ask-model")
    assert stored is not None
    assert stored.status is WaitStatus.PENDING
    assert stored.value is None
    assert stored.answered_at is None
    after = client.executions.get(handle.exec_id)
    assert after.status is kitaru.ExecutionStatus.WAITING
    assert after.pending_waits == before.pending_waits
    assert_not_finished(client, handle.exec_id)

    client.executions.input(handle.exec_id, value={"title": "fixed"})
    assert handle.wait(timeout=30)["data"] == {"title": "fixed", "steps": 1}


def test_input_without_a_pending_wait_is_a_state_error(
    any_store: str, client: KitaruClient, tmp_path: Path
) -> None:
    with pytest.raises(KitaruBackendError, match="Failed to load execution 'no-such-execution'"):
        client.executions.input("no-such-execution", value=True)

    handle = _flows.gate.run(30)
    wait_until_live_waiting(client, handle.exec_id)
    client.executions.input(handle.exec_id)
    handle.wait(timeout=30)
    with pytest.raises(KitaruStateError, match="no pending wait"):
        client.executions.input(handle.exec_id)
    with pytest.raises(KitaruStateError, match="no pending wait"):
        client.executions.abort_wait(handle.exec_id)

    # A running execution that is not waiting has no pending wait either.
    marker = tmp_path / "never-fail"
    marker.write_text("x")
    running = _flows.flaky.run(str(marker), 30)
    wait_until_live_waiting(client, running.exec_id)
    client.executions.input(running.exec_id, value=1)
    running.wait(timeout=30)
    with pytest.raises(KitaruStateError):
        client.executions.input(running.exec_id, wait="number", value=2)


def test_input_to_an_answered_wait_is_a_state_error(any_store: str, client: KitaruClient) -> None:
    handle = _flows.approval_then_plan.run(30)
    wait_until_live_waiting(client, handle.exec_id)
    client.executions.input(handle.exec_id, wait="approval", value=True)

    def at_plan() -> bool:
        pending = client.executions.get(handle.exec_id).pending_wait
        return pending is not None and pending.wait_id == "plan"

    eventually(at_plan, what="the second wait")
    with pytest.raises(KitaruStateError, match="already answered"):
        client.executions.input(handle.exec_id, wait="approval", value=False)
    with pytest.raises(KitaruStateError, match="already answered"):
        client.executions.abort_wait(handle.exec_id, wait="approval")
    with pytest.raises(KitaruStateError, match="no wait named 'nope'"):
        client.executions.input(handle.exec_id, wait="nope", value=1)
    stored = get_backend().store.get_wait(handle.exec_id, "approval")
    assert stored is not None
    assert stored.value is True

    client.executions.input(handle.exec_id, wait="plan", value={"title": "p"})
    assert handle.wait(timeout=30)["approved"] is True


def test_a_wait_the_body_no_longer_reaches_is_superseded(
    any_store: str, client: KitaruClient, tmp_path: Path
) -> None:
    """A body waits at one place at a time: reaching another wait supersedes the old one."""
    state = tmp_path / "which"
    state.write_text("first")
    handle = _flows.branching.run(str(state), 0)
    wait_until_released(client, handle.exec_id)
    # Resumed without an answer, the body now takes the other branch.
    state.write_text("second")
    # Stopped by Ctrl-C while it waited, then resumed without an answer: the body
    # now takes the other branch.
    interrupt_while_waiting(handle.exec_id)
    client.executions.resume(handle.exec_id)
    execution = eventually_released_at(client, handle.exec_id, "second")
    assert [w.wait_id for w in execution.pending_waits] == ["second"]

    with pytest.raises(KitaruStateError, match="superseded"):
        client.executions.input(handle.exec_id, wait="first", value=True)
    client.executions.input(handle.exec_id, value=True)  # the only pending wait
    assert handle.wait(timeout=30) is True


def eventually_released_at(client: KitaruClient, exec_id: str, wait_id: str) -> Any:
    def released() -> Any:
        execution = client.executions.get(exec_id)
        ids = [w.wait_id for w in execution.pending_waits]
        done = execution.lease_owner is None and execution.status.value == "waiting"
        return execution if done and ids == [wait_id] else None

    return eventually(released, what=f"released at wait {wait_id!r}")


# --- abort ------------------------------------------------------------------------------


@pytest.mark.parametrize("released", [False, True], ids=["live", "released"])
def test_abort_raises_a_typed_error_the_body_can_catch(
    any_store: str, client: KitaruClient, released: bool
) -> None:
    handle = _flows.abortable.run(True, 0 if released else 30)
    if released:
        wait_until_released(client, handle.exec_id)
    else:
        wait_until_live_waiting(client, handle.exec_id)
    client.executions.abort_wait(handle.exec_id)
    assert handle.wait(timeout=30) == {"aborted": True, "wait": "go", "exec_id": handle.exec_id}
    stored = get_backend().store.get_wait(handle.exec_id, "go")
    assert stored is not None
    assert stored.status is WaitStatus.ABORTED
    with pytest.raises(KitaruStateError, match=r"already aborted|no pending wait"):
        client.executions.input(handle.exec_id, wait="go", value=True)


def test_uncaught_abort_fails_the_execution(client: KitaruClient) -> None:
    handle = _flows.abortable.run(False, 30)
    wait_until_live_waiting(client, handle.exec_id)
    client.executions.abort_wait(handle.exec_id, wait="go")
    with pytest.raises(KitaruUserCodeError) as info:
        handle.wait(timeout=30)
    assert info.value.exception_type == "kitaru.errors.KitaruWaitAbortedError"
    assert "was aborted" in (info.value.exception_message or "")
    # A retry meets the recorded abort again: the hint says how to ask again instead.
    assert "executions retry" not in str(info.value)
    assert f"kitaru executions replay {handle.exec_id}" in str(info.value)
    wait_for_status(client, handle.exec_id, "failed")


# --- a wait reached again ---------------------------------------------------------------


@pytest.mark.parametrize("timeout", [30, 0], ids=["live", "released"])
def test_a_named_wait_in_a_loop_asks_again_each_time(
    any_store: str, client: KitaruClient, timeout: float
) -> None:
    handle = _flows.chat.run(3, timeout)
    asked = []
    for message in ("hi", "how are you", "bye"):
        pending = eventually(
            lambda: client.executions.pending_waits(handle.exec_id) or None,
            what="the next question",
        )
        (wait,) = pending
        assert wait.name == "user_message"
        asked.append(wait.wait_id)
        client.executions.input(handle.exec_id, wait="user_message", value=message)
    assert asked == ["user_message", "user_message:2", "user_message:3"]
    assert handle.wait(timeout=30) == ["echo:hi", "echo:how are you", "echo:bye"]
    # The first answer's wait is answered: by its id it cannot be answered again.
    with pytest.raises(KitaruStateError, match="already"):
        client.executions.input(handle.exec_id, wait="user_message:2", value="again")


@pytest.mark.parametrize("number", [float("nan"), float("inf"), float("-inf")])
def test_a_number_json_cannot_carry_is_refused_and_the_wait_stays_pending(
    any_store: str, client: KitaruClient, number: float
) -> None:
    # As through a server: NaN and Infinity cannot be recorded as JSON (PostgreSQL
    # refuses them; SQLite read them back as null), on every store alike.
    handle = _flows.typed.run("float", 0)
    wait_until_released(client, handle.exec_id)
    with pytest.raises(KitaruWaitValidationError, match="JSON cannot carry"):
        client.executions.input(handle.exec_id, value=number)
    assert [w.wait_id for w in client.executions.pending_waits(handle.exec_id)] == ["ask-float"]
    client.executions.input(handle.exec_id, value=2.5)
    assert handle.wait(timeout=30)["data"] == 2.5


def test_an_integer_too_long_to_write_as_json_is_refused(
    any_store: str, client: KitaruClient
) -> None:
    handle = _flows.typed.run("int", 0)
    wait_until_released(client, handle.exec_id)
    with pytest.raises(KitaruWaitValidationError, match="cannot be recorded as JSON"):
        client.executions.input(handle.exec_id, value=10**5000)
    client.executions.input(handle.exec_id, value=7)
    assert handle.wait(timeout=30)["data"] == 7

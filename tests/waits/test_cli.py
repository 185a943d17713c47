"""``kitaru executions input|waits|get`` on waiting executions (run in this process)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from kitaru import ExecutionStatus
from kitaru._backend import get_backend
from kitaru._store import WaitStatus
from kitaru.cli import app
from kitaru.client import KitaruClient
from tests.waits import _flows
from tests.waits.conftest import (
    eventually,
    exec_threads,
    interrupt_while_waiting,
    one_error_line,
    wait_until_live_waiting,
    wait_until_released,
)


class Result:
    def __init__(self, exit_code: int, stdout: str, stderr: str) -> None:
        self.exit_code = exit_code
        self.stdout = stdout
        self.stderr = stderr

    def json(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.stdout)
        return data

    def error_json(self) -> dict[str, Any]:
        """The JSON error document: on stderr, with nothing on stdout."""
        assert self.stdout == "", self.stdout
        data: dict[str, Any] = json.loads(self.stderr)
        return data


def kitaru(*args: str, input: str | None = None) -> Result:
    result = CliRunner().invoke(app, list(args), input=input, env={"COLUMNS": "250"})
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return Result(result.exit_code, result.stdout, result.stderr)


def released_run(kind: str) -> str:
    handle = _flows.typed.run(kind, 0)
    wait_until_released(KitaruClient(), handle.exec_id)
    return handle.exec_id


# --- listing ----------------------------------------------------------------------------


def test_waits_lists_pending_waits_as_table_and_json(client: KitaruClient) -> None:
    assert kitaru("executions", "waits").stdout.strip() == "No executions are waiting for input."
    empty = kitaru("executions", "waits", "-o", "json").json()
    assert empty == {"command": "executions.waits", "items": [], "count": 0}

    model = released_run("model")
    gate = _flows.gate.run(0).exec_id
    wait_until_released(client, gate)

    table = kitaru("executions", "waits")
    assert table.exit_code == 0, table.stderr
    model_line = next(line for line in table.stdout.splitlines() if model in line)
    assert "ask-model" in model_line
    assert "Give me a model" in model_line
    assert "Plan {title: str, steps?: int}" in model_line
    assert '"kind": "model"' in model_line
    assert " ago)" in model_line
    gate_line = next(line for line in table.stdout.splitlines() if gate in line)
    assert "no value (continue gate)" in gate_line
    assert "kitaru executions input" in table.stdout

    document = kitaru("executions", "waits", "-o", "json").json()
    assert document["command"] == "executions.waits"
    assert document["count"] == 2
    by_exec = {item["exec_id"]: item for item in document["items"]}
    item = by_exec[model]
    assert item["wait_id"] == item["name"] == "ask-model"
    assert item["question"] == "Give me a model"
    assert item["schema"] == _flows.Plan.model_json_schema()
    assert item["expects"] == "Plan {title: str, steps?: int}"
    assert item["metadata"] == {"kind": "model", "nested": {"n": 1}}
    assert item["entered_waiting_at"]
    assert item["timeout"] == 0
    assert by_exec[gate]["schema"] is None

    only = kitaru("executions", "waits", model, "-o", "json").json()
    assert [i["exec_id"] for i in only["items"]] == [model]


def test_waits_of_one_execution_and_errors(client: KitaruClient) -> None:
    handle = _flows.gate.run(0)
    wait_until_released(client, handle.exec_id)
    client.executions.input(handle.exec_id)
    handle.wait(timeout=30)
    none = kitaru("executions", "waits", handle.exec_id)
    assert none.exit_code == 0
    assert f"Execution {handle.exec_id} has no pending wait (it is completed)." in none.stdout

    unknown = kitaru("executions", "waits", "nope")
    assert unknown.exit_code == 1
    assert "nope" in one_error_line(unknown.stderr)
    document = kitaru("executions", "waits", "nope", "-o", "json").error_json()
    assert document["error"]["type"] == "KitaruBackendError"


def test_schema_summaries() -> None:
    from kitaru.client._prompt import schema_summary

    def summary(schema: Any) -> str:
        from pydantic import TypeAdapter

        return schema_summary(TypeAdapter(schema).json_schema())

    assert schema_summary(None) == "no value (continue gate)"
    assert summary(bool) == "bool"
    assert summary(int) == "int"
    assert summary(str) == "str"
    assert summary(dict) == "dict"
    assert summary(dict[str, int]) == "dict[str, int]"
    assert summary(list[_flows.Plan]) == "list[Plan {title: str, steps?: int}]"
    assert summary(_flows.Plan) == "Plan {title: str, steps?: int}"
    assert summary(int | None) == "int | None"


def test_get_shows_pending_waits(client: KitaruClient) -> None:
    exec_id = released_run("bool")
    table = kitaru("executions", "get", exec_id)
    assert table.exit_code == 0, table.stderr
    assert "waiting" in table.stdout
    assert "Pending waits" in table.stdout
    line = next(line for line in table.stdout.splitlines() if "ask-bool" in line)
    assert "Give me a bool" in line
    assert "bool" in line
    assert f"kitaru executions input {exec_id} --value JSON" in table.stdout

    document = kitaru("executions", "get", exec_id, "-o", "json").json()
    (wait,) = document["item"]["pending_waits"]
    assert wait["wait_id"] == "ask-bool"
    assert wait["schema"] == {"type": "boolean"}

    kitaru("executions", "input", exec_id, "--value", "true")
    done = kitaru("executions", "get", exec_id)
    assert "Pending waits" not in done.stdout
    assert kitaru("executions", "get", exec_id, "-o", "json").json()["item"]["pending_waits"] == []


# --- input --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "given", "expected"),
    [
        ("bool", "true", True),
        ("int", "42", 42),
        ("str", "hello there", "hello there"),  # not JSON: the raw text
        ("str", '"quoted"', "quoted"),
        ("str", "42", "42"),  # JSON 42 is not a str: the raw text is tried next
        ("dict", '{"a": [1, 2]}', {"a": [1, 2]}),
        ("model", '{"title": "t", "steps": "2"}', {"title": "t", "steps": 2}),
        ("list", '[{"title": "a"}]', [{"title": "a", "steps": 1}]),
    ],
)
def test_input_value_is_json_with_a_text_fallback(
    client: KitaruClient, kind: str, given: str, expected: Any
) -> None:
    exec_id = released_run(kind)
    result = kitaru("executions", "input", exec_id, "--value", given, "-o", "json")
    assert result.exit_code == 0, result.stdout
    document = result.json()
    assert document["command"] == "executions.input"
    item = document["item"]  # 0.21: the execution; what the input did under "input"
    assert item["exec_id"] == exec_id
    assert item["status"] == "completed"
    assert item["input"]["wait_id"] == f"ask-{kind}"
    assert item["input"]["outcome"] == "answered"
    assert item["input"]["value"] == expected
    assert item["input"]["resumed"] is True
    assert item["input"]["ran_here"] is True
    assert client.executions.get(exec_id).status is ExecutionStatus.COMPLETED
    stored = get_backend().store.get_wait(exec_id, f"ask-{kind}")
    assert stored is not None
    assert stored.value == expected


def test_input_table_output_and_a_live_runner(client: KitaruClient) -> None:
    handle = _flows.typed.run("int", 60)
    wait_until_live_waiting(client, handle.exec_id)
    result = kitaru("executions", "input", handle.exec_id, "--value", "5")
    assert result.exit_code == 0, result.stderr
    assert f"Answered wait 'ask-int' of execution {handle.exec_id} with 5." in result.stdout
    # The runner was here already and continues; the command does not take it over.
    assert handle.wait(timeout=30)["data"] == 5
    assert client.executions.get(handle.exec_id).run_count == 1


def test_invalid_value_is_one_error_line_and_nothing_changes(client: KitaruClient) -> None:
    exec_id = released_run("model")
    result = kitaru("executions", "input", exec_id, "--value", '{"steps": "x"}')
    assert result.exit_code == 1
    line = one_error_line(result.stderr)
    assert "does not match its schema" in line
    assert "title" in line
    assert "Field required" in line
    assert "steps" in line
    assert "valid integer" in line

    document = kitaru("executions", "input", exec_id, "--value", "[1]", "-o", "json").error_json()
    assert document["command"] == "executions.input"
    assert document["error"]["type"] == "KitaruWaitValidationError"
    assert "\n" not in document["error"]["message"]

    stored = get_backend().store.get_wait(exec_id, "ask-model")
    assert stored is not None
    assert stored.status is WaitStatus.PENDING
    assert stored.value is None
    execution = client.executions.get(exec_id)
    assert execution.status is ExecutionStatus.WAITING
    assert execution.run_count == 1
    assert exec_threads(exec_id) == []


def test_missing_value_for_a_typed_wait_is_a_usage_error() -> None:
    exec_id = released_run("bool")
    result = kitaru("executions", "input", exec_id)
    assert result.exit_code == 1
    assert "expects bool; pass it with --value" in one_error_line(result.stderr)


def test_gate_needs_no_value(client: KitaruClient) -> None:
    handle = _flows.gate.run(0)
    wait_until_released(client, handle.exec_id)
    result = kitaru("executions", "input", handle.exec_id)
    assert result.exit_code == 0, result.stderr
    assert handle.wait(timeout=30) == "through"


def test_input_errors(client: KitaruClient) -> None:
    unknown = kitaru("executions", "input", "nope", "--value", "1")
    assert unknown.exit_code == 1
    assert "nope" in one_error_line(unknown.stderr)

    handle = _flows.approval_then_plan.run(0)
    wait_until_released(client, handle.exec_id)
    ok = kitaru("executions", "input", handle.exec_id, "--wait", "approval", "--value", "true")
    assert ok.exit_code == 0, ok.stderr
    assert "waiting again, at 'plan'" in ok.stderr
    wait_until_released(client, handle.exec_id)

    again = kitaru("executions", "input", handle.exec_id, "--wait", "approval", "--value", "no")
    assert again.exit_code == 1
    assert "already answered" in one_error_line(again.stderr)
    wrong = kitaru("executions", "input", handle.exec_id, "--wait", "other", "--value", "1")
    assert wrong.exit_code == 1
    assert "no wait named 'other'" in one_error_line(wrong.stderr)

    kitaru("executions", "input", handle.exec_id, "--value", '{"title": "t"}')
    handle.wait(timeout=30)
    finished = kitaru("executions", "input", handle.exec_id, "--value", "1", "-o", "json")
    assert finished.exit_code == 1
    error = finished.error_json()["error"]
    assert error["type"] == "KitaruStateError"
    assert "no pending wait" in error["message"]


@pytest.mark.parametrize(
    "args",
    [
        ["executions", "input", "--value", "1"],  # no id, and no wait pending anywhere
        ["executions", "input", "x", "--abort", "--value", "1"],
        ["executions", "input", "--interactive", "--value", "1"],
        ["executions", "input", "--interactive", "--abort"],
        ["executions", "input", "--interactive", "--wait", "w"],
    ],
)
def test_bad_option_combinations_exit_1(args: list[str]) -> None:
    result = kitaru(*args)
    assert result.exit_code == 1
    one_error_line(result.stderr)


def test_input_without_an_id_answers_the_only_pending_wait(client: KitaruClient) -> None:
    # 0.21: `executions input [ID]` answers the only pending wait (several: an error).
    first = released_run("int")
    answered = kitaru("executions", "input", "--value", "5", "-o", "json")
    assert answered.exit_code == 0, answered.stderr
    assert answered.json()["item"]["exec_id"] == first
    assert answered.json()["item"]["input"]["value"] == 5

    second, third = released_run("int"), released_run("bool")
    several = kitaru("executions", "input", "--value", "5", "-o", "json")
    assert several.exit_code == 1
    message = several.error_json()["error"]["message"]
    for expected in ("2 waits", second, third):
        assert expected in message
    assert {w.exec_id for w in client.executions.pending_waits(None)} == {second, third}

    named = kitaru("executions", "input", "--wait", "ask-bool", "--value", "true", "-o", "json")
    assert named.exit_code == 0, named.stderr
    assert named.json()["item"]["exec_id"] == third
    assert [w.exec_id for w in client.executions.pending_waits(None)] == [second]


def test_input_to_a_superseded_wait_is_one_error_line(client: KitaruClient, tmp_path: Path) -> None:
    state = tmp_path / "which"
    state.write_text("first")
    handle = _flows.branching.run(str(state), 0)
    wait_until_released(client, handle.exec_id)
    state.write_text("second")
    # Stopped by Ctrl-C while it waited, then resumed without an answer: the body
    # now takes the other branch.
    interrupt_while_waiting(handle.exec_id)
    client.executions.resume(handle.exec_id)
    eventually(
        lambda: (
            [w.wait_id for w in client.executions.pending_waits(handle.exec_id)] == ["second"]
            and client.executions.get(handle.exec_id).lease_owner is None
        ),
        what="released at the second wait",
    )
    result = kitaru("executions", "input", handle.exec_id, "--wait", "first", "--value", "true")
    assert result.exit_code == 1
    assert "superseded" in one_error_line(result.stderr)
    chosen = kitaru("executions", "input", handle.exec_id, "--value", "true")
    assert chosen.exit_code == 0, chosen.stderr
    assert handle.wait(timeout=30) is True


def test_abort_from_the_cli(client: KitaruClient) -> None:
    caught = _flows.abortable.run(True, 0)
    wait_until_released(client, caught.exec_id)
    result = kitaru("executions", "input", caught.exec_id, "--abort", "-o", "json")
    assert result.exit_code == 0, result.stdout
    item = result.json()["item"]
    assert item["input"]["outcome"] == "aborted"
    assert item["input"]["wait_id"] == "go"
    assert item["status"] == "completed"
    assert caught.wait(timeout=30)["aborted"] is True

    # Uncaught, the abort fails the execution this command resumed: exit 1, one line.
    uncaught = _flows.abortable.run(False, 0)
    wait_until_released(client, uncaught.exec_id)
    failed = kitaru("executions", "input", uncaught.exec_id, "--abort")
    assert failed.exit_code == 1
    assert "Aborted wait 'go'" in failed.stdout
    assert "KitaruWaitAbortedError" not in failed.stdout
    errors = [line for line in failed.stderr.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1, failed.stderr
    assert "Traceback" not in failed.stderr
    line = errors[0]
    assert "failed" in line
    assert "was aborted" in line

    # In JSON mode, a failing command: the error document on stderr, stdout empty.
    in_json = _flows.abortable.run(False, 0)
    wait_until_released(client, in_json.exec_id)
    failed = kitaru("executions", "input", in_json.exec_id, "--abort", "-o", "json")
    assert failed.exit_code == 1
    assert failed.stdout == ""
    document = failed.error_json()
    assert document["command"] == "executions.input"
    assert "was aborted" in document["error"]["message"]
    assert client.executions.get(in_json.exec_id).status is ExecutionStatus.FAILED


def test_no_resume_leaves_it_waiting_for_resume(client: KitaruClient) -> None:
    exec_id = released_run("int")
    result = kitaru("executions", "input", exec_id, "--value", "3", "--no-resume", "-o", "json")
    assert result.exit_code == 0
    item = result.json()["item"]
    assert item["input"]["resumed"] is False
    assert item["input"]["ran_here"] is False
    assert item["status"] == "waiting"
    assert item["pending_waits"] == []
    assert exec_threads(exec_id) == []
    table = kitaru("executions", "input", released_run("int"), "--value", "4", "--no-resume")
    assert "stays waiting with no runner (--no-resume)" in table.stderr

    resumed = kitaru("executions", "resume", exec_id, "-o", "json")
    assert resumed.exit_code == 0, resumed.stdout
    assert resumed.json()["item"]["status"] == "completed"


def test_resumed_run_stops_at_its_next_wait_and_lets_go(client: KitaruClient) -> None:
    """The command returns at the next wait instead of holding a thread for its timeout."""
    handle = _flows.approval_then_plan.run(0, 600)
    wait_until_released(client, handle.exec_id)
    started = time.monotonic()
    result = kitaru("executions", "input", handle.exec_id, "--value", "true", "-o", "json")
    assert result.exit_code == 0
    item = result.json()["item"]
    assert item["input"]["ran_here"] is True
    assert item["status"] == "waiting"
    # The plan wait has a 600 s timeout, yet the runner the command started let go of it.
    execution = wait_until_released(client, handle.exec_id, timeout=10)
    assert time.monotonic() - started < 60
    assert execution.pending_wait is not None
    assert execution.pending_wait.wait_id == "plan"
    assert execution.pending_wait.timeout == 600
    # Still answerable: the next input resumes it again.
    client.executions.input(handle.exec_id, value={"title": "t"})
    assert handle.wait(timeout=30)["plan"] == {"title": "t", "steps": 1}


# --- interactive ------------------------------------------------------------------------


def test_interactive_for_one_execution(client: KitaruClient) -> None:
    handle = _flows.approval_then_plan.run(0)
    wait_until_released(client, handle.exec_id)
    # approval: first invalid, then yes; plan (reached after resuming here): a model.
    answers = 'maybe\ntrue\n{"title": "interactive", "steps": 4}\n'
    result = kitaru("executions", "input", handle.exec_id, "--interactive", input=answers)
    assert result.exit_code == 0, result.stderr
    assert "is waiting at 'approval': Approve the rollout?" in result.stderr
    assert "invalid:" in result.stderr
    assert "valid boolean" in result.stderr
    assert "is waiting at 'plan': Which plan?" in result.stderr
    assert "expects: Plan {title: str, steps?: int}" in result.stderr
    assert "answered" in result.stdout
    assert "completed" in result.stdout
    assert handle.wait(timeout=30)["plan"] == {"title": "interactive", "steps": 4}


def test_interactive_for_all_waiting_executions_json(client: KitaruClient) -> None:
    first = released_run("int")
    second = released_run("bool")
    third = _flows.gate.run(0).exec_id
    wait_until_released(client, third)
    order = [w.exec_id for w in client.executions.pending_waits()]
    assert order == [first, second, third]
    # 7 for the int, abort the bool, skip (empty line)... a gate continues on Enter.
    answers = "7\n!abort\n\n"
    result = kitaru("executions", "input", "-i", "-o", "json", input=answers)
    document = result.json()
    assert document["command"] == "executions.input"
    outcomes = {(i["exec_id"], i["outcome"], json.dumps(i["value"])) for i in document["items"]}
    assert outcomes == {
        (first, "answered", "7"),
        (second, "aborted", "null"),
        (third, "answered", "null"),
    }
    statuses = {i["exec_id"]: i["status"] for i in document["items"]}
    assert statuses[first] == "completed"
    assert statuses[second] == "failed"  # typed() does not catch the abort
    assert statuses[third] == "completed"
    assert result.exit_code == 1  # an execution this command resumed failed


def test_interactive_skip_and_nothing_to_do(client: KitaruClient) -> None:
    none = kitaru("executions", "input", "--interactive")
    assert none.exit_code == 0
    assert "No executions are waiting for input." in none.stdout

    exec_id = released_run("int")
    skipped = kitaru("executions", "input", exec_id, "-i", input="\n")
    assert skipped.exit_code == 0
    assert "skipped" in skipped.stdout
    assert client.executions.get(exec_id).status is ExecutionStatus.WAITING
    closed = kitaru("executions", "input", exec_id, "-i", input="")
    assert closed.exit_code == 0
    assert client.executions.pending_waits(exec_id) != []

    client.executions.input(exec_id, value=1)
    client.executions.wait(exec_id, timeout=30)
    done = kitaru("executions", "input", exec_id, "-i")
    assert done.exit_code == 1
    assert "no pending wait" in one_error_line(done.stderr)


def test_a_value_too_long_for_python_to_read_is_one_usage_error(client: KitaruClient) -> None:
    exec_id = released_run("int")
    huge = "9" * 5000  # JSON, but over Python's 4,300-digit limit for int conversion
    result = kitaru("executions", "input", exec_id, "--value", huge, "-o", "json")
    assert result.exit_code == 1
    assert result.stdout == ""
    error = result.error_json()["error"]
    assert "cannot be read" in error["message"]
    assert "internal error" not in error["message"]
    assert client.executions.get(exec_id).status is ExecutionStatus.WAITING

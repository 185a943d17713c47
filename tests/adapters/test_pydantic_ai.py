"""KitaruAgent (PydanticAI) against the fake OpenAI-compatible server: durable model
requests and tool calls, crash + resume, replay with an overridden tool result, a
human-in-the-loop tool, streaming, and runs inside a checkpoint."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests._extras import need

need("pydantic_ai", "pydantic-ai")

from kitaru import ExecutionStatus, KitaruClient, KitaruUserCodeError  # noqa: E402
from kitaru.client import CallStatus  # noqa: E402
from tests._cli import in_process  # noqa: E402
from tests.adapters import _pai_flows  # noqa: E402
from tests.adapters._support import crash_child, ledger  # noqa: E402
from tests.fakes.llm_server import FakeLlmServer, Reply, ToolCall  # noqa: E402

TWO_ADDS = (
    Reply(tool_calls=[ToolCall("add", {"a": 1, "b": 10})]),
    Reply(tool_calls=[ToolCall("add", {"a": 2, "b": 20})]),
    Reply(text="sum is 33"),
)


@pytest.fixture
def env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, llm_server: FakeLlmServer
) -> tuple[Path, FakeLlmServer]:
    path = tmp_path / "ledger.txt"
    monkeypatch.setenv("KT_LEDGER", str(path))
    monkeypatch.setenv("KT_LLM_URL", llm_server.openai_base_url)
    return path, llm_server


def _tool_results(server: FakeLlmServer) -> list[str]:
    """The tool results the last request sent back to the model."""
    return [
        str(m["content"]) for m in server.requests[-1].body["messages"] if m.get("role") == "tool"
    ]


def test_requests_and_tools_are_durable_calls(env: tuple[Path, FakeLlmServer]) -> None:
    ledger_path, server = env
    server.script(*TWO_ADDS)
    handle = _pai_flows.agent_flow.run("add things")
    assert handle.wait(timeout=30) == "sum is 33"
    calls = KitaruClient().executions.get(handle.exec_id).checkpoints
    assert [(c.call_id, c.checkpoint_type, c.adapter_checkpoint_kind) for c in calls] == [
        ("calc_model_request", "llm_call", "model_request"),
        ("add_tool", "tool_call", "tool_call"),
        ("calc_model_request:2", "llm_call", "model_request"),
        ("add_tool:2", "tool_call", "tool_call"),
        ("calc_model_request:3", "llm_call", "model_request"),
    ]
    assert {(c.checkpoint_origin, c.adapter) for c in calls} == {("adapter", "pydantic_ai")}
    (usage,) = calls[0].llm_usage_records
    assert usage["model"] == "gpt-4o-mini"
    assert usage["prompt_tokens"] > 0
    assert usage["cost_source"] == "estimated"
    assert usage["cost_usd"] > 0
    summary = KitaruClient().executions.get(handle.exec_id).llm_usage_summary
    assert summary is not None
    assert (summary["call_count"], summary["models"]) == (3, ["gpt-4o-mini"])
    assert calls[1].output.load() == 11  # type: ignore[union-attr]
    assert server.count() == 3
    assert ledger(ledger_path) == {"add 1": 1, "add 2": 1}


def test_crash_in_the_second_tool_then_resume_sends_no_request_twice(
    env: tuple[Path, FakeLlmServer], tmp_path: Path
) -> None:
    ledger_path, server = env
    server.script(*TWO_ADDS)
    exec_id = crash_child(
        "from tests.adapters._pai_flows import main; main()",
        cwd=tmp_path,
        ledger_path=ledger_path,
        hang_in="add 2",
    )
    assert server.count() == 2  # both tool-calling replies were fetched before the crash
    resumed = KitaruClient().executions.resume(exec_id, wait=True)
    assert resumed.status is ExecutionStatus.COMPLETED
    # Only the final request went to the server again; add 1 did not rerun.
    assert server.count() == 3
    assert ledger(ledger_path) == {"add 1": 1, "add 2": 2, "add 2 hanging": 1}
    assert _tool_results(server) == ["11", "22"]


def test_replay_from_a_tool_call_with_an_overridden_result(
    env: tuple[Path, FakeLlmServer],
) -> None:
    ledger_path, server = env
    server.script(*TWO_ADDS)
    handle = _pai_flows.agent_flow.run("add things")
    handle.wait(timeout=30)
    server.script(Reply(text="sum is 111"))
    submission = KitaruClient().executions.replay(
        handle.exec_id, at="add_tool:2", invocation_overrides={"add_tool:2": {"output": 100}}
    )
    assert submission.summary.completed == 1
    replay = KitaruClient().executions.get(submission.results[0].replay_exec_id)
    assert [c.call_status for c in replay.checkpoints] == [
        CallStatus.REUSED,
        CallStatus.REUSED,
        CallStatus.REUSED,
        CallStatus.REUSED,
        CallStatus.COMPLETED,
    ]
    # The tool did not run again; the model saw the overridden result.
    assert ledger(ledger_path) == {"add 1": 1, "add 2": 1}
    assert server.count() == 4
    assert _tool_results(server) == ["11", "100"]

    # A model override reruns the last request on another model (PydanticAI's offline
    # TestModel here): the provider gets no request.
    again = KitaruClient().executions.replay(
        handle.exec_id,
        at="calc_model_request:3",
        invocation_overrides={"calc_model_request:3": {"model": "test"}},
    )
    last = KitaruClient().executions.get(again.results[0].replay_exec_id).checkpoints[-1]
    assert last.llm_usage_records[0]["model"] == "test"
    assert server.count() == 4

    # A code override runs other code in place of the tool (same arguments).
    server.script(Reply(text="product"))
    KitaruClient().executions.replay(
        handle.exec_id,
        at="add_tool:2",
        invocation_overrides={"add_tool:2": {"code": "tests.adapters._pai_flows.multiply"}},
    )
    assert _tool_results(server) == ["11", "40"]
    assert ledger(ledger_path) == {"add 1": 1, "add 2": 1}


def test_hitl_tool_waits_for_a_person(env: tuple[Path, FakeLlmServer]) -> None:
    _, server = env
    server.script(
        Reply(tool_calls=[ToolCall("approve", {"question": "Ship it?"})]), Reply(text="shipped")
    )
    handle = _pai_flows.agent_flow.run("ship")
    client = KitaruClient()
    deadline = time.monotonic() + 20
    while not client.executions.pending_waits(handle.exec_id) and time.monotonic() < deadline:
        time.sleep(0.05)
    (pending,) = client.executions.pending_waits(handle.exec_id)
    assert (pending.name, pending.question, pending.schema) == (
        "approve",
        "Ship it?",
        {"type": "boolean"},
    )
    # Answered the way a person does, with the CLI.
    answered = in_process()("executions", "input", handle.exec_id, "--value", "true", "-o", "json")
    assert answered.exit_code == 0, answered.stderr
    assert handle.wait(timeout=30) == "shipped"
    assert _tool_results(server) == ["true"]
    assert server.count() == 2  # the answered wait did not resend the first request


def test_hitl_wait_releases_the_runner_and_resumes_from_the_record(
    env: tuple[Path, FakeLlmServer],
) -> None:
    _, server = env
    server.script(
        Reply(tool_calls=[ToolCall("approve", {"question": "Ship it?"})]), Reply(text="shipped")
    )
    handle = _pai_flows.releasing_flow.run("ship")
    client = KitaruClient()
    deadline = time.monotonic() + 20
    while client.executions.get(handle.exec_id).lease_owner is not None:
        assert time.monotonic() < deadline, "the runner did not let go at the wait"
        time.sleep(0.05)
    assert client.executions.get(handle.exec_id).status is ExecutionStatus.WAITING
    client.executions.input(handle.exec_id, wait="approve", value=False)  # resumes here
    assert handle.wait(timeout=30) == "shipped"
    # The agent ran again from the top: its first request came from the record.
    assert server.count() == 2
    assert _tool_results(server) == ["false"]


def test_inside_a_checkpoint_and_streaming(env: tuple[Path, FakeLlmServer]) -> None:
    _, server = env
    server.script(*TWO_ADDS)
    handle = _pai_flows.agent_in_checkpoint_flow.run("add things")
    assert handle.wait(timeout=30) == "sum is 33"
    (step,) = KitaruClient().executions.get(handle.exec_id).checkpoints
    assert step.checkpoint_origin == "user"
    assert [c["name"] for c in step.metadata["kitaru_adapter_calls"]] == [
        "calc_model_request",
        "add_tool",
        "calc_model_request",
        "add_tool",
        "calc_model_request",
    ]
    assert len(step.metadata["llm_usage"]) == 3  # one record per request, on the checkpoint

    server.reset()
    server.script(Reply(text="streamed answer"))
    streamed = _pai_flows.streaming_flow.run("say it")
    chunks = streamed.wait(timeout=30)
    assert chunks[-1] == "streamed answer"
    assert [r.stream for r in server.requests] == [True]
    (call,) = KitaruClient().executions.get(streamed.exec_id).checkpoints
    assert json.dumps(call.output.load()).count("streamed answer") == 1  # type: ignore[union-attr]


@pytest.mark.parametrize("flow_name", ["turn_flow", "agent_in_checkpoint_flow"])
def test_hitl_tool_inside_a_durable_call_says_what_to_do(
    env: tuple[Path, FakeLlmServer], flow_name: str
) -> None:
    _, server = env
    server.script(Reply(tool_calls=[ToolCall("approve", {"question": "Ship it?"})]))
    handle = getattr(_pai_flows, flow_name).run("ship")
    with pytest.raises(KitaruUserCodeError) as raised:
        handle.wait(timeout=30)
    message = str(raised.value)
    assert "KitaruContextError: hitl_tool 'approve'" in message
    assert "hitl_tool 'approve'" in message
    assert "checkpoint_strategy='calls'" in message
    assert "from the @flow body" in message
    execution = KitaruClient().executions.get(handle.exec_id)
    assert execution.status.value == "failed"
    assert not KitaruClient().executions.pending_waits(handle.exec_id)


def test_turn_strategy_is_one_durable_call_per_run(env: tuple[Path, FakeLlmServer]) -> None:
    ledger_path, server = env
    server.script(*TWO_ADDS)
    handle = _pai_flows.turn_flow.run("add things")
    # request, tool call, request, tool call, request (+ the prompt)
    assert handle.wait(timeout=30) == ["sum is 33", 6]
    (turn,) = KitaruClient().executions.get(handle.exec_id).checkpoints
    assert (turn.call_id, turn.checkpoint_type, turn.adapter_checkpoint_kind) == (
        "calc_turn",
        "llm_call",
        "turn",
    )
    assert len(turn.metadata["kitaru_adapter_calls"]) == 5
    assert len(turn.llm_usage_records) == 3
    assert ledger(ledger_path) == {"add 1": 1, "add 2": 1}

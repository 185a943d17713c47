"""KitaruRunner (OpenAI Agents SDK) against the fake server's Responses API: durable model
calls, function tools and handoffs, crash + resume, replay, streaming, inside a checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests._extras import need

need("agents", "openai-agents")

from kitaru import ExecutionStatus, KitaruClient  # noqa: E402
from tests.adapters import _oa_flows  # noqa: E402
from tests.adapters._support import crash_child, ledger  # noqa: E402
from tests.fakes.llm_server import FakeLlmServer, Reply, ToolCall  # noqa: E402

# triage hands off to helper, which adds twice and answers.
SCRIPT = (
    Reply(tool_calls=[ToolCall("transfer_to_helper", {}, id="call_h")]),
    Reply(tool_calls=[ToolCall("add", {"a": 1, "b": 10}, id="call_a1")]),
    Reply(tool_calls=[ToolCall("add", {"a": 2, "b": 20}, id="call_a2")]),
    Reply(text="sum is 33"),
)


@pytest.fixture
def env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, llm_server: FakeLlmServer
) -> tuple[Path, FakeLlmServer]:
    path = tmp_path / "ledger.txt"
    monkeypatch.setenv("KT_LEDGER", str(path))
    monkeypatch.setenv("KT_LLM_URL", llm_server.openai_base_url)
    monkeypatch.setenv("OPENAI_AGENTS_DISABLE_TRACING", "1")
    return path, llm_server


def _tool_outputs(server: FakeLlmServer) -> list[str]:
    items = server.requests[-1].body["input"]
    return [str(i["output"]) for i in items if i.get("type") == "function_call_output"]


def test_model_calls_tools_and_handoffs_are_durable(env: tuple[Path, FakeLlmServer]) -> None:
    ledger_path, server = env
    server.script(*SCRIPT)
    handle = _oa_flows.runner_flow.run("add things")
    assert handle.wait(timeout=30) == "helper: sum is 33"
    calls = KitaruClient().executions.get(handle.exec_id).checkpoints
    assert [(c.call_id, c.checkpoint_type) for c in calls] == [
        ("agents_model_request", "llm_call"),
        ("agents_model_request:2", "llm_call"),
        ("add_tool", "tool_call"),
        ("agents_model_request:3", "llm_call"),
        ("add_tool:2", "tool_call"),
        ("agents_model_request:4", "llm_call"),
    ]
    assert {(c.checkpoint_origin, c.adapter) for c in calls} == {("adapter", "openai_agents")}
    assert calls[0].metadata["llm_usage"][0]["prompt_tokens"] > 0
    assert server.count() == 4
    assert ledger(ledger_path) == {"add 1": 1, "add 2": 1}


def test_crash_in_a_tool_then_resume_sends_no_request_twice(
    env: tuple[Path, FakeLlmServer], tmp_path: Path
) -> None:
    ledger_path, server = env
    server.script(*SCRIPT)
    exec_id = crash_child(
        "from tests.adapters._oa_flows import main; main()",
        cwd=tmp_path,
        ledger_path=ledger_path,
        hang_in="add 2",
        OPENAI_AGENTS_DISABLE_TRACING="1",
    )
    assert server.count() == 3
    resumed = KitaruClient().executions.resume(exec_id, wait=True)
    assert resumed.status is ExecutionStatus.COMPLETED
    assert server.count() == 4  # only the last model call was sent again
    assert ledger(ledger_path) == {"add 1": 1, "add 2": 2, "add 2 hanging": 1}
    assert _tool_outputs(server) == ['{"assistant": "helper"}', "11", "22"]


def test_replay_with_an_overridden_tool_output(env: tuple[Path, FakeLlmServer]) -> None:
    ledger_path, server = env
    server.script(*SCRIPT)
    handle = _oa_flows.runner_flow.run("add things")
    handle.wait(timeout=30)
    server.script(Reply(text="sum is 111"))
    submission = KitaruClient().executions.replay(
        handle.exec_id, at="add_tool:2", invocation_overrides={"add_tool:2": {"output": "100"}}
    )
    assert submission.summary.completed == 1
    assert server.count() == 5
    assert _tool_outputs(server) == ['{"assistant": "helper"}', "11", "100"]
    assert ledger(ledger_path) == {"add 1": 1, "add 2": 1}


def test_replay_with_an_overridden_model(env: tuple[Path, FakeLlmServer]) -> None:
    _, server = env
    server.script(*SCRIPT)
    handle = _oa_flows.runner_flow.run("add things")
    handle.wait(timeout=30)
    # The last model call runs again on the model the override names (resolved by the
    # run's own provider); the calls before it are reused.
    server.script(Reply(text="sum is 33, said another model"))
    submission = KitaruClient().executions.replay(
        handle.exec_id,
        at="agents_model_request:4",
        invocation_overrides={"agents_model_request:4": {"model": "gpt-other"}},
    )
    assert submission.summary.completed == 1
    assert server.count() == 5
    assert [r.model for r in server.requests] == [*["gpt-test"] * 4, "gpt-other"]
    replay_id = submission.results[0].replay_exec_id
    last = KitaruClient().executions.get(replay_id).checkpoints[-1]
    assert last.llm_usage_records[0]["model"] == "gpt-other"
    assert KitaruClient().executions.get(replay_id).checkpoints[0].call_status.value == "reused"


def test_streamed_and_inside_a_checkpoint(env: tuple[Path, FakeLlmServer]) -> None:
    _, server = env
    server.script(*SCRIPT)
    handle = _oa_flows.runner_in_checkpoint_flow.run("add things")
    assert handle.wait(timeout=30) == "sum is 33"
    (step,) = KitaruClient().executions.get(handle.exec_id).checkpoints
    assert [c["kind"] for c in step.metadata["kitaru_adapter_calls"]] == [
        "model_request",
        "model_request",
        "tool_call",
        "model_request",
        "tool_call",
        "model_request",
    ]

    server.reset()
    server.script(Reply(text="streamed answer"))
    streamed = _oa_flows.streamed_flow.run("say it")
    kinds = streamed.wait(timeout=30)
    assert kinds[-1] == "streamed answer"
    assert "raw_response_event" in kinds
    assert [r.stream for r in server.requests] == [True]
    (call,) = KitaruClient().executions.get(streamed.exec_id).checkpoints
    assert json.dumps(call.output.load()).count("response.completed") == 1  # type: ignore[union-attr]


def test_runner_call_strategy_is_one_durable_call(env: tuple[Path, FakeLlmServer]) -> None:
    ledger_path, server = env
    server.script(*SCRIPT)
    handle = _oa_flows.runner_call_flow.run("add things")
    assert handle.wait(timeout=30) == "helper: sum is 33"
    (call,) = KitaruClient().executions.get(handle.exec_id).checkpoints
    assert (call.call_id, call.adapter_checkpoint_kind) == ("agents_runner_call", "runner_call")
    assert len(call.metadata["kitaru_adapter_calls"]) == 6
    assert len(call.llm_usage_records) == 4
    assert ledger(ledger_path) == {"add 1": 1, "add 2": 1}


def test_a_model_instance_is_recorded_and_priced_by_its_model_name(
    env: tuple[Path, FakeLlmServer],
) -> None:
    import openai
    from agents import Agent, RunConfig
    from agents.models.openai_chatcompletions import OpenAIChatCompletionsModel

    from kitaru import flow
    from kitaru.adapters.openai_agents import KitaruRunner

    _, server = env

    def model() -> OpenAIChatCompletionsModel:
        client = openai.AsyncOpenAI(
            base_url=server.openai_base_url,
            api_key="sk-test",
            default_headers={"Connection": "close"},
        )
        return OpenAIChatCompletionsModel(model="gpt-4o-mini", openai_client=client)

    @flow(cache=False)
    def on_the_agent(prompt: str) -> str:
        agent = Agent(name="a", instructions="Answer.", model=model())
        return str(KitaruRunner().run_sync(agent, prompt).final_output)

    @flow(cache=False)
    def on_the_run_config(prompt: str) -> str:
        agent = Agent(name="a", instructions="Answer.")
        config = RunConfig(model=model(), tracing_disabled=True)
        return str(KitaruRunner().run_sync(agent, prompt, run_config=config).final_output)

    for each in (on_the_agent, on_the_run_config):
        server.script(Reply(text="hi", input_tokens=100, output_tokens=10))
        handle = each.run("hello")
        assert handle.wait(timeout=30) == "hi"
        (call,) = KitaruClient().executions.get(handle.exec_id).checkpoints
        (usage,) = call.llm_usage_records
        assert usage["model"] == "gpt-4o-mini"
        assert usage["cost_source"] == "estimated"
        assert usage["cost_usd"] > 0
    assert [r.model for r in server.requests] == ["gpt-4o-mini", "gpt-4o-mini"]

"""kitaru.llm(): durable model calls on the real SDKs against the fake provider."""

from __future__ import annotations

from typing import Any

import pytest

import kitaru
from kitaru import KitaruClient, KitaruContextError, KitaruUsageError, checkpoint, flow
from kitaru.client import CallStatus
from tests.fakes.llm_server import CHAT, MESSAGES, FakeLlmServer, Reply
from tests.llm.conftest import OPENAI_KEY


def test_flow_body_call_is_a_durable_llm_call(provider: FakeLlmServer) -> None:
    provider.script(Reply("Paris", input_tokens=20, output_tokens=5))

    @flow
    def ask() -> str:
        return kitaru.llm("Capital of France?", model="openai/gpt-4o-mini", system="Be brief.")

    handle = ask.run()
    assert handle.wait() == "Paris"
    request = provider.requests[0]
    assert request.api == CHAT and request.model == "gpt-4o-mini"
    assert request.api_key == OPENAI_KEY
    assert request.body["messages"][0] == {"role": "system", "content": "Be brief."}
    execution = KitaruClient().executions.get(handle.exec_id)
    (call,) = execution.checkpoints
    assert (call.call_id, call.checkpoint_type) == ("llm", "llm_call")
    (usage,) = call.llm_usage_records
    assert usage["model"] == "openai/gpt-4o-mini"
    assert (usage["prompt_tokens"], usage["completion_tokens"], usage["total_tokens"]) == (
        20,
        5,
        25,
    )
    assert usage["credential_source"] == "OPENAI_API_KEY"
    assert usage["cost_source"] == "estimated" and usage["cost_usd"] > 0
    kinds = {(a.name, a.kind) for a in call.artifacts}
    assert ("llm.prompt", "prompt") in kinds
    assert call.output is not None and call.output.kind == "response"
    summary = execution.llm_usage_summary
    assert summary is not None and summary["total_tokens"] == 25
    assert OPENAI_KEY not in repr(execution.to_dict())


def test_in_checkpoint_calls_are_recorded_on_the_checkpoint(provider: FakeLlmServer) -> None:
    provider.script(
        Reply("one", input_tokens=3, output_tokens=1), Reply("two", input_tokens=4, output_tokens=2)
    )

    @checkpoint
    def research(topic: str) -> str:
        first = kitaru.llm(topic, model="anthropic/claude-haiku-4-5")
        return first + " " + kitaru.llm([{"role": "user", "content": topic}], model="openai/gpt-4o")

    @flow
    def agent() -> str:
        return research("durability")

    handle = agent.run()
    assert handle.wait() == "one two"
    assert [r.api for r in provider.requests] == [MESSAGES, CHAT]
    (call,) = KitaruClient().executions.get(handle.exec_id).checkpoints
    assert call.name == "research" and call.checkpoint_type is None
    assert [r["provider"] for r in call.llm_usage_records] == ["anthropic", "openai"]
    assert call.aggregated_llm_usage_summary["total_tokens"] == 10
    names = {a.name for a in call.artifacts}
    assert {"research/llm.prompt", "research/llm.response", "research/llm:2.prompt"} <= names


def test_outside_a_flow_and_bad_prompts() -> None:
    with pytest.raises(KitaruContextError, match="outside a running flow"):
        kitaru.llm("hi", model="openai/gpt-4o")
    seen: list[str] = []

    @flow
    def bad(prompt: Any) -> None:
        try:
            kitaru.llm(prompt, model="openai/gpt-4o")
        except KitaruUsageError as exc:
            seen.append(str(exc))

    for prompt in ("", [], [{"role": "robot", "content": "x"}], [{"role": "user"}], 3):
        bad.run(prompt).wait()
    assert len(seen) == 5
    assert "role 'robot'" in seen[2]

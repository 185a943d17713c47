"""The durable call primitive: a recorded call at flow scope, inline inside a checkpoint."""

from __future__ import annotations

from typing import Any

import pytest

from kitaru import KitaruClient, KitaruContextError, KitaruUserCodeError, checkpoint, flow
from kitaru._runtime.durable_call import durable_call, replay_model_override
from kitaru._runtime.usage import record_llm_usage
from kitaru.client import CallStatus


class Transient(Exception):
    pass


def test_flow_scope_call_is_recorded_retried_and_memoised() -> None:
    sent: list[str] = []

    def request(prompt: str) -> str:
        sent.append(prompt)
        if len(sent) == 1:
            raise Transient("429")
        record_llm_usage({"model": "m", "provider": "fake", "total_tokens": 3})
        return prompt.upper()

    @flow
    def agent(fail_after: bool) -> str:
        first = durable_call(
            request,
            ("hi",),
            name="llm",
            retries=2,
            retry_if=lambda e: isinstance(e, Transient),
        )
        if fail_after:
            raise RuntimeError("body failed after the call")
        return first

    handle = agent.run(True)
    with pytest.raises(KitaruUserCodeError):
        handle.wait()
    assert sent == ["hi", "hi"]
    execution = KitaruClient().executions.get(handle.exec_id)
    (call,) = execution.checkpoints
    assert (call.call_id, call.checkpoint_type, call.call_status) == (
        "llm",
        "llm_call",
        CallStatus.COMPLETED,
    )
    assert [a.status.value for a in call.attempts] == ["failed", "completed"]
    assert call.metadata["llm_usage"][0]["total_tokens"] == 3


def test_errors_not_retryable_fail_at_once_and_inline_calls_land_on_the_checkpoint() -> None:
    calls: list[int] = []

    def broken() -> str:
        calls.append(1)
        raise ValueError("bad request")

    @flow
    def strict() -> str:
        return durable_call(broken, name="llm", retries=3, retry_if=lambda e: False)

    with pytest.raises(KitaruUserCodeError, match="bad request"):
        strict.run().wait()
    assert calls == [1]

    def inner(x: int) -> int:
        record_llm_usage({"model": "m", "provider": "fake", "total_tokens": x})
        return x * 2

    @checkpoint
    def step() -> int:
        return durable_call(inner, (2,), name="llm") + durable_call(inner, (3,), name="llm")

    @flow
    def outer() -> int:
        return step()

    handle = outer.run()
    assert handle.wait() == 10
    (call,) = KitaruClient().executions.get(handle.exec_id).checkpoints
    assert call.name == "step"
    assert [r["total_tokens"] for r in call.metadata["llm_usage"]] == [2, 3]


def test_outside_a_flow_is_a_context_error() -> None:
    with pytest.raises(KitaruContextError, match="outside a running flow"):
        durable_call(lambda: 1, name="llm")
    assert replay_model_override() is None


def test_resume_and_replay_reuse_or_override_the_call() -> None:
    sent: list[Any] = []

    def request(prompt: str) -> str:
        sent.append((prompt, replay_model_override()))
        return f"answer to {prompt}"

    @flow
    def agent() -> str:
        return durable_call(request, ("q",), name="ask") + "!"

    handle = agent.run()
    assert handle.wait() == "answer to q!"
    client = KitaruClient()
    client.executions.replay(
        handle.exec_id, at="ask", checkpoint_overrides={"ask": {"model": "openai/other"}}
    )
    assert sent[-1] == ("q", "openai/other")
    replayed = client.executions.replay(
        handle.exec_id, at="ask", invocation_overrides={"ask": {"output": "fixed"}}
    )
    assert client.executions.get(replayed.results[0].replay_exec_id).status.value == "completed"
    assert len(sent) == 2  # the output override did not run the request


def test_async_calls_are_recorded_as_concurrent_calls() -> None:
    import asyncio

    from kitaru._runtime.durable_call import durable_call_async

    async def tool(x: int) -> int:
        await asyncio.sleep(0.01)
        return x + 1

    @flow
    async def agent() -> list[int]:
        return list(
            await asyncio.gather(
                durable_call_async(tool, (1,), name="add", call_type="tool_call"),
                durable_call_async(tool, (2,), name="add", call_type="tool_call"),
            )
        )

    handle = agent.run()
    assert handle.wait() == [2, 3]
    calls = KitaruClient().executions.get(handle.exec_id).checkpoints
    assert [(c.call_id, c.checkpoint_type) for c in calls] == [
        ("add", "tool_call"),
        ("add:2", "tool_call"),
    ]

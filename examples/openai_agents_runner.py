"""An OpenAI Agents SDK run with durable model calls and function tools (offline).

    python examples/openai_agents_runner.py

The model is a tiny scripted ``agents.Model`` (no network, no API key): it
calls the ``add`` tool once, then answers. ``KitaruRunner`` records each model
call and the tool call, so a resumed execution sends no request twice.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from agents import Agent, RunConfig, function_tool
from agents.items import ModelResponse
from agents.models.interface import Model
from agents.usage import Usage
from openai.types.responses import (
    ResponseFunctionToolCall,
    ResponseOutputMessage,
    ResponseOutputText,
)

from kitaru import KitaruClient, flow
from kitaru.adapters.openai_agents import KitaruRunner


class ScriptedModel(Model):
    async def get_response(
        self, system_instructions: Any, input: Any, *args: Any, **kw: Any
    ) -> ModelResponse:
        answered = any(
            isinstance(item, dict) and item.get("type") == "function_call_output" for item in input
        )
        if not answered:
            output: list[Any] = [
                ResponseFunctionToolCall(
                    type="function_call", call_id="call_1", name="add", arguments='{"a": 2, "b": 3}'
                )
            ]
        else:
            text = ResponseOutputText(type="output_text", text="2 + 3 = 5", annotations=[])
            output = [
                ResponseOutputMessage(
                    id="msg_1", type="message", role="assistant", status="completed", content=[text]
                )
            ]
        return ModelResponse(output=output, usage=Usage(requests=1), response_id=None)

    def stream_response(self, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        raise NotImplementedError("this example does not stream")


@function_tool
def add(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b


@flow
def arithmetic(question: str) -> str:
    agent = Agent(name="calculator", model=ScriptedModel(), tools=[add])
    result = KitaruRunner().run_sync(agent, question, run_config=RunConfig(tracing_disabled=True))
    return str(result.final_output)


if __name__ == "__main__":
    handle = arithmetic.run("what is 2 + 3?")
    print(handle.wait())
    for call in KitaruClient().executions.get(handle.exec_id).checkpoints:
        print(f"  {call.call_id:22} {call.checkpoint_type:9} {call.adapter}")

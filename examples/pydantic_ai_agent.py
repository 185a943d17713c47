"""A PydanticAI agent with durable model requests, tool calls and a human approval (offline).

    python examples/pydantic_ai_agent.py

The model is PydanticAI's own ``FunctionModel`` (no network): it calls the
``lookup`` tool, then asks a person through the ``approve`` hitl tool. The
script answers the wait itself, the way ``kitaru executions input`` would.
"""

from __future__ import annotations

import threading
import time

from pydantic_ai import Agent
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart
from pydantic_ai.models.function import AgentInfo, FunctionModel

from kitaru import KitaruClient, flow
from kitaru.adapters.pydantic_ai import KitaruAgent, hitl_tool


def scripted_model(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    turn = sum(1 for m in messages if m.kind == "response")
    if turn == 0:
        return ModelResponse(parts=[ToolCallPart("lookup", {"city": "Paris"})])
    if turn == 1:
        return ModelResponse(parts=[ToolCallPart("approve", {"question": "Book Paris?"})])
    return ModelResponse(parts=[TextPart("Booked Paris.")])


@hitl_tool
def approve(question: str) -> bool:
    """Ask a person whether to go ahead."""
    raise AssertionError("a person answers this tool")


agent = Agent(FunctionModel(scripted_model), name="travel", tools=[approve])


@agent.tool_plain
def lookup(city: str) -> str:
    """Weather for a city."""
    return f"sunny in {city}"


@flow
def travel(request: str) -> str:
    return str(KitaruAgent(agent).run_sync(request).output)


def answer_when_asked(exec_id: str) -> None:
    client = KitaruClient()
    while not client.executions.pending_waits(exec_id):
        time.sleep(0.05)
    client.executions.input(exec_id, wait="approve", value=True)


if __name__ == "__main__":
    handle = travel.run("a weekend trip")
    threading.Thread(target=answer_when_asked, args=(handle.exec_id,), daemon=True).start()
    print(handle.wait(timeout=60))
    for call in KitaruClient().executions.get(handle.exec_id).checkpoints:
        print(f"  {call.call_id:24} {call.checkpoint_type:9} {call.adapter_checkpoint_kind}")

"""PydanticAI flows for tests/adapters: a real OpenAI chat model pointed at the fake server
(``KT_LLM_URL``), tools that note each run in the ledger."""

from __future__ import annotations

import asyncio
import os

import openai
from pydantic_ai import Agent
from pydantic_ai.models.openai import OpenAIChatModel
from pydantic_ai.providers.openai import OpenAIProvider

from kitaru import checkpoint, flow
from kitaru.adapters.pydantic_ai import KitaruAgent, hitl_tool
from tests.adapters._support import hang_if, note


@hitl_tool
def approve(question: str) -> bool:
    """Ask a person to approve."""
    raise AssertionError("never runs: a person answers")


@hitl_tool(name="approve", timeout=0)
def approve_later(question: str) -> bool:
    """Ask a person to approve (the runner lets go of the process while waiting)."""
    raise AssertionError("never runs: a person answers")


def make_agent(*, release: bool = False) -> Agent[None, str]:
    # Connection: close, so that the fake server's stop() finds no idle keep-alive
    # connection (it joins its handler threads).
    client = openai.AsyncOpenAI(
        base_url=os.environ["KT_LLM_URL"],
        api_key="sk-test",
        default_headers={"Connection": "close"},
    )
    provider = OpenAIProvider(openai_client=client)
    model = OpenAIChatModel("gpt-4o-mini", provider=provider)
    tools = [approve_later if release else approve]
    agent: Agent[None, str] = Agent(model, name="calc", tools=tools)

    @agent.tool_plain
    def add(a: int, b: int) -> int:
        """Add two numbers."""
        note(f"add {a}")
        hang_if(f"add {a}")
        return a + b

    return agent


@flow(cache=False)
def agent_flow(prompt: str) -> str:
    result = KitaruAgent(make_agent()).run_sync(prompt)
    return str(result.output)


@flow(cache=False)
def releasing_flow(prompt: str) -> str:
    return str(KitaruAgent(make_agent(release=True)).run_sync(prompt).output)


@checkpoint
def agent_step(prompt: str) -> str:
    return str(KitaruAgent(make_agent()).run_sync(prompt).output)


@flow(cache=False)
def agent_in_checkpoint_flow(prompt: str) -> str:
    return agent_step(prompt)


@flow(cache=False)
def streaming_flow(prompt: str) -> list[str]:
    async def stream() -> list[str]:
        async with KitaruAgent(make_agent()).run_stream(prompt) as result:
            return [text async for text in result.stream_output(debounce_by=None)]

    return asyncio.run(stream())


def main() -> None:
    handle = agent_flow.run("add things")
    print(handle.exec_id, flush=True)
    handle.wait()


@flow(cache=False)
def turn_flow(prompt: str) -> list[object]:
    result = KitaruAgent(make_agent(), checkpoint_strategy="turn").run_sync(prompt)
    return [result.output, len(result.new_messages())]


def multiply(a: int, b: int) -> int:
    """A replay's code override for the add tool."""
    return a * b

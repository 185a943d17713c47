"""OpenAI Agents SDK flows for tests/adapters: the real SDK's Responses model pointed at the
fake server (``KT_LLM_URL``); tools note each run in the ledger."""

from __future__ import annotations

import asyncio
import os

import openai
from agents import Agent, RunConfig, function_tool
from agents.models.openai_provider import OpenAIProvider

from kitaru import checkpoint, flow
from kitaru.adapters.openai_agents import KitaruRunner
from tests.adapters._support import hang_if, note


@function_tool
def add(a: int, b: int) -> int:
    """Add two numbers."""
    note(f"add {a}")
    hang_if(f"add {a}")
    return a + b


def make_agent() -> Agent[None]:
    helper = Agent(name="helper", instructions="Adds numbers.", model="gpt-test", tools=[add])
    return Agent(name="triage", instructions="Hand off sums.", model="gpt-test", handoffs=[helper])


def run_config() -> RunConfig:
    # Connection: close, so that the fake server's stop() finds no idle keep-alive connection.
    client = openai.AsyncOpenAI(
        base_url=os.environ["KT_LLM_URL"],
        api_key="sk-test",
        default_headers={"Connection": "close"},
    )
    provider = OpenAIProvider(openai_client=client, use_responses=True)
    return RunConfig(model_provider=provider, tracing_disabled=True)


@flow(cache=False)
def runner_flow(prompt: str) -> str:
    result = KitaruRunner().run_sync(make_agent(), prompt, run_config=run_config())
    return f"{result.last_agent.name}: {result.final_output}"


@checkpoint
def runner_step(prompt: str) -> str:
    return str(KitaruRunner().run_sync(make_agent(), prompt, run_config=run_config()).final_output)


@flow(cache=False)
def runner_in_checkpoint_flow(prompt: str) -> str:
    return runner_step(prompt)


@flow(cache=False)
def streamed_flow(prompt: str) -> list[str]:
    async def stream() -> list[str]:
        result = KitaruRunner().run_streamed(make_agent(), prompt, run_config=run_config())
        kinds = [event.type async for event in result.stream_events()]
        return [*sorted(set(kinds)), str(result.final_output)]

    return asyncio.run(stream())


def main() -> None:
    handle = runner_flow.run("add things")
    print(handle.exec_id, flush=True)
    handle.wait()


@flow(cache=False)
def runner_call_flow(prompt: str) -> str:
    result = KitaruRunner("runner_call").run_sync(make_agent(), prompt, run_config=run_config())
    return f"{result.last_agent.name}: {result.final_output}"

"""OpenAI Agents SDK adapter: ``KitaruRunner`` runs agents with durable model and tool calls.

``KitaruRunner().run(agent, input)`` mirrors ``agents.Runner.run`` (also
``run_sync`` and ``run_streamed``). Inside a ``@flow`` body each model call is a
durable call of type ``llm_call`` (``<name>_model_request``) and each function
tool call one of type ``tool_call`` (``<tool>_tool``): a resumed execution runs
the agent again from the top and gets every model response and tool output
that completed before the crash from the store, so no request is sent twice
and handoffs follow the same recorded path. Replay reuses them before ``at``
and honours ``output``/``input`` overrides. Inside a ``@checkpoint`` they run
inline and the checkpoint is the durable unit.

Built on the SDK's extension points: the run's ``RunConfig.model_provider``
(and any ``Model`` instance set on the agents) is wrapped so that models
return recorded responses, and the agents are cloned with their
``FunctionTool.on_invoke_tool`` wrapped. Streaming runs record the provider's
events and replay them.

Needs the ``openai-agents`` extra (``kitaru[openai-agents]``).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Literal

from kitaru.adapters._requires import require

require("agents", extra="openai-agents", feature="kitaru.adapters.openai_agents")

from agents import Agent, FunctionTool, RunConfig, Runner  # noqa: E402
from agents.items import ModelResponse  # noqa: E402
from agents.models.interface import Model, ModelProvider  # noqa: E402
from agents.models.multi_provider import MultiProvider  # noqa: E402
from agents.usage import Usage  # noqa: E402
from openai._models import construct_type  # noqa: E402  (the SDK's own lenient parser)
from openai.types.responses import (  # noqa: E402
    ResponseCompletedEvent,
    ResponseOutputItem,
    ResponseStreamEvent,
)

from kitaru._runtime.durable_call import replay_model_override  # noqa: E402
from kitaru.adapters._calls import adapter_call, adapter_call_async  # noqa: E402
from kitaru.adapters._usage import record_request_usage  # noqa: E402
from kitaru.errors import KitaruUsageError  # noqa: E402

ADAPTER = "openai_agents"
Strategy = Literal["calls", "runner_call"]


def _construct(type_: Any, values: list[Any]) -> list[Any]:
    """Recorded Responses objects rebuilt the way the OpenAI SDK builds what it receives:
    leniently (a provider's response need not pass strict validation to be used)."""
    return [construct_type(type_=type_, value=value) for value in values]


def _record_usage(model: str, usage: Any, started: float) -> None:
    if usage is None:
        return
    record_request_usage(
        model=model,
        provider="openai",
        prompt_tokens=getattr(usage, "input_tokens", None),
        completion_tokens=getattr(usage, "output_tokens", None),
        latency_ms=(time.perf_counter() - started) * 1000,
        price_provider="openai",
    )


def _dump_response(response: ModelResponse) -> dict[str, Any]:
    usage = response.usage
    return {
        "output": [item.model_dump(mode="json") for item in response.output],
        "usage": {
            "requests": usage.requests,
            "input_tokens": usage.input_tokens,
            "output_tokens": usage.output_tokens,
            "total_tokens": usage.total_tokens,
        },
        "response_id": response.response_id,
    }


def _load_response(data: dict[str, Any]) -> ModelResponse:
    return ModelResponse(
        output=_construct(ResponseOutputItem, data["output"]),
        usage=Usage(**data.get("usage", {})),
        response_id=data.get("response_id"),
    )


def _model_name(model: Model) -> str:
    """The name usage is recorded (and priced) under: the SDK models keep it in ``.model``
    (e.g. ``OpenAIChatCompletionsModel(model="gpt-4o-mini", ...)``); else the class name."""
    name = getattr(model, "model", None)
    return name if isinstance(name, str) and name else type(model).__name__


class KitaruModel(Model):
    """A model whose every response (streamed or not) is a durable ``llm_call``."""

    def __init__(
        self,
        wrapped: Model,
        *,
        call_name: str,
        model_name: str,
        provider: ModelProvider | None = None,
    ) -> None:
        self.wrapped = wrapped
        self.call_name = call_name
        self.model_name = model_name
        # Resolves a replay's ``model`` override (a model name) the way the run would.
        self.provider = provider

    def _target(self) -> tuple[Model, str]:
        """The model to send this call to, and its name: a replay may override it."""
        override = replay_model_override()
        if override is None:
            return self.wrapped, self.model_name
        if self.provider is None:
            raise KitaruUsageError(
                f"A replay overrides the model of {self.call_name!r} with {override!r}, but "
                "this model has no model provider to resolve that name: run it through "
                "KitaruRunner (which passes the run's provider), or drop the override."
            )
        return self.provider.get_model(override), override

    async def get_response(self, *args: Any, **kwargs: Any) -> ModelResponse:
        async def send() -> dict[str, Any]:
            started = time.perf_counter()
            model, name = self._target()
            response = await model.get_response(*args, **kwargs)
            _record_usage(name, response.usage, started)
            return _dump_response(response)

        data = await adapter_call_async(
            send, adapter=ADAPTER, kind="model_request", name=self.call_name, call_type="llm_call"
        )
        return _load_response(data)

    async def stream_response(self, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        # The provider's stream is drained inside the durable call and its events
        # recorded; the run then sees the same events (on resume: without a request).
        async def send() -> list[dict[str, Any]]:
            started = time.perf_counter()
            model, name = self._target()
            events: list[Any] = []
            async for event in model.stream_response(*args, **kwargs):
                events.append(event)
                if isinstance(event, ResponseCompletedEvent):
                    _record_usage(name, event.response.usage, started)
            return [e.model_dump(mode="json") for e in events]

        data = await adapter_call_async(
            send, adapter=ADAPTER, kind="model_request", name=self.call_name, call_type="llm_call"
        )
        for event in _construct(ResponseStreamEvent, data):
            yield event

    async def close(self) -> None:
        await self.wrapped.close()


class KitaruModelProvider(ModelProvider):
    """Wraps the run's model provider: every model it returns is a :class:`KitaruModel`."""

    def __init__(self, wrapped: ModelProvider, *, call_name: str) -> None:
        self.wrapped = wrapped
        self.call_name = call_name

    def get_model(self, model_name: str | None) -> Model:
        model = self.wrapped.get_model(model_name)
        return KitaruModel(
            model,
            call_name=self.call_name,
            model_name=model_name or "default",
            provider=self.wrapped,
        )

    async def aclose(self) -> None:
        await self.wrapped.aclose()


def _durable_tool(tool: FunctionTool) -> FunctionTool:
    invoke = tool.on_invoke_tool

    async def on_invoke_tool(context: Any, arguments: str) -> Any:
        async def run_tool(arguments: str) -> Any:
            return await invoke(context, arguments)

        return await adapter_call_async(
            run_tool,
            (arguments,),
            adapter=ADAPTER,
            kind="tool_call",
            name=f"{tool.name}_tool",
            call_type="tool_call",
        )

    return dataclasses.replace(tool, on_invoke_tool=on_invoke_tool)


def _runner_data(result: Any) -> dict[str, Any]:
    return {"final_output": result.final_output, "last_agent": result.last_agent.name}


@dataclass(frozen=True)
class RunnerCallResult:
    """What a ``checkpoint_strategy="runner_call"`` run returns (one durable call)."""

    final_output: Any
    #: The agent that produced the final output (the runner's durable clone of it).
    last_agent: Agent[Any] | None

    def final_output_as(self, cls: type[Any]) -> Any:
        return self.final_output


class KitaruRunner:
    """``agents.Runner`` with durable model calls and function-tool calls.

    ``checkpoint_strategy="runner_call"`` records each ``run``/``run_sync``
    as one durable call instead (type ``llm_call``, named ``<name>_runner_call``;
    its model and tool calls are listed in that call's metadata, their usage
    recorded on it). It returns a :class:`RunnerCallResult` (``final_output``,
    ``last_agent``); ``run_streamed`` needs ``"calls"``.
    """

    def __init__(self, checkpoint_strategy: Strategy = "calls", *, name: str | None = None) -> None:
        if checkpoint_strategy not in ("calls", "runner_call"):
            raise KitaruUsageError(
                f"checkpoint_strategy must be 'calls' (each model call and tool call is a "
                f"durable call) or 'runner_call' (one durable call per run), got "
                f"{checkpoint_strategy!r}."
            )
        self.checkpoint_strategy: Strategy = checkpoint_strategy
        self.name = name or "agents"
        self._agents: dict[int, Agent[Any]] = {}
        self._provider: ModelProvider | None = None

    @property
    def _call_name(self) -> str:
        return f"{self.name}_model_request"

    def _agent(self, agent: Agent[Any]) -> Agent[Any]:
        """``agent`` (and the agents it hands off to) with durable tools and models."""
        known = self._agents.get(id(agent))
        if known is not None:
            return known
        clone = agent.clone()
        self._agents[id(agent)] = clone  # before recursing: handoff cycles
        model = agent.model
        if isinstance(model, Model) and not isinstance(model, KitaruModel):
            clone.model = KitaruModel(
                model,
                call_name=self._call_name,
                model_name=_model_name(model),
                provider=self._provider,
            )
        clone.tools = [_durable_tool(t) if isinstance(t, FunctionTool) else t for t in agent.tools]
        clone.handoffs = [self._agent(h) if isinstance(h, Agent) else h for h in agent.handoffs]
        return clone

    def _runner_result(self, data: dict[str, Any]) -> RunnerCallResult:
        by_name = {a.name: a for a in self._agents.values()}
        return RunnerCallResult(
            final_output=data["final_output"], last_agent=by_name.get(data["last_agent"])
        )

    def _prepare(
        self, agent: Agent[Any], run_config: RunConfig | None
    ) -> tuple[Agent[Any], RunConfig]:
        config = run_config or RunConfig()
        provider = config.model_provider or MultiProvider()
        if not isinstance(provider, KitaruModelProvider):
            provider = KitaruModelProvider(provider, call_name=self._call_name)
        self._provider = provider.wrapped
        model = config.model
        if isinstance(model, Model) and not isinstance(model, KitaruModel):
            model = KitaruModel(
                model,
                call_name=self._call_name,
                model_name=_model_name(model),
                provider=self._provider,
            )
        self._agents = {}
        return self._agent(agent), dataclasses.replace(config, model_provider=provider, model=model)

    async def run(
        self,
        starting_agent: Agent[Any],
        input: Any,
        *,
        run_config: RunConfig | None = None,
        **kwargs: Any,
    ) -> Any:
        """``await Runner.run(...)`` with durable model and tool calls."""
        agent, config = self._prepare(starting_agent, run_config)
        if self.checkpoint_strategy == "runner_call":

            async def whole() -> dict[str, Any]:
                return _runner_data(await Runner.run(agent, input, run_config=config, **kwargs))

            data = await adapter_call_async(
                whole,
                adapter=ADAPTER,
                kind="runner_call",
                name=f"{self.name}_runner_call",
                call_type="llm_call",
            )
            return self._runner_result(data)
        return await Runner.run(agent, input, run_config=config, **kwargs)

    def run_sync(
        self,
        starting_agent: Agent[Any],
        input: Any,
        *,
        run_config: RunConfig | None = None,
        **kwargs: Any,
    ) -> Any:
        """``Runner.run_sync(...)`` with durable model and tool calls."""
        agent, config = self._prepare(starting_agent, run_config)
        if self.checkpoint_strategy == "runner_call":
            data = adapter_call(
                lambda: _runner_data(Runner.run_sync(agent, input, run_config=config, **kwargs)),
                adapter=ADAPTER,
                kind="runner_call",
                name=f"{self.name}_runner_call",
                call_type="llm_call",
            )
            return self._runner_result(data)
        return Runner.run_sync(agent, input, run_config=config, **kwargs)

    def run_streamed(
        self,
        starting_agent: Agent[Any],
        input: Any,
        *,
        run_config: RunConfig | None = None,
        **kwargs: Any,
    ) -> Any:
        """``Runner.run_streamed(...)``: model events are recorded and replayed."""
        if self.checkpoint_strategy == "runner_call":
            raise KitaruUsageError(
                "KitaruRunner.run_streamed() needs checkpoint_strategy='calls': a "
                "'runner_call' run is recorded whole, so it cannot stream."
            )
        agent, config = self._prepare(starting_agent, run_config)
        return Runner.run_streamed(agent, input, run_config=config, **kwargs)


__all__ = ["KitaruModel", "KitaruModelProvider", "KitaruRunner", "RunnerCallResult"]

"""PydanticAI adapter: ``KitaruAgent`` makes an agent's model requests and tool calls durable.

``KitaruAgent(agent)`` wraps an existing ``pydantic_ai.Agent``. Inside a
``@flow`` body each model request becomes a durable call of type ``llm_call``
(named ``<agent>_model_request``) and each tool call one of type ``tool_call``
(named ``<tool>_tool``): a resumed execution re-runs the agent from the top,
and every request and tool call that completed before the crash returns its
recorded result instead of reaching the provider or running again. Replay
reuses them before ``at`` and honours ``output``/``input``/``code`` overrides.
Inside a ``@checkpoint`` they run inline (the checkpoint is the durable unit)
and are listed in its metadata.

It is built on PydanticAI's own extension points: the agent runs with
``Agent.override(model=..., toolsets=...)``, the model wrapped in a
``WrapperModel`` and each toolset in a ``WrapperToolset``.

``hitl_tool`` / ``wait_for_input`` let the agent ask a person: the tool calls
``kitaru.wait()`` (typed by the tool's return annotation), so the execution
waits, releasing its process as any wait does, and continues with the answer.

Needs the ``pydantic-ai`` extra (``kitaru[pydantic-ai]``).
"""

from __future__ import annotations

import functools
import inspect
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import Any, Literal

from kitaru.adapters._requires import require

require("pydantic_ai", extra="pydantic-ai", feature="kitaru.adapters.pydantic_ai")

from pydantic_ai import Agent, RunContext, Tool  # noqa: E402
from pydantic_ai.messages import (  # noqa: E402
    ModelMessage,
    ModelMessagesTypeAdapter,
    ModelResponse,
)
from pydantic_ai.models import (  # noqa: E402
    CompletedStreamedResponse,
    Model,
    ModelRequestParameters,
    StreamedResponse,
    infer_model,
)
from pydantic_ai.models.wrapper import WrapperModel  # noqa: E402
from pydantic_ai.settings import ModelSettings  # noqa: E402
from pydantic_ai.toolsets import AbstractToolset  # noqa: E402
from pydantic_ai.toolsets.abstract import ToolsetTool  # noqa: E402
from pydantic_ai.toolsets.wrapper import WrapperToolset  # noqa: E402

from kitaru._runtime.context import current_checkpoint  # noqa: E402
from kitaru._runtime.durable_call import replay_model_override  # noqa: E402
from kitaru.adapters._calls import adapter_call, adapter_call_async  # noqa: E402
from kitaru.adapters._usage import record_request_usage  # noqa: E402
from kitaru.errors import KitaruContextError, KitaruUsageError  # noqa: E402
from kitaru.wait import wait  # noqa: E402

ADAPTER = "pydantic_ai"
Strategy = Literal["calls", "turn"]
#: Tool metadata marking a human-in-the-loop tool (it waits at flow scope, never a call).
_HITL = "kitaru_hitl"


# -- model requests ---------------------------------------------------------------------


def _dump(response: ModelResponse) -> dict[str, Any]:
    """A response as JSON data (stored as the call's output, readable by any client)."""
    data: dict[str, Any] = ModelMessagesTypeAdapter.dump_python([response], mode="json")[0]
    return data


def _load(data: dict[str, Any]) -> ModelResponse:
    message = ModelMessagesTypeAdapter.validate_python([data])[0]
    if not isinstance(message, ModelResponse):
        raise KitaruUsageError(
            f"A recorded PydanticAI model request holds a {type(message).__name__}, not a "
            "model response; a replay override of a model request must be a ModelResponse."
        )
    return message


def _record_usage(response: ModelResponse, model: Model, started: float) -> None:
    usage = response.usage
    record_request_usage(
        model=response.model_name or model.model_name,
        provider=response.provider_name or model.system,
        prompt_tokens=usage.input_tokens,
        completion_tokens=usage.output_tokens,
        latency_ms=(time.perf_counter() - started) * 1000,
        price_provider=response.provider_name or model.system,
    )


class KitaruModel(WrapperModel):
    """A model whose every request is a durable ``llm_call`` (streamed ones too)."""

    def __init__(self, wrapped: Model | str, *, call_name: str) -> None:
        super().__init__(wrapped)
        self.call_name = call_name

    def _replay_model(self) -> Model:
        """The wrapped model, or the one a replay's ``model`` override names for this call."""
        override = replay_model_override()
        return self.wrapped if override is None else infer_model(override)

    async def _durable(self, send: Callable[[], Any]) -> ModelResponse:
        data = await adapter_call_async(
            send, adapter=ADAPTER, kind="model_request", name=self.call_name, call_type="llm_call"
        )
        return _load(data)

    async def request(
        self,
        messages: list[ModelMessage],
        model_settings: ModelSettings | None,
        model_request_parameters: ModelRequestParameters,
    ) -> ModelResponse:
        async def send() -> dict[str, Any]:
            started = time.perf_counter()
            model = self._replay_model()
            response = await model.request(messages, model_settings, model_request_parameters)
            _record_usage(response, model, started)
            return _dump(response)

        return await self._durable(send)

    @asynccontextmanager
    async def request_stream(
        self,
        messages: list[ModelMessage],
        model_settings: ModelSettings | None,
        model_request_parameters: ModelRequestParameters,
        run_context: RunContext[Any] | None = None,
    ) -> AsyncIterator[StreamedResponse]:
        # The provider's stream is drained inside the durable call; the run then
        # streams the recorded response (the same events, without a second request).
        async def send() -> dict[str, Any]:
            started = time.perf_counter()
            model = self._replay_model()
            async with model.request_stream(
                messages, model_settings, model_request_parameters, run_context
            ) as streamed:
                async for _ in streamed:
                    pass
            response = streamed.get()
            _record_usage(response, model, started)
            return _dump(response)

        response = await self._durable(send)
        yield CompletedStreamedResponse(
            response, model_request_parameters=model_request_parameters, replay_events=True
        )


# -- tool calls -------------------------------------------------------------------------


@dataclass
class KitaruToolset(WrapperToolset[Any]):
    """A toolset whose every tool call is a durable ``tool_call`` named ``<tool>_tool``."""

    async def call_tool(
        self, name: str, tool_args: dict[str, Any], ctx: RunContext[Any], tool: ToolsetTool[Any]
    ) -> Any:
        if (tool.tool_def.metadata or {}).get(_HITL):
            # Waits belong to the flow body: never inside a durable call.
            return await self.wrapped.call_tool(name, tool_args, ctx, tool)

        async def run_tool(**arguments: Any) -> Any:
            return await self.wrapped.call_tool(name, arguments, ctx, tool)

        return await adapter_call_async(
            run_tool,
            (),
            tool_args,
            adapter=ADAPTER,
            kind="tool_call",
            name=f"{name}_tool",
            call_type="tool_call",
        )


# -- human in the loop ------------------------------------------------------------------


def wait_for_input(
    question: str,
    *,
    schema: Any = str,
    name: str | None = None,
    timeout: float | None = 600,
    metadata: dict[str, Any] | None = None,
) -> Any:
    """Ask a person from inside a tool: ``kitaru.wait()`` at flow scope, typed by ``schema``.

    The execution waits (releasing its process after ``timeout`` seconds) until
    someone answers with ``kitaru executions input`` or the client.
    """
    return wait(schema=schema, name=name, question=question, timeout=timeout, metadata=metadata)


def _require_flow_scope(tool_name: str) -> None:
    """A person's answer is a wait, and waits live in the flow body: say how to get there."""
    frame = current_checkpoint.get()
    if frame is None:
        return
    raise KitaruContextError(
        f"hitl_tool {tool_name!r} was called inside the durable call {frame.name!r} (a "
        "@checkpoint, or a KitaruAgent run with checkpoint_strategy='turn'), where it "
        "cannot wait for a person. Run the agent with KitaruAgent(agent) (the default "
        "checkpoint_strategy='calls') from the @flow body, not inside a @checkpoint."
    )


def hitl_tool(
    func: Callable[..., Any] | None = None,
    *,
    name: str | None = None,
    question: str | None = None,
    timeout: float | None = 600,
) -> Any:
    """A PydanticAI ``Tool`` that asks a person instead of running code.

    The decorated function's parameters are the tool's (the model fills them);
    its return annotation is the answer's type; its docstring is the tool's
    description. The person sees ``question`` (formatted with the arguments),
    else the ``question`` argument when the tool has one, else the arguments.
    Usable bare (``@hitl_tool``) or with options (``@hitl_tool(name=...)``).
    """

    def build(f: Callable[..., Any]) -> Tool[Any]:
        tool_name = name or f.__name__
        signature = inspect.signature(f)
        answer_type = signature.return_annotation
        if answer_type is inspect.Signature.empty or isinstance(answer_type, str):
            hints = inspect.get_annotations(f, eval_str=True)
            answer_type = hints.get("return", str)

        @functools.wraps(f)
        def ask(*args: Any, **kwargs: Any) -> Any:
            _require_flow_scope(tool_name)
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            arguments = dict(bound.arguments)
            if question is not None:
                text = question.format(**arguments)
            elif isinstance(arguments.get("question"), str):
                text = arguments["question"]
            else:
                text = f"{tool_name}({', '.join(f'{k}={v!r}' for k, v in arguments.items())})"
            return wait_for_input(
                text,
                schema=None if answer_type is None else answer_type,
                name=tool_name,
                timeout=timeout,
                metadata={"tool": tool_name, "arguments": arguments},
            )

        return Tool(ask, name=tool_name, takes_ctx=False, metadata={_HITL: True})

    if func is not None:
        return build(func)
    return build


# -- the agent --------------------------------------------------------------------------


class KitaruAgent:
    """A ``pydantic_ai.Agent`` whose model requests and tool calls are durable calls.

    ``run``, ``run_sync``, ``run_stream`` and ``iter`` take the agent's own
    arguments and return what it returns.

    ``checkpoint_strategy="turn"`` makes each ``run``/``run_sync`` one durable
    call instead (type ``llm_call``, named ``<agent>_turn``; its requests and
    tools are listed in that call's metadata and their usage recorded on it).
    It returns a :class:`TurnResult` (``output``, ``all_messages()``,
    ``new_messages()``); streaming runs and ``hitl_tool`` need ``"calls"``.
    """

    def __init__(
        self,
        agent: Agent[Any, Any],
        *,
        checkpoint_strategy: Strategy = "calls",
        name: str | None = None,
    ) -> None:
        if not isinstance(agent, Agent):
            raise KitaruUsageError(
                f"KitaruAgent wraps a pydantic_ai.Agent, got {type(agent).__name__}."
            )
        if checkpoint_strategy not in ("calls", "turn"):
            raise KitaruUsageError(
                f"checkpoint_strategy must be 'calls' (each model request and tool call is a "
                f"durable call) or 'turn' (one durable call per run), got {checkpoint_strategy!r}."
            )
        self.agent = agent
        self.checkpoint_strategy: Strategy = checkpoint_strategy
        self.name = name or agent.name or "agent"
        self._toolsets = [KitaruToolset(t) for t in agent.toolsets]

    @property
    def wrapped(self) -> Agent[Any, Any]:
        return self.agent

    @property
    def _turn_name(self) -> str:
        return f"{self.name}_turn"

    def _streaming(self, what: str) -> None:
        if self.checkpoint_strategy == "turn":
            raise KitaruUsageError(
                f"KitaruAgent.{what}() needs checkpoint_strategy='calls': a 'turn' run is "
                "recorded whole, so it cannot stream."
            )

    def _model(self, model: Model | str | None) -> Model:
        chosen = model if model is not None else self.agent.model
        if chosen is None:
            raise KitaruUsageError(
                f"Agent {self.name!r} has no model: pass model= to the agent or to the run."
            )
        if isinstance(chosen, KitaruModel):
            return chosen
        resolved = chosen if isinstance(chosen, Model) else infer_model(chosen)
        return KitaruModel(resolved, call_name=f"{self.name}_model_request")

    @contextmanager
    def _durable(
        self,
        model: Model | str | None,
        toolsets: Sequence[AbstractToolset[Any]] | None,
    ) -> Iterator[None]:
        extra = [KitaruToolset(t) for t in toolsets or ()]
        with self.agent.override(
            model=self._model(model), toolsets=[*self._toolsets, *extra], tools=[]
        ):
            yield

    async def run(
        self,
        user_prompt: Any = None,
        *,
        model: Model | str | None = None,
        toolsets: Sequence[AbstractToolset[Any]] | None = None,
        **kwargs: Any,
    ) -> Any:
        """``await agent.run(...)`` with durable model requests and tool calls."""
        if self.checkpoint_strategy == "turn":

            async def turn() -> dict[str, Any]:
                with self._durable(model, toolsets):
                    return _turn_data(await self.agent.run(user_prompt, **kwargs))

            data = await adapter_call_async(
                turn, adapter=ADAPTER, kind="turn", name=self._turn_name, call_type="llm_call"
            )
            return TurnResult.from_data(data)
        with self._durable(model, toolsets):
            return await _unwrapping_groups(self.agent.run(user_prompt, **kwargs))

    def run_sync(
        self,
        user_prompt: Any = None,
        *,
        model: Model | str | None = None,
        toolsets: Sequence[AbstractToolset[Any]] | None = None,
        **kwargs: Any,
    ) -> Any:
        """``agent.run_sync(...)`` with durable model requests and tool calls."""
        if self.checkpoint_strategy == "turn":

            def turn() -> dict[str, Any]:
                with self._durable(model, toolsets):
                    return _turn_data(self.agent.run_sync(user_prompt, **kwargs))

            data = adapter_call(
                turn, adapter=ADAPTER, kind="turn", name=self._turn_name, call_type="llm_call"
            )
            return TurnResult.from_data(data)
        with self._durable(model, toolsets):
            try:
                return self.agent.run_sync(user_prompt, **kwargs)
            except BaseExceptionGroup as group:
                raise _control_flow(group) from None

    @asynccontextmanager
    async def run_stream(
        self,
        user_prompt: Any = None,
        *,
        model: Model | str | None = None,
        toolsets: Sequence[AbstractToolset[Any]] | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[Any]:
        """``async with agent.run_stream(...) as result``: streams recorded responses."""
        self._streaming("run_stream")
        with self._durable(model, toolsets):
            async with self.agent.run_stream(user_prompt, **kwargs) as result:
                yield result

    def iter(
        self,
        user_prompt: Any = None,
        *,
        model: Model | str | None = None,
        toolsets: Sequence[AbstractToolset[Any]] | None = None,
        **kwargs: Any,
    ) -> AbstractAsyncContextManager[Any]:
        """``async with agent.iter(...) as run``: step through the graph, durably."""
        self._streaming("iter")

        @asynccontextmanager
        async def iterate() -> AsyncIterator[Any]:
            with self._durable(model, toolsets):
                async with self.agent.iter(user_prompt, **kwargs) as agent_run:
                    yield agent_run

        return iterate()


def _turn_data(result: Any) -> dict[str, Any]:
    return {
        "output": result.output,
        "messages": ModelMessagesTypeAdapter.dump_python(result.all_messages(), mode="json"),
        "new_from": len(result.all_messages()) - len(result.new_messages()),
    }


@dataclass(frozen=True)
class TurnResult:
    """What a ``checkpoint_strategy="turn"`` run returns (recorded as one durable call)."""

    output: Any
    messages: list[ModelMessage]
    new_from: int = 0

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> TurnResult:
        messages = ModelMessagesTypeAdapter.validate_python(data["messages"])
        return cls(output=data["output"], messages=messages, new_from=int(data["new_from"]))

    def all_messages(self) -> list[ModelMessage]:
        return list(self.messages)

    def new_messages(self) -> list[ModelMessage]:
        return list(self.messages[self.new_from :])


def _control_flow(group: BaseExceptionGroup[Any]) -> BaseException:
    """The Kitaru control-flow exception (wait released, cancelled) inside a task group's
    exception group, so the runner sees it as if raised directly; else the group."""
    members: Sequence[BaseException] = group.exceptions
    for exc in members:
        if isinstance(exc, BaseExceptionGroup):
            found = _control_flow(exc)
            if found is not exc:
                return found
        elif not isinstance(exc, Exception):
            return exc
    return group


async def _unwrapping_groups(awaitable: Any) -> Any:
    try:
        return await awaitable
    except BaseExceptionGroup as group:
        raise _control_flow(group) from None


__all__ = [
    "KitaruAgent",
    "KitaruModel",
    "KitaruToolset",
    "TurnResult",
    "hitl_tool",
    "wait_for_input",
]

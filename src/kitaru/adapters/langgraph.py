"""LangGraph adapter: ``KitaruGraphRunner`` runs a graph inside a Kitaru flow, durably.

``checkpoint_strategy="nodes"`` (the default) makes every node execution a
durable call (type ``node``, named ``<node>_node``): on resume the nodes that
completed return their recorded state updates without running again, and a
replay reuses or reruns them like checkpoints. ``"graph_call"`` records one
durable call per ``invoke``/``ainvoke``/``stream`` (its final state or chunks).

Nodes are wrapped where LangGraph builds them (the ``StateGraph``'s node
runnables), so routing, reducers, retries and a LangGraph checkpointer you
compiled with stay LangGraph's own. Node updates must be values Kitaru can
store (JSON, Pydantic, dataclasses; else cloudpickle when allowed). A node that
calls LangGraph's ``interrupt()`` pauses the graph as LangGraph does (its call
records the interrupt, not a failure); ``Command(resume=...)`` runs it again.

Needs the ``langgraph`` extra (``kitaru[langgraph]``).
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import AsyncIterator, Iterator
from typing import Any, Literal, cast

from kitaru.adapters._requires import require

require("langgraph", extra="langgraph", feature="kitaru.adapters.langgraph")

from langchain_core.runnables import Runnable, RunnableConfig, RunnableLambda  # noqa: E402
from langgraph.errors import GraphInterrupt  # noqa: E402
from langgraph.graph.state import CompiledStateGraph, StateGraph  # noqa: E402
from langgraph.types import Interrupt  # noqa: E402

from kitaru.adapters._calls import adapter_call, adapter_call_async  # noqa: E402
from kitaru.errors import KitaruUsageError  # noqa: E402

ADAPTER = "langgraph"
NODE_CALL_TYPE = "node"
GRAPH_CALL_TYPE = "graph_call"
Strategy = Literal["graph_call", "nodes"]
_STRATEGIES = ("graph_call", "nodes")
#: Key of a node call's recorded output when the node called ``interrupt()``.
INTERRUPT_KEY = "kitaru_langgraph_interrupt"


# A node that calls LangGraph's ``interrupt()`` has not failed: it pauses the graph,
# and resuming with ``Command(resume=...)`` runs it again (a new durable call, as each
# invoke's nodes are). So its durable call records the interrupt as its outcome, and
# the interrupt is raised again outside the call, to LangGraph, on every run that
# reaches that call (a Kitaru resume included).
def _interrupt_record(interrupt: GraphInterrupt) -> dict[str, Any]:
    raised = interrupt.args[0] if interrupt.args else ()
    return {
        INTERRUPT_KEY: [{"value": i.value, "id": i.id} for i in raised if isinstance(i, Interrupt)]
    }


def _reraise_interrupt(output: Any) -> Any:
    if isinstance(output, dict) and set(output) == {INTERRUPT_KEY}:
        raise GraphInterrupt(
            [Interrupt(value=i["value"], id=i["id"]) for i in output[INTERRUPT_KEY]]
        )
    return output


def _durable_node(name: str, node: Runnable[Any, Any]) -> Runnable[Any, Any]:
    """``node`` as a runnable whose every execution is a durable call."""
    call_name = f"{name}_node"

    def invoke(state: Any, config: RunnableConfig) -> Any:
        try:
            return node.invoke(state, config)
        except GraphInterrupt as interrupt:
            return _interrupt_record(interrupt)

    def run(state: Any, config: RunnableConfig) -> Any:
        output = adapter_call(
            lambda: invoke(state, config),
            adapter=ADAPTER,
            kind="node",
            name=call_name,
            call_type=NODE_CALL_TYPE,
            concurrent=True,  # a superstep's nodes run side by side
        )
        return _reraise_interrupt(output)

    async def arun(state: Any, config: RunnableConfig) -> Any:
        async def ainvoke() -> Any:
            try:
                return await node.ainvoke(state, config)
            except GraphInterrupt as interrupt:
                return _interrupt_record(interrupt)

        output = await adapter_call_async(
            ainvoke, adapter=ADAPTER, kind="node", name=call_name, call_type=NODE_CALL_TYPE
        )
        return _reraise_interrupt(output)

    return RunnableLambda(run, afunc=arun, name=name)


def _with_durable_nodes(
    graph: StateGraph[Any] | CompiledStateGraph[Any],
) -> CompiledStateGraph[Any]:
    """The graph compiled again from a copy of its builder whose nodes are durable."""
    if isinstance(graph, CompiledStateGraph):
        builder: StateGraph[Any] = graph.builder
        options: dict[str, Any] = {
            "checkpointer": graph.checkpointer,
            "store": graph.store,
            "cache": graph.cache,
            "interrupt_before": graph.interrupt_before_nodes or None,
            "interrupt_after": graph.interrupt_after_nodes or None,
            "debug": graph.debug,
            "name": graph.name,
        }
    else:
        builder, options = graph, {}
    clone = copy.copy(builder)
    clone.nodes = {
        # add_node already made every node a Runnable (coerce_to_runnable).
        name: dataclasses.replace(
            spec, runnable=_durable_node(name, cast(Runnable[Any, Any], spec.runnable))
        )
        for name, spec in builder.nodes.items()
    }
    return clone.compile(**options)


class KitaruGraphRunner:
    """Run a LangGraph graph with durable node executions (or one durable call per run).

    ``graph`` is a ``StateGraph`` (compiled here) or a compiled graph (its
    builder is compiled again with the same checkpointer, store and
    interrupts). Use it in a ``@flow`` body; inside a ``@checkpoint`` the nodes
    run inline and the checkpoint is the durable unit.
    """

    def __init__(
        self,
        graph: StateGraph[Any] | CompiledStateGraph[Any],
        *,
        checkpoint_strategy: Strategy = "nodes",
        name: str | None = None,
    ) -> None:
        if checkpoint_strategy not in _STRATEGIES:
            raise KitaruUsageError(
                f"checkpoint_strategy must be 'nodes' or 'graph_call', got {checkpoint_strategy!r}."
            )
        if not isinstance(graph, StateGraph | CompiledStateGraph):
            raise KitaruUsageError(
                f"KitaruGraphRunner takes a langgraph StateGraph or compiled graph, got "
                f"{type(graph).__name__}."
            )
        self.checkpoint_strategy: Strategy = checkpoint_strategy
        if checkpoint_strategy == "nodes":
            self.graph = _with_durable_nodes(graph)
        else:
            self.graph = graph.compile() if isinstance(graph, StateGraph) else graph
        #: Name of the durable call of a whole run ("graph_call").
        self.call_name = f"{name or self.graph.name or 'graph'}_graph"

    def _whole(self, func: Any, *args: Any) -> Any:
        return adapter_call(
            func,
            args,
            adapter=ADAPTER,
            kind="graph_call",
            name=self.call_name,
            call_type=GRAPH_CALL_TYPE,
        )

    def invoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        """``graph.invoke(...)``: the final state (or output), as LangGraph returns it."""
        if self.checkpoint_strategy == "nodes":
            return self.graph.invoke(input, config, **kwargs)
        return self._whole(lambda: self.graph.invoke(input, config, **kwargs))

    async def ainvoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        """``await graph.ainvoke(...)``."""
        if self.checkpoint_strategy == "nodes":
            return await self.graph.ainvoke(input, config, **kwargs)

        async def run() -> Any:
            return await self.graph.ainvoke(input, config, **kwargs)

        return await adapter_call_async(
            run,
            adapter=ADAPTER,
            kind="graph_call",
            name=self.call_name,
            call_type=GRAPH_CALL_TYPE,
        )

    def stream(
        self, input: Any, config: RunnableConfig | None = None, **kwargs: Any
    ) -> Iterator[Any]:
        """``graph.stream(...)``. With ``"graph_call"`` the chunks are recorded as one list
        (the run completes before the first chunk is yielded)."""
        if self.checkpoint_strategy == "nodes":
            yield from self.graph.stream(input, config, **kwargs)
            return
        yield from self._whole(lambda: list(self.graph.stream(input, config, **kwargs)))

    async def astream(
        self, input: Any, config: RunnableConfig | None = None, **kwargs: Any
    ) -> AsyncIterator[Any]:
        """``graph.astream(...)`` (see :meth:`stream`)."""
        if self.checkpoint_strategy == "nodes":
            async for chunk in self.graph.astream(input, config, **kwargs):
                yield chunk
            return

        async def run() -> list[Any]:
            return [chunk async for chunk in self.graph.astream(input, config, **kwargs)]

        chunks = await adapter_call_async(
            run,
            adapter=ADAPTER,
            kind="graph_call",
            name=self.call_name,
            call_type=GRAPH_CALL_TYPE,
        )
        for chunk in chunks:
            yield chunk


__all__ = ["KitaruGraphRunner"]

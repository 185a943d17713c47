"""LangGraph flows for tests/adapters (imported by the test process and by children)."""

from __future__ import annotations

import asyncio
import operator
import os
import time
from typing import Annotated, Any, TypedDict

from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph
from langgraph.types import Command, interrupt

from kitaru import checkpoint, flow
from kitaru.adapters.langgraph import KitaruGraphRunner
from tests.adapters._support import hang_if, note


class State(TypedDict):
    n: int
    trail: Annotated[list[str], operator.add]


def _node(name: str, step: Any) -> Any:
    def run(state: State) -> dict[str, Any]:
        note(name)
        hang_if(name)
        return {"n": step(state["n"]), "trail": [name]}

    return run


def build() -> StateGraph[State]:
    graph: StateGraph[State] = StateGraph(State)
    graph.add_node("plus", _node("plus", lambda n: n + 1))
    graph.add_node("double", _node("double", lambda n: n * 2))
    graph.add_node("square", _node("square", lambda n: n * n))
    graph.add_edge(START, "plus")
    graph.add_edge("plus", "double")
    graph.add_edge("double", "square")
    graph.add_edge("square", END)
    return graph


def build_parallel() -> StateGraph[State]:
    """left and right run side by side (one superstep), then join."""
    graph: StateGraph[State] = StateGraph(State)

    # LangGraph starts left first: on resume the unfinished node is the first to begin
    # (and goes live) while right, which finished, is reached after it.
    def left(state: State) -> dict[str, Any]:
        note("left")
        if os.environ.get("KT_HANG_IN") == "left":
            time.sleep(0.5)  # right, running beside it, has finished and been recorded
        hang_if("left")
        return {"trail": ["left"]}

    def right(state: State) -> dict[str, Any]:
        note("right")
        return {"trail": ["right"]}

    graph.add_node("left", left)
    graph.add_node("right", right)
    graph.add_node("join", _node("join", lambda n: n + 100))
    graph.add_edge(START, "left")
    graph.add_edge(START, "right")
    graph.add_edge(["left", "right"], "join")
    graph.add_edge("join", END)
    return graph


@flow(cache=False)
def parallel_flow(n: int) -> list[str]:
    return list(KitaruGraphRunner(build_parallel()).invoke({"n": n, "trail": []})["trail"])


@flow(cache=False)
def nodes_flow(n: int) -> dict[str, Any]:
    return dict(KitaruGraphRunner(build().compile()).invoke({"n": n, "trail": []}))


@flow(cache=False)
def streaming_flow(n: int) -> list[Any]:
    runner = KitaruGraphRunner(build())
    return list(runner.stream({"n": n, "trail": []}, stream_mode="updates"))


@flow(cache=False)
def async_graph_call_flow(n: int) -> dict[str, Any]:
    runner = KitaruGraphRunner(build(), checkpoint_strategy="graph_call", name="numbers")
    return dict(asyncio.run(runner.ainvoke({"n": n, "trail": []})))


@checkpoint
def graph_step(n: int) -> dict[str, Any]:
    return dict(KitaruGraphRunner(build()).invoke({"n": n, "trail": []}))


@flow(cache=False)
def in_checkpoint_flow(n: int) -> dict[str, Any]:
    return graph_step(n)


def main(which: str = "nodes") -> None:
    handle = (parallel_flow if which == "parallel" else nodes_flow).run(2)
    print(handle.exec_id, flush=True)
    handle.wait()


def build_asking() -> StateGraph[State]:
    """plus, then ask: LangGraph's interrupt() pauses the graph for a number to add."""
    graph: StateGraph[State] = StateGraph(State)

    def ask(state: State) -> dict[str, Any]:
        note("ask")
        answer = interrupt(f"add what to {state['n']}?")
        return {"n": state["n"] + int(answer), "trail": ["ask"]}

    graph.add_node("plus", _node("plus", lambda n: n + 1))
    graph.add_node("ask", ask)
    graph.add_edge(START, "plus")
    graph.add_edge("plus", "ask")
    graph.add_edge("ask", END)
    return graph


@flow(cache=False)
def interrupt_flow(n: int) -> dict[str, Any]:
    runner = KitaruGraphRunner(build_asking().compile(checkpointer=InMemorySaver()))
    config: Any = {"configurable": {"thread_id": "t"}}
    paused = runner.invoke({"n": n, "trail": []}, config)
    questions = [i.value for i in paused["__interrupt__"]]
    final = runner.invoke(Command(resume=5), config)
    return {"questions": questions, "final": final}


@flow(cache=False)
def async_interrupt_flow(n: int) -> dict[str, Any]:
    async def run() -> dict[str, Any]:
        runner = KitaruGraphRunner(build_asking().compile(checkpointer=InMemorySaver()))
        config: Any = {"configurable": {"thread_id": "t"}}
        paused = await runner.ainvoke({"n": n, "trail": []}, config)
        questions = [i.value for i in paused["__interrupt__"]]
        final = await runner.ainvoke(Command(resume=5), config)
        return {"questions": questions, "final": final}

    return asyncio.run(run())

"""A LangGraph graph whose node executions are durable Kitaru calls (offline).

    python examples/langgraph_agent.py

Each node (``research_node``, ``write_node``) is recorded as its own call:
resume a crashed execution and the nodes that finished are not run again.
"""

from __future__ import annotations

import operator
from typing import Annotated, TypedDict

from langgraph.graph import END, START, StateGraph

from kitaru import KitaruClient, flow
from kitaru.adapters.langgraph import KitaruGraphRunner


class State(TypedDict):
    topic: str
    notes: Annotated[list[str], operator.add]
    draft: str


def research(state: State) -> dict[str, object]:
    return {"notes": [f"{state['topic']} resumes where it stopped"]}


def write(state: State) -> dict[str, object]:
    return {"draft": f"About {state['topic']}: " + "; ".join(state["notes"])}


def build() -> StateGraph[State]:
    graph: StateGraph[State] = StateGraph(State)
    graph.add_node("research", research)
    graph.add_node("write", write)
    graph.add_edge(START, "research")
    graph.add_edge("research", "write")
    graph.add_edge("write", END)
    return graph


@flow
def article(topic: str) -> str:
    final = KitaruGraphRunner(build()).invoke({"topic": topic, "notes": [], "draft": ""})
    return str(final["draft"])


if __name__ == "__main__":
    handle = article.run("durable execution")
    print(handle.wait())
    for call in KitaruClient().executions.get(handle.exec_id).checkpoints:
        print(f"  {call.call_id:16} {call.checkpoint_type:6} {call.adapter}")

"""A small research agent, entirely offline, on Kitaru's embedded store.

Run it twice: the second run's checkpoints are served from the cross-run
cache (status "cached") instead of being paid for again.

    ./dev demo        (or: python examples/quickstart.py "your question")
"""

from __future__ import annotations

import sys
import time

from pydantic import BaseModel

import kitaru
from kitaru import checkpoint, flow
from kitaru.client import KitaruClient
from kitaru.config import resolve_artifacts_root, resolve_store_url

DOCUMENTS = {
    "durable execution": "Durable execution persists each step so a crashed run resumes.",
    "checkpoint": "A checkpoint stores a step's return value; replays reuse it.",
    "agents": "AI agents chain LLM calls and tool calls; each call costs money.",
    "sqlite": "SQLite in WAL mode commits durably in about a millisecond.",
}


class Plan(BaseModel):
    question: str
    topics: list[str]


class Answer(BaseModel):
    question: str
    summary: str
    sources: list[str]


@checkpoint(type="llm_call")
def plan(question: str) -> Plan:
    """Stands in for an LLM planning call."""
    time.sleep(0.05)  # pretend latency
    words = question.lower()
    topics = [topic for topic in DOCUMENTS if any(w in words for w in topic.split())]
    return Plan(question=question, topics=topics or ["agents"])


@checkpoint(type="tool_call")
def search(topic: str) -> str:
    """Stands in for a search tool."""
    time.sleep(0.02)
    kitaru.log(tool="search", topic=topic)
    return DOCUMENTS[topic]


@checkpoint(type="llm_call")
def write_answer(the_plan: Plan, notes: list[str]) -> Answer:
    """Stands in for an LLM writing call."""
    time.sleep(0.05)
    return Answer(
        question=the_plan.question,
        summary=" ".join(notes),
        sources=[f"doc:{topic}" for topic in the_plan.topics],
    )


@flow
def research_agent(question: str) -> Answer:
    the_plan = plan(question)
    # Tool calls run concurrently; their call ids follow submission order.
    notes = [future.result() for future in search.map(the_plan.topics)]
    return write_answer(the_plan, notes)


def main() -> None:
    question = " ".join(sys.argv[1:]) or "How do durable checkpoints help AI agents?"
    handle = research_agent.run(question=question)
    answer = handle.wait()
    execution = KitaruClient().executions.get(handle.exec_id)
    print(f"Question:   {answer.question}")
    print(f"Answer:     {answer.summary}")
    print(f"Sources:    {', '.join(answer.sources)}")
    print(f"Execution:  {handle.exec_id} ({handle.status.value})")
    for call in execution.checkpoints:
        duration = (call.duration or 0) * 1000
        print(f"  - {call.call_id:<12} {call.status.value:<9} {duration:7.1f} ms")
    print(f"Stack:      {kitaru.current_stack().name}")
    print(f"Metadata:   {resolve_store_url()}")
    print(f"Artifacts:  {resolve_artifacts_root()}")
    print(f"Inspect it: kitaru executions get {handle.exec_id}")


if __name__ == "__main__":
    main()

"""Flows that the MCP tests start through ``kitaru_executions_run`` (loaded by file path)."""

from __future__ import annotations

import kitaru
from kitaru import checkpoint, flow


@checkpoint
def draft(topic: str) -> str:
    print(f"drafting {topic}")
    return f"draft about {topic}"


@checkpoint
def publish(text: str, approved: bool) -> dict[str, object]:
    return {"text": text, "approved": approved}


@flow(cache=False)
def review(topic: str) -> dict[str, object]:
    text = draft(topic)
    kitaru.save("notes", {"topic": topic})
    approved = kitaru.wait(schema=bool, name="approve", question=f"Publish {text!r}?")
    return publish(text, approved)


@checkpoint
def read_note(path: str) -> str:
    with open(path, encoding="utf-8") as note:  # fails until the test writes it
        return note.read()


@flow(cache=False)
def fragile(path: str) -> str:
    return read_note(path)


@flow(cache=False)
def child(x: int) -> int:
    return x * 2


@flow(cache=False)
def parent(x: int) -> int:
    return child.run(x).wait()

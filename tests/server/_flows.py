"""Flows the server tests run in the test process (importable as tests.server._flows)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from pydantic import BaseModel

import kitaru
from kitaru import checkpoint, flow


class Approval(BaseModel):
    approved: bool
    reviewer: str


@checkpoint(cache=False)
def add(a: int, b: int) -> int:
    print(f"adding {a} and {b}")
    return a + b


@checkpoint(cache=False)
def boom(x: int) -> int:
    raise ValueError(f"boom {x}")


@flow(cache=False)
def adder(x: int) -> int:
    return add(x, 1)


@flow(cache=False)
def failing(x: int) -> int:
    add(x, 1)
    return boom(x)


@flow(cache=False)
def approval(x: int) -> str:
    first = add(x, 1)
    answer = kitaru.wait(schema=Approval, name="review", question="Ship it?")
    return f"{first}:{answer.approved}:{answer.reviewer}"


@flow(cache=False)
def gate(x: int) -> int:
    kitaru.wait(name="go")
    return add(x, 2)


@checkpoint(cache=False)
def slow(x: int, marker: str) -> int:
    Path(marker).write_text("started")
    if os.environ.get("KITARU_TEST_SLOW") == "1":
        time.sleep(120)  # killed here
    return x * 10


@flow(cache=False)
def crashy(x: int, marker: str) -> int:
    return add(slow(x, marker), 1)


@checkpoint(cache=False)
def bulky(n: int) -> str:
    return "x" * n  # above the inline limit: stored as a blob


@flow(cache=False)
def big_crashy(n: int, marker: str) -> int:
    data = bulky(n)
    return len(data) + slow(len(data), marker)


@checkpoint(type="tool_call", cache=False)
def shell_tool(command: str) -> str:
    return f"ran {command}"


@flow(cache=False)
def tooling(command: str) -> str:
    return shell_tool(command)


@checkpoint(cache=False)
def texty(n: int) -> str:
    return "y" * n  # under the inline limit: kept in the call row


@flow(cache=False)
def textflow(n: int) -> str:
    return texty(n)


@checkpoint(cache=False)
def chatter(lines: int) -> int:
    for i in range(lines):
        print(f"line {i:05d} " + "z" * 100)
    return lines


@flow(cache=False)
def chatty_flow(lines: int) -> int:
    return chatter(lines)


@checkpoint(cache=False)
def paced(i: int, log: str) -> int:
    """Appends one line per run to ``log`` (O_APPEND: every run counts), then pauses."""
    with open(log, "a") as out:
        out.write(f"{i}\n")
    time.sleep(0.3)
    return i


@flow(cache=False)
def paced_flow(n: int, log: str) -> int:
    return sum(paced(i, log) for i in range(n))

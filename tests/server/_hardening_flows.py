"""Flows of the server hardening tests (importable as tests.server._hardening_flows:
workers and runners in other processes load them from here)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel

import kitaru
from kitaru import checkpoint, flow


class Review(BaseModel):
    score: int
    comment: str = "ok"


@flow(cache=False)
def reviewed(x: int) -> str:
    # timeout=0: the runner lets go at once, so the answer needs someone to resume it.
    review = kitaru.wait(schema=Review, name="review", timeout=0)
    return f"{review.score}:{review.comment}"


@flow(cache=False)
def measured(x: int) -> float:
    value: float = kitaru.wait(schema=float, name="f")
    return value


@flow(cache=False)
def texted(x: int) -> int:
    text: str = kitaru.wait(schema=str, name="s")
    return len(text)


@flow(cache=False)
def dated(x: int) -> str:
    when: datetime = kitaru.wait(schema=datetime, name="when")
    return when.isoformat()


@checkpoint(cache=False)
def shout(n: int) -> int:
    print("é" * n)  # one line, larger than a server's request body limit
    return n


@flow(cache=False)
def loud(n: int) -> int:
    return shout(n)


@checkpoint(cache=False)
def step(i: int) -> int:
    return i


@flow(cache=False)
def steps(n: int) -> int:
    return sum(step(i) for i in range(n))

"""Flows the dashboard tests run in the test process (the server only reads the store)."""

from __future__ import annotations

import threading
from typing import Literal

from pydantic import BaseModel

import kitaru
from kitaru import checkpoint, flow

_lock = threading.Lock()
_flaky_calls: dict[int, int] = {}


class Review(BaseModel):
    approved: bool
    reviewer: str
    score: int
    tags: list[str] = []


@checkpoint(cache=True)
def fetch(url: str) -> dict[str, str]:
    return {"url": url, "body": f"content of {url}"}


@checkpoint(cache=False)
def square(x: int) -> int:
    return x * x


@checkpoint(retries=2, cache=False)
def flaky(key: int) -> str:
    """Fails on its first attempt for each key, then succeeds."""
    with _lock:
        _flaky_calls[key] = _flaky_calls.get(key, 0) + 1
        attempt = _flaky_calls[key]
    if attempt == 1:
        raise RuntimeError(f"transient failure {key}")
    return f"ok after {attempt}"


@checkpoint(cache=False)
def shout(text: str) -> str:
    print(f"<script>alert('{text}')</script> <b>bold?</b>")
    return f"<img src=x onerror=alert(1)>{text}"


@checkpoint(cache=False)
def raw() -> bytes:
    return b"\x00\x01binary"


@checkpoint(cache=False)
def odd() -> set[int]:
    return {1, 2}  # a set is stored with cloudpickle


@flow
def showcase(key: int) -> int:
    """A cache hit (on the second run), a retried call and a fan-out of four."""
    fetch("https://example.invalid/doc")
    flaky(key)
    futures = [square.submit(i) for i in range(4)]
    total = sum(f.result() for f in futures)
    shout("hi")
    raw()
    odd()
    return total


@checkpoint(cache=False)
def boom(x: int) -> int:
    raise ValueError(f"boom {x}")


@flow(cache=False)
def failing(x: int) -> int:
    square(x)
    return boom(x)


@flow(cache=False)
def reviewed(x: int) -> str:
    first = square(x)
    answer = kitaru.wait(schema=Review, name="review", question="Ship <it>?")
    return f"{first}:{answer.approved}:{answer.reviewer}:{answer.score}"


@flow(cache=False)
def adder(x: int) -> int:
    return square(x) + 1


_gates: dict[int, threading.Event] = {}


def gate(key: int) -> threading.Event:
    """The event ``chatty(key)`` waits for between its two log lines."""
    with _lock:
        return _gates.setdefault(key, threading.Event())


@checkpoint(cache=False)
def say(text: str) -> str:
    print(text)
    return text


@flow(cache=False)
def chatty(key: int) -> str:
    """Prints a line, stays running until the test opens the gate, prints another."""
    say(f"first line {key}")
    gate(key).wait(60)
    return say(f"later line {key}")


@flow(cache=False)
def parked(x: int) -> int:
    """Its runner lets go at the wait at once: answered, it needs a resume (or a worker)."""
    kitaru.wait(name="go", timeout=0)
    return square(x)


@flow(cache=False)
def square_flow(x: int) -> int:
    """Only the pagination test runs it: its list filtered by flow is exactly its runs."""
    return square(x)


@checkpoint(cache=False)
def slow(i: int) -> int:
    return i * 10


@flow(cache=False)
def repeated(n: int) -> list[int]:
    """One checkpoint called n times: call ids ``slow``, ``slow:2``, ... ``slow:n``."""
    return [slow(i) for i in range(n)]


class Note(BaseModel):
    reviewer: str
    ok: bool = True


class Deep(BaseModel):
    tags: list[str]
    level: Literal["low", "high"]
    inner: Note | None = None


@flow(cache=False)
def deep_review(x: int) -> str:
    """A wait whose schema has a list, an enum and an optional nested model."""
    answer = kitaru.wait(schema=Deep, name="deep", question="How deep?")
    inner = "none" if answer.inner is None else f"{answer.inner.reviewer}:{answer.inner.ok}"
    return f"{answer.level}:{','.join(answer.tags)}:{inner}"

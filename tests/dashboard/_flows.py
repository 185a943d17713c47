"""Flows the dashboard tests run in the test process (the server only reads the store)."""

from __future__ import annotations

import threading

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

"""Flows the wait tests run, here and in child processes.

Imported as ``tests.waits._flows`` by the test process and by children (which
get the repository root on ``PYTHONPATH``), so an execution started in one
process can be resumed in another. Every flow sets ``cache=False``: the tests
look at what really ran, not at outputs reused from earlier executions.

``SEEN`` records what ``kitaru.wait()`` returned in this process, by execution
id, so a test can check the exact Python type (a model instance, a list of
them) of an answer; ``STARTED`` records when (``time.perf_counter()``) the
checkpoint after a wait started.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel, TypeAdapter

import kitaru
from kitaru import KitaruWaitAbortedError, checkpoint, flow


class Plan(BaseModel):
    title: str
    steps: int = 1


SCHEMAS: dict[str, Any] = {
    "none": None,
    "bool": bool,
    "int": int,
    "bigint": int,
    "float": float,
    "str": str,
    "dict": dict,
    "model": Plan,
    "list": list[Plan],
}

SEEN: dict[str, list[Any]] = {}
STARTED: dict[str, float] = {}
_seen_lock = threading.Lock()


def _exec_id() -> str:
    exec_id = kitaru.current_execution_id()
    assert exec_id is not None
    return exec_id


def _saw(value: Any) -> None:
    with _seen_lock:
        SEEN.setdefault(_exec_id(), []).append(value)


def where() -> dict[str, Any]:
    thread = threading.current_thread()
    return {"pid": os.getpid(), "thread": thread.name, "ident": thread.ident}


@checkpoint
def before(tag: str) -> dict[str, Any]:
    return where()


@checkpoint
def after(tag: str) -> dict[str, Any]:
    STARTED[_exec_id()] = time.perf_counter()
    return where()


@checkpoint
def step(tag: str) -> str:
    return tag


# --- one wait, any schema -------------------------------------------------------------


@flow(cache=False)
def typed(kind: str, timeout: float | None = 30) -> dict[str, Any]:
    """One wait with the schema named ``kind``; returns what it got, as data."""
    first = before(kind)
    value = kitaru.wait(
        schema=SCHEMAS[kind],
        name=f"ask-{kind}",
        question=f"Give me a {kind}",
        timeout=timeout,
        metadata={"kind": kind, "nested": {"n": 1}},
    )
    _saw(value)
    second = after(kind)
    adapter: TypeAdapter[Any] = TypeAdapter(SCHEMAS[kind])
    return {
        "type": type(value).__name__,
        "item_types": [type(v).__name__ for v in value] if isinstance(value, list) else None,
        "data": None if SCHEMAS[kind] is None else adapter.dump_python(value, mode="json"),
        "before": first,
        "after": second,
    }


@flow(cache=False)
def gate(timeout: float | None = 30) -> str:
    step("one")
    result = kitaru.wait(question="Continue?", timeout=timeout)
    _saw(result)
    step("two")
    return "through" if result is None else f"unexpected {result!r}"


# --- several waits --------------------------------------------------------------------


@flow(cache=False)
def approval_then_plan(
    timeout: float | None = 0.3, plan_timeout: float | None = -1
) -> dict[str, Any]:
    """The two-wait flow: a bool approval, then a Pydantic model (-1: same timeout)."""
    first = before("approval")
    approved = kitaru.wait(
        schema=bool, name="approval", question="Approve the rollout?", timeout=timeout
    )
    if not approved:
        return {"approved": False}
    plan = kitaru.wait(
        schema=Plan,
        name="plan",
        question="Which plan?",
        timeout=timeout if plan_timeout == -1 else plan_timeout,
    )
    _saw(plan)
    done = after(plan.title)
    return {
        "approved": approved,
        "plan": plan.model_dump(),
        "plan_type": type(plan).__name__,
        "before": first,
        "after": done,
    }


@flow(cache=False)
def three_waits(timeout: float | None = 0) -> list[Any]:
    """Ids by order and by name: ``wait``, ``review``, ``wait:2``."""
    answers = [kitaru.wait(schema=int, question="first", timeout=timeout)]
    step("a")
    answers.append(kitaru.wait(schema=str, name="review", question="second", timeout=timeout))
    step("b")
    answers.append(kitaru.wait(schema=int, question="third", timeout=timeout))
    step("c")
    return answers


@flow(cache=False)
def branching(state: str, timeout: float | None = 0) -> Any:
    """The wait's name comes from a file: a resumed body may reach another wait."""
    name = Path(state).read_text(encoding="utf-8").strip()
    return kitaru.wait(schema=bool, name=name, timeout=timeout)


# --- abort ----------------------------------------------------------------------------


@flow(cache=False)
def abortable(catch: bool, timeout: float | None = 30) -> dict[str, Any]:
    try:
        value = kitaru.wait(schema=bool, name="go", question="Go?", timeout=timeout)
    except KitaruWaitAbortedError as exc:
        if not catch:
            raise
        step("rejected")
        return {"aborted": True, "wait": exc.wait, "exec_id": exc.exec_id}
    return {"aborted": False, "value": value}


# --- misuse ---------------------------------------------------------------------------


@checkpoint
def waits_inside() -> Any:
    return kitaru.wait(schema=bool, timeout=0)


@flow(cache=False)
def wait_in_checkpoint() -> Any:
    return waits_inside()


@flow(cache=False)
def bad_timeout() -> Any:
    return kitaru.wait(schema=bool, timeout=-1)


@flow
def bad_wait_argument(arguments: dict[str, Any]) -> Any:
    return kitaru.wait(schema=bool, **arguments)


# --- retries and replays --------------------------------------------------------------


@checkpoint
def fails_once(marker: str) -> str:
    path = Path(marker)
    if not path.exists():
        path.write_text("failed", encoding="utf-8")
        raise RuntimeError("transient failure")
    return "ok"


def _flaky_body(marker: str, timeout: float | None) -> dict[str, Any]:
    fails_once(marker)
    value = kitaru.wait(schema=int, name="number", timeout=timeout)
    _saw(value)
    return {"value": value, "replay": kitaru.is_replay()}


@flow(cache=False, retries=1)
def flaky_with_retries(marker: str, timeout: float | None = 30) -> dict[str, Any]:
    return _flaky_body(marker, timeout)


@flow(cache=False)
def flaky(marker: str, timeout: float | None = 30) -> dict[str, Any]:
    return _flaky_body(marker, timeout)


@flow(cache=False)
def ask_between(timeout: float | None = 0) -> dict[str, Any]:
    step("a")
    value = kitaru.wait(schema=int, name="number", timeout=timeout)
    tail = step(f"b-{value}")
    return {"value": value, "tail": tail, "replay": kitaru.is_replay()}


# --- scale ----------------------------------------------------------------------------


@checkpoint
def combine(i: int, answer: int) -> int:
    return i * 1000 + answer


@flow(cache=False)
def numbered(i: int, timeout: float | None = 0) -> int:
    answer = kitaru.wait(schema=int, name="n", timeout=timeout)
    return combine(i, answer)


# --- child process entry points --------------------------------------------------------


def tty_main(kind: str, timeout: float) -> None:
    """Run ``typed(kind)`` and block in ``handle.wait()`` (which prompts on a TTY)."""
    handle = typed.run(kind, timeout)
    print(f"EXEC {handle.exec_id}", flush=True)
    result = handle.wait(timeout=60)
    print(f"RESULT {result['data']!r} {result['type']}", flush=True)


@checkpoint(cache=False)
def before_the_question(x: int) -> int:
    return x * 10


@checkpoint(cache=False)
def after_the_answer(base: int, answer: int) -> int:
    return base + answer


@flow(cache=False)
def asks_in_between(x: int) -> int:
    """A checkpoint, a question, a checkpoint: replays from the second need no answer."""
    base = before_the_question(x)
    answer = kitaru.wait(schema=int, name="num", timeout=30)
    return after_the_answer(base, answer)


@checkpoint
def echo(message: str) -> str:
    return "echo:" + message


@flow(cache=False)
def chat(turns: int, timeout: float | None = 30) -> list[str]:
    """The same named wait in a loop: asked again each time round."""
    replies = []
    for _ in range(turns):
        message = kitaru.wait(schema=str, name="user_message", question="Say?", timeout=timeout)
        replies.append(echo(message))
    return replies

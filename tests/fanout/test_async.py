"""Async flows and async checkpoints: awaiting, asyncio.gather, resume, mixing sync and async."""

from __future__ import annotations

import asyncio
import logging
import re
import threading
import time
from collections import Counter
from typing import Any

import pytest

import kitaru
from kitaru import (
    ExecutionStatus,
    FlowHandle,
    KitaruClient,
    KitaruContextError,
    KitaruUserCodeError,
    checkpoint,
    flow,
)
from tests.fanout._support import Tracker, call_id, calls, outputs, statuses


@checkpoint
async def double(x: int) -> int:
    await asyncio.sleep(0)
    return 2 * x


def test_async_flow_awaits_async_checkpoints(any_store: str) -> None:
    @flow
    async def pipeline(x: int) -> int:
        a = await double(x)
        b = await double(a)
        return await double(b)

    handle = pipeline.run(3)
    assert isinstance(handle, FlowHandle)
    assert handle.wait(timeout=30) == 24
    assert handle.status is ExecutionStatus.COMPLETED
    assert outputs(handle.exec_id) == {"double": 6, "double:2": 12, "double:3": 24}


def test_gather_runs_concurrently_and_keeps_ids_in_call_order(any_store: str) -> None:
    tracker = Tracker()
    delays = [0.05 * (10 - i) for i in range(10)]  # later calls finish first

    @checkpoint
    async def fetch(i: int, delay: float) -> str:
        started = tracker.enter(i)
        await asyncio.sleep(delay)
        tracker.leave(i, started)
        return f"item-{i}"

    @flow
    async def fan_in() -> list[str]:
        return list(await asyncio.gather(*(fetch(i, d) for i, d in enumerate(delays))))

    handle = fan_in.run()
    result = handle.wait(timeout=30)
    assert result == [f"item-{i}" for i in range(10)]
    assert tracker.peak == 10  # all ten were inside at once: they ran concurrently
    # They finished out of call order (the last call sleeps 450 ms less than the first);
    # exact finish order is the event loop's business under load, not Kitaru's.
    assert sorted(tracker.finished) == list(range(10))
    assert tracker.finished.index(9) < tracker.finished.index(0)
    assert outputs(handle.exec_id) == {call_id("fetch", i): f"item-{i}" for i in range(10)}
    assert [c.call_id for c in KitaruClient().executions.get(handle.exec_id).checkpoints] == [
        call_id("fetch", i) for i in range(10)
    ]


def test_async_flow_retry_reuses_recorded_calls(any_store: str) -> None:
    runs: Counter[str] = Counter()

    @checkpoint
    async def step(name: str, delay: float) -> str:
        runs[name] += 1
        await asyncio.sleep(delay)
        if name == "last" and runs[name] == 1:
            raise RuntimeError("last fails the first time")
        return name.upper()

    @flow(retries=1)
    async def agent() -> list[str]:
        first = await step("first", 0.0)
        # The calls finish in the order b, a, last; the failing one is last in call order.
        # (gather propagates the first failure at once and asyncio.run cancels the calls
        # still in flight, which would then run again.)
        gathered = await asyncio.gather(step("a", 0.05), step("b", 0.0), step("last", 0.15))
        return [first, *gathered]

    handle = agent.run()
    assert handle.wait(timeout=30) == ["FIRST", "A", "B", "LAST"]
    assert runs == {"first": 1, "a": 1, "b": 1, "last": 2}
    execution = KitaruClient().executions.get(handle.exec_id)
    assert execution.run_count == 2
    assert statuses(handle.exec_id) == {
        "step": "completed",
        "step:2": "completed",
        "step:3": "completed",
        "step:4": "completed",
    }
    assert [(a.run, a.status) for a in calls(handle.exec_id)["step:4"].attempts] == [
        (1, "failed"),
        (2, "completed"),
    ]


def test_async_flow_retry_when_an_early_gathered_call_failed() -> None:
    runs: Counter[str] = Counter()

    @checkpoint
    async def step(name: str) -> str:
        runs[name] += 1
        if name == "early" and runs[name] == 1:
            raise RuntimeError("early fails the first time")
        return name.upper()

    @flow(retries=1)
    async def agent() -> list[str]:
        return list(await asyncio.gather(step("early"), step("later")))

    assert agent.run().wait(timeout=30) == ["EARLY", "LATER"]
    assert runs == {"early": 2, "later": 1}


def test_sync_checkpoints_run_inline_in_an_async_flow(any_store: str) -> None:
    threads: dict[str, int] = {}

    @checkpoint
    def sync_step(x: int) -> int:
        threads["checkpoint"] = threading.get_ident()
        return x + 1

    @flow
    async def mixed(x: int) -> list[int]:
        threads["body"] = threading.get_ident()
        a = sync_step(x)  # a plain value, not an awaitable
        b = await double(a)
        return [a, b, sync_step(b)]

    handle = mixed.run(1)
    assert handle.wait(timeout=30) == [2, 4, 5]
    assert threads["checkpoint"] == threads["body"]
    assert outputs(handle.exec_id) == {"sync_step": 2, "double": 4, "sync_step:2": 5}


def test_async_checkpoints_in_a_sync_flow_return_values(any_store: str) -> None:
    runs: Counter[str] = Counter()

    @checkpoint
    async def fetch(x: int) -> int:
        runs["fetch"] += 1
        await asyncio.sleep(0.01)
        return x * 3

    @checkpoint
    def fragile(x: int) -> int:
        runs["fragile"] += 1
        if runs["fragile"] == 1:
            raise RuntimeError("fragile fails once")
        return x

    @flow(retries=1)
    def sync_body(x: int) -> list[Any]:
        value = fetch(x)
        assert not asyncio.iscoroutine(value)
        return [value, fetch(value), fragile(value)]

    handle = sync_body.run(2)
    assert handle.wait(timeout=30) == [6, 18, 6]
    # The async calls completed on the first run and were reused on the second.
    assert runs == {"fetch": 2, "fragile": 2}
    assert outputs(handle.exec_id) == {"fetch": 6, "fetch:2": 18, "fragile": 6}


def test_futures_are_awaitable_in_an_async_flow(any_store: str) -> None:
    tracker = Tracker()

    @checkpoint
    def blocking(i: int) -> int:
        started = tracker.enter(i)
        time.sleep(0.2)
        tracker.leave(i, started)
        return i * i

    @flow
    async def awaits() -> list[int]:
        single = await blocking.submit(7)
        several = await asyncio.gather(*blocking.map(range(4)))
        return [single, *several]

    handle = awaits.run()
    assert handle.wait(timeout=30) == [49, 0, 1, 4, 9]
    assert tracker.peak == 4
    assert outputs(handle.exec_id) == {"blocking": 49} | {
        call_id("blocking", i + 1): i * i for i in range(4)
    }


def test_async_checkpoint_retries_and_failure_surface_in_the_body() -> None:
    attempts: Counter[str] = Counter()

    @checkpoint(retries=1)
    async def flaky() -> str:
        attempts["flaky"] += 1
        if attempts["flaky"] == 1:
            raise ConnectionError("transient")
        return "recovered"

    @checkpoint
    async def broken() -> None:
        raise ValueError("always broken")

    @flow
    async def body() -> list[str]:
        out = [await flaky()]
        try:
            await broken()
        except ValueError as exc:
            out.append(f"caught {exc}")
        return out

    handle = body.run()
    assert handle.wait(timeout=30) == ["recovered", "caught always broken"]
    assert attempts == {"flaky": 2}
    assert statuses(handle.exec_id) == {"flaky": "completed", "broken": "failed"}


def test_async_checkpoint_outside_a_flow_is_a_context_error() -> None:
    with pytest.raises(KitaruContextError, match="'double' was called outside a running flow"):
        double(1)


def test_an_uncaught_async_checkpoint_failure_fails_the_execution() -> None:
    @checkpoint
    async def broken() -> None:
        raise ValueError("async broke")

    @flow
    async def body() -> None:
        await broken()

    with pytest.raises(KitaruUserCodeError) as info:
        body.run().wait(timeout=30)
    assert info.value.checkpoint == "broken"
    assert info.value.exception_message == "async broke"


def test_logs_and_metadata_of_gathered_calls_land_on_their_own_call(any_store: str) -> None:
    @checkpoint
    async def chatty(i: int) -> int:
        kitaru.log(item=i)
        print(f"hello from {i}")
        await asyncio.sleep(0.05 * (5 - i))  # interleave with the other calls
        logging.getLogger("kitaru.tests.fanout").warning("warning from %d", i)
        print(f"bye from {i}")
        kitaru.log(done=i)
        return i

    @flow
    async def noisy() -> list[int]:
        print("body line")
        return list(await asyncio.gather(*(chatty(i) for i in range(5))))

    handle = noisy.run()
    assert handle.wait(timeout=30) == list(range(5))
    entries = KitaruClient().executions.logs(handle.exec_id, source=None)
    pattern = re.compile(r"(?:hello|bye|warning) from (\d)")
    matched = 0
    for entry in entries:
        found = pattern.fullmatch(entry.message)
        if found is not None:
            matched += 1
            expected = call_id("chatty", int(found.group(1)))
            assert (entry.call_id, entry.checkpoint_name) == (expected, "chatty"), entry
    assert matched == 15
    assert [e.call_id for e in entries if e.message == "body line"] == [None]
    for i in range(5):
        metadata = calls(handle.exec_id)[call_id("chatty", i)].metadata
        assert (metadata["item"], metadata["done"]) == (i, i)


def test_wait_async_does_not_block_the_event_loop(any_store: str) -> None:
    @checkpoint
    def slow() -> str:
        time.sleep(0.5)
        return "slow result"

    @flow
    def slow_flow() -> str:
        return slow()

    async def caller() -> tuple[str, int]:
        ticks = 0
        stop = asyncio.Event()

        async def ticker() -> None:
            nonlocal ticks
            while not stop.is_set():
                ticks += 1
                await asyncio.sleep(0.01)

        task = asyncio.create_task(ticker())
        handle = slow_flow.run()
        result = await handle.wait_async(timeout=30)
        stop.set()
        await task
        return result, ticks

    result, ticks = asyncio.run(caller())
    assert result == "slow result"
    # ~50 ticks if the loop ran freely for 0.5 s; a blocked loop gives 1.
    assert ticks >= 10


def test_wait_async_raises_the_execution_error() -> None:
    @flow
    async def failing() -> None:
        raise LookupError("async body failed")

    async def caller() -> None:
        await failing.run().wait_async(timeout=30)

    with pytest.raises(KitaruUserCodeError, match="async body failed"):
        asyncio.run(caller())


def test_a_cancelled_async_call_is_not_left_running(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KITARU_RUNNING_MARK_AFTER", "0.1")

    @checkpoint
    async def tool_call() -> str:
        await asyncio.sleep(2)
        return "too late"

    @flow
    async def agent() -> str:
        try:
            return await asyncio.wait_for(tool_call(), timeout=0.6)
        except TimeoutError:
            return "timed out"

    handle = agent.run()
    assert handle.wait(timeout=30) == "timed out"
    assert handle.status is ExecutionStatus.COMPLETED
    assert statuses(handle.exec_id)["tool_call"] != "running"


def test_future_arguments_of_async_checkpoints_do_not_block_the_loop() -> None:
    @checkpoint
    def slow_sync() -> int:
        time.sleep(0.5)
        return 5

    @checkpoint
    async def consume(x: int) -> int:
        return x

    @flow
    async def body() -> list[int]:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            for _ in range(20):
                ticks += 1
                await asyncio.sleep(0.01)

        future = slow_sync.submit()
        task = asyncio.create_task(ticker())
        await asyncio.sleep(0)  # the ticker starts
        value = await consume(future)  # waits 0.5 s for the future
        ticks_while_waiting = ticks
        await task
        return [value, ticks_while_waiting]

    value, ticks = body.run().wait(timeout=30)
    assert value == 5
    assert ticks >= 10  # 20 ticks of 10 ms fit in the 0.5 s wait unless the loop is blocked

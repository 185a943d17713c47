"""cp.submit / cp.map / cp.product: futures, ordering, call ids, the pool, failures, context."""

from __future__ import annotations

import contextlib
import logging
import re
import threading
import time
from typing import Any

import pytest

import kitaru
from kitaru import (
    ExecutionStatus,
    FailureOrigin,
    KitaruClient,
    KitaruContextError,
    KitaruUsageError,
    KitaruUserCodeError,
    checkpoint,
    flow,
)
from tests.fanout._support import Tracker, call_id, calls, outputs, statuses

# -- futures: values, order, result/done/load ----------------------------------------------


@checkpoint
def add(a: int, b: int = 0) -> int:
    return a + b


@checkpoint
def nap(value: Any, delay: float) -> Any:
    time.sleep(delay)
    return value


def test_map_returns_futures_in_input_order_with_the_right_values(any_store: str) -> None:
    @flow
    def mapped() -> dict[str, Any]:
        zipped = add.map([1, 2, 3], [10, 20, 30])
        with_kwargs = add.map([5, 6], b=100)
        empty = add.map([])
        return {
            "zipped": [f.result() for f in zipped],
            "ids": [f.call_id for f in zipped],
            "with_kwargs": [f.result() for f in with_kwargs],
            "kw_ids": [f.call_id for f in with_kwargs],
            "empty": empty,
        }

    handle = mapped.run()
    assert handle.wait(timeout=30) == {
        "zipped": [11, 22, 33],
        "ids": ["add", "add:2", "add:3"],
        "with_kwargs": [105, 106],
        "kw_ids": ["add:4", "add:5"],
        "empty": [],
    }
    assert outputs(handle.exec_id) == {
        "add": 11,
        "add:2": 22,
        "add:3": 33,
        "add:4": 105,
        "add:5": 106,
    }


def test_product_follows_itertools_product_order(any_store: str) -> None:
    @flow
    def crossed() -> list[Any]:
        futures = add.product([1, 2], [10, 20, 30])
        return [[f.call_id, f.result()] for f in futures]

    handle = crossed.run()
    expected = [11, 21, 31, 12, 22, 32]
    assert handle.wait(timeout=30) == [[call_id("add", i), v] for i, v in enumerate(expected)]
    assert outputs(handle.exec_id) == {call_id("add", i): v for i, v in enumerate(expected)}


def test_map_and_product_need_an_iterable() -> None:
    @flow
    def no_iterables() -> None:
        add.map()

    with pytest.raises(KitaruUserCodeError, match=r"add.map\(\) needs at least one iterable"):
        no_iterables.run().wait(timeout=30)

    @flow
    def no_product() -> None:
        add.product()

    with pytest.raises(KitaruUserCodeError, match=r"add.product\(\) needs at least one iterable"):
        no_product.run().wait(timeout=30)


def test_result_done_load_and_timeout(any_store: str) -> None:
    @flow
    def observe() -> dict[str, Any]:
        future = nap.submit("slow", 0.4)
        seen: dict[str, Any] = {"done_at_once": future.done()}
        try:
            future.result(timeout=0.01)
            seen["timeout"] = "no timeout"
        except TimeoutError as exc:
            seen["timeout"] = type(exc).__name__
        seen["load"] = future.load()
        seen["done_after"] = future.done()
        seen["result_again"] = future.result(timeout=0)
        seen["exception"] = future.exception()
        seen["repr"] = repr(future)
        return seen

    assert observe.run().wait(timeout=30) == {
        "done_at_once": False,
        "timeout": "TimeoutError",
        "load": "slow",
        "done_after": True,
        "result_again": "slow",
        "exception": None,
        "repr": "<CheckpointFuture 'nap' done>",
    }


# -- call ids: assigned at submission, in body order ----------------------------------------


def test_call_ids_follow_submission_order_not_finish_order(any_store: str) -> None:
    tracker = Tracker()

    @checkpoint
    def echo(i: int, delay: float) -> int:
        started = tracker.enter(i)
        time.sleep(delay)
        tracker.leave(i, started)
        return i * 100

    @flow
    def reverse() -> list[Any]:
        # Later submissions sleep less, so they finish first.
        futures = [echo.submit(i, 0.08 * (4 - i)) for i in range(5)]
        return [[f.call_id, f.result()] for f in futures]

    handle = reverse.run()
    result = handle.wait(timeout=30)
    assert tracker.finished == [4, 3, 2, 1, 0]
    assert result == [[call_id("echo", i), i * 100] for i in range(5)]
    assert outputs(handle.exec_id) == {call_id("echo", i): i * 100 for i in range(5)}


def test_call_ids_count_per_name_and_respect_explicit_ids(any_store: str) -> None:
    @checkpoint
    def other(x: int) -> int:
        return -x

    @flow
    def mixed() -> list[str]:
        futures = [
            add.submit(1),
            other.submit(2),
            add.submit(3, id="pinned"),
            add.submit(4),
            other.submit(5),
        ]
        direct = add(6)  # a plain call takes the next id of its name as well
        assert direct == 6
        return [f.call_id for f in futures]

    handle = mixed.run()
    assert handle.wait(timeout=30) == ["add", "other", "pinned", "add:2", "other:2"]
    assert outputs(handle.exec_id) == {
        "add": 1,
        "other": -2,
        "pinned": 3,
        "add:2": 4,
        "other:2": -5,
        "add:3": 6,
    }


def test_a_duplicate_explicit_id_is_a_usage_error() -> None:
    @flow
    def duplicate() -> None:
        add.submit(1, id="same").result()
        add.submit(2, id="same").result()

    with pytest.raises(KitaruUserCodeError, match="'same' is used twice"):
        duplicate.run().wait(timeout=30)


# -- after= and futures as arguments -----------------------------------------------------------


def test_after_makes_a_submission_wait_for_its_dependencies(any_store: str) -> None:
    tracker = Tracker()

    @checkpoint
    def step(label: str, delay: float) -> str:
        started = tracker.enter(label)
        time.sleep(delay)
        tracker.leave(label, started)
        return label

    @flow
    def chained() -> list[str]:
        a = step.submit("a", 0.3)
        b = step.submit("b", 0.05, after=a)
        c = step.submit("c", 0.0, after=[a, b])
        free = step.submit("free", 0.0)  # no dependency: runs while "a" sleeps
        mapped = step.map(["m1", "m2"], [0.0, 0.0], after=c)
        inline = step("inline", 0.0, after=mapped)  # a plain call waits too
        return [f.result() for f in (a, b, c, free, *mapped)] + [inline]

    assert chained.run().wait(timeout=30) == ["a", "b", "c", "free", "m1", "m2", "inline"]
    assert tracker.start("b") >= tracker.end("a")
    assert tracker.start("c") >= max(tracker.end("a"), tracker.end("b"))
    assert tracker.start("m1") >= tracker.end("c")
    assert tracker.start("m2") >= tracker.end("c")
    assert tracker.start("inline") >= max(tracker.end("m1"), tracker.end("m2"))
    # No dependency: it did not wait for "a" (it started while "a" slept; when it ends
    # depends on the machine's load, its commit included).
    assert tracker.start("free") < tracker.end("a")


def test_after_a_failed_dependency_fails_the_dependent_without_running_it() -> None:
    ran: list[str] = []

    @checkpoint
    def broken() -> None:
        raise ValueError("dependency broke")

    @checkpoint
    def dependent() -> str:
        ran.append("dependent")
        return "ran"

    @flow
    def body() -> list[str]:
        first = broken.submit()
        second = dependent.submit(after=first)
        seen = []
        for future in (first, second):
            try:
                future.result()
            except ValueError as exc:
                seen.append(f"{future.call_id}: {exc}")
        return seen

    assert body.run().wait(timeout=30) == [
        "broken: dependency broke",
        "dependent: dependency broke",
    ]
    assert ran == []


def test_after_takes_only_futures() -> None:
    @flow
    def body() -> None:
        add.submit(1, after=[3])

    with pytest.raises(KitaruUserCodeError, match="after= takes futures"):
        body.run().wait(timeout=30)


def test_futures_as_arguments_are_resolved_first(any_store: str) -> None:
    tracker = Tracker()

    @checkpoint
    def produce(x: int, delay: float) -> int:
        started = tracker.enter(f"produce {x}")
        time.sleep(delay)
        tracker.leave(f"produce {x}", started)
        return x

    @checkpoint
    def consume(tag: str, a: int, b: int, items: list[Any], mapping: dict[str, Any]) -> Any:
        started = tracker.enter(tag)
        tracker.leave(tag, started)
        items = [list(x) if isinstance(x, tuple) else x for x in items]
        return {"a": a, "b": b, "items": items, "mapping": mapping}

    @flow
    def body() -> dict[str, Any]:
        p1, p2, p3, p4 = produce.map([1, 2, 3, 4], [0.3, 0.1, 0.2, 0.15])
        inline = consume("inline", p1, b=p2, items=[p3, 7, (p4,)], mapping={"k": p4})
        p5 = produce.submit(5, 0.2)
        submitted = consume.submit("submitted", p5, b=p2, items=[p3], mapping={"k": [p1]})
        return {"inline": inline, "submitted": submitted.result()}

    handle = body.run()
    assert handle.wait(timeout=30) == {
        "inline": {"a": 1, "b": 2, "items": [3, 7, [4]], "mapping": {"k": 4}},
        "submitted": {"a": 5, "b": 2, "items": [3], "mapping": {"k": [1]}},
    }
    produced = [tracker.end(f"produce {x}") for x in (1, 2, 3, 4)]
    assert tracker.start("inline") >= max(produced)
    assert tracker.start("submitted") >= tracker.end("produce 5")
    # What the calls recorded is the resolved value, not a future.
    assert outputs(handle.exec_id)["consume:2"]["a"] == 5


# -- the bounded pool ----------------------------------------------------------------------------


def _tracked_flow(tracker: Tracker, **flow_options: Any) -> Any:
    # cache=False: several flows built here share the checkpoint's source and inputs.
    @checkpoint(cache=False)
    def busy(i: int) -> int:
        started = tracker.enter(i)
        time.sleep(0.15)
        tracker.leave(i, started)
        return i

    @flow(**flow_options)
    def bounded(n: int) -> list[int]:
        return [f.result() for f in busy.map(range(n))]

    return bounded


def test_max_concurrency_bounds_the_pool(any_store: str) -> None:
    tracker = Tracker()
    bounded = _tracked_flow(tracker, max_concurrency=3)
    handle = bounded.run(9)
    assert handle.wait(timeout=30) == list(range(9))
    assert tracker.peak == 3
    assert KitaruClient().executions.get(handle.exec_id).status is ExecutionStatus.COMPLETED


def test_run_max_concurrency_overrides_the_decorator() -> None:
    tracker = Tracker()
    bounded = _tracked_flow(tracker, max_concurrency=3)
    assert bounded.run(6, max_concurrency=2).wait(timeout=30) == list(range(6))
    assert tracker.peak == 2
    tracker = Tracker()
    one_at_a_time = _tracked_flow(tracker)
    assert one_at_a_time.run(3, max_concurrency=1).wait(timeout=30) == [0, 1, 2]
    assert tracker.peak == 1


def test_default_pool_runs_sixteen_at_once() -> None:
    tracker = Tracker()

    @checkpoint
    def busy(i: int) -> int:
        started = tracker.enter(i)
        # Stay until sixteen run side by side (not a fixed sleep: on a loaded machine
        # the first could end before the sixteenth starts). A pool narrower than
        # sixteen never gets there, and the peak then stays below it.
        deadline = time.monotonic() + 5
        while tracker.peak < 16 and time.monotonic() < deadline:
            time.sleep(0.01)
        tracker.leave(i, started)
        return i

    @flow
    def wide() -> list[int]:
        return [f.result() for f in busy.map(range(20))]

    assert wide.run().wait(timeout=30) == list(range(20))
    assert tracker.peak == 16


@pytest.mark.parametrize("bad", [0, -1, True, 2.5, "4"])
def test_invalid_max_concurrency_is_a_usage_error(bad: Any) -> None:
    with pytest.raises(KitaruUsageError, match="max_concurrency in @flow for 'f' must be"):

        @flow(max_concurrency=bad)
        def f() -> None:
            return None

    @flow
    def g() -> None:
        return None

    with pytest.raises(ValueError, match=r"max_concurrency in g.run\(...\) must be a positive"):
        g.run(max_concurrency=bad)
    assert KitaruClient().executions.list() == []


# -- failures ------------------------------------------------------------------------------------


@checkpoint
def maybe_fail(x: int) -> int:
    if x == 2:
        raise ValueError(f"bad input {x}")
    return x


def test_a_failure_surfaces_at_result_and_the_body_can_catch_it(any_store: str) -> None:
    @flow
    def tolerant() -> list[Any]:
        futures = maybe_fail.map(range(4))
        out: list[Any] = []
        for future in futures:
            try:
                out.append(future.result())
            except ValueError as exc:
                out.append(f"caught: {exc}")
        return out

    handle = tolerant.run()
    assert handle.wait(timeout=30) == [0, 1, "caught: bad input 2", 3]
    assert statuses(handle.exec_id) == {
        "maybe_fail": "completed",
        "maybe_fail:2": "completed",
        "maybe_fail:3": "failed",
        "maybe_fail:4": "completed",
    }
    failed = calls(handle.exec_id)["maybe_fail:3"]
    assert failed.error is not None
    assert failed.error["message"] == "bad input 2"


def test_exception_collects_a_failure() -> None:
    @flow
    def inspects() -> str:
        future = maybe_fail.submit(2)
        error = future.exception(timeout=10)
        return f"{type(error).__name__}: {error}"

    assert inspects.run().wait(timeout=30) == "ValueError: bad input 2"


def test_an_uncollected_failure_fails_the_execution(any_store: str) -> None:
    @checkpoint
    def explode() -> None:
        time.sleep(0.1)
        raise RuntimeError("nobody looked at me")

    @flow
    def forgetful() -> str:
        explode.submit()
        kept = add.submit(1, 2)
        return f"returned {kept.result()}"

    handle = forgetful.run()
    with pytest.raises(KitaruUserCodeError) as info:
        handle.wait(timeout=30)
    error = info.value
    assert error.checkpoint == "explode"
    assert error.exception_type == "RuntimeError"
    assert error.exception_message == "nobody looked at me"
    assert error.failure_origin is FailureOrigin.USER_CODE
    assert "in checkpoint 'explode'" in str(error)
    assert handle.status is ExecutionStatus.FAILED
    assert statuses(handle.exec_id) == {"explode": "failed", "add": "completed"}


def test_done_alone_does_not_collect_a_failure() -> None:
    @flow
    def peeks() -> str:
        future = maybe_fail.submit(2)
        while not future.done():
            time.sleep(0.01)
        return "looked only at done()"

    with pytest.raises(KitaruUserCodeError, match="bad input 2"):
        peeks.run().wait(timeout=30)


def test_the_failure_record_names_the_checkpoint_whose_error_failed_the_execution() -> None:
    @checkpoint
    def fails_fast() -> None:
        raise ValueError("fast failure, never collected")

    @checkpoint
    def fails_late() -> None:
        time.sleep(0.3)
        raise KeyError("late failure, handled by the body")

    @flow
    def body() -> str:
        fails_fast.submit()
        late = fails_late.submit()
        with contextlib.suppress(KeyError):
            late.result()
        return "handled"

    with pytest.raises(KitaruUserCodeError) as info:
        body.run().wait(timeout=30)
    assert info.value.exception_message == "fast failure, never collected"
    assert info.value.checkpoint == "fails_fast"


def test_a_result_timeout_does_not_count_as_collecting_a_later_failure() -> None:
    @checkpoint
    def fails_later() -> None:
        time.sleep(0.3)
        raise ValueError("failed after the body stopped waiting")

    @flow
    def impatient() -> str:
        future = fails_later.submit()
        try:
            future.result(timeout=0.01)
        except TimeoutError:
            return "gave up waiting"
        return "unexpected"

    with pytest.raises(KitaruUserCodeError, match="failed after the body stopped waiting"):
        impatient.run().wait(timeout=30)


def test_uncollected_successes_are_awaited_before_the_execution_completes(
    any_store: str,
) -> None:
    tracker = Tracker()
    returned: list[float] = []

    @checkpoint
    def slow(i: int) -> int:
        started = tracker.enter(i)
        time.sleep(0.3)
        tracker.leave(i, started)
        return i * i

    @flow
    def fire_and_forget() -> str:
        slow.map(range(5))
        returned.append(time.monotonic())
        return "body done"

    handle = fire_and_forget.run()
    assert handle.wait(timeout=30) == "body done"
    # The body returned long before the calls ended; they still all completed.
    assert returned[0] < min(tracker.end(i) for i in range(5))
    assert sorted(tracker.finished) == [0, 1, 2, 3, 4]
    assert statuses(handle.exec_id) == {call_id("slow", i): "completed" for i in range(5)}
    assert outputs(handle.exec_id) == {call_id("slow", i): i * i for i in range(5)}
    execution = KitaruClient().executions.get(handle.exec_id)
    assert execution.ended_at is not None
    ends = [c.ended_at for c in execution.checkpoints]
    assert all(end is not None and end <= execution.ended_at for end in ends)


def test_in_flight_calls_finish_when_the_body_fails(any_store: str) -> None:
    @flow
    def crashes_early() -> None:
        nap.map(["x", "y", "z"], [0.3, 0.3, 0.3])
        raise LookupError("the body gave up")

    handle = crashes_early.run()
    with pytest.raises(KitaruUserCodeError, match="the body gave up") as info:
        handle.wait(timeout=30)
    assert info.value.checkpoint is None
    assert statuses(handle.exec_id) == {call_id("nap", i): "completed" for i in range(3)}


# -- context rules ----------------------------------------------------------------------------


def test_submit_outside_a_flow_is_a_context_error() -> None:
    with pytest.raises(KitaruContextError, match="'add' was submitted outside a running flow"):
        add.submit(1)
    with pytest.raises(KitaruContextError, match="outside a running flow"):
        add.map([1, 2])
    with pytest.raises(KitaruContextError, match="outside a running flow"):
        add.product([1], [2])


def test_submit_inside_a_checkpoint_is_a_context_error(any_store: str) -> None:
    @checkpoint
    def outer() -> int:
        return int(add.submit(1).result())

    @flow
    def nests() -> int:
        return int(outer.submit().result())

    with pytest.raises(KitaruUserCodeError) as info:
        nests.run().wait(timeout=30)
    assert info.value.exception_type == "kitaru.errors.KitaruContextError"
    assert "submitted inside checkpoint 'outer'" in (info.value.exception_message or "")


def test_submit_from_a_thread_the_body_started_is_a_context_error() -> None:
    @flow
    def spawns() -> str:
        errors: list[BaseException] = []

        def worker() -> None:
            try:
                add.submit(1)
            except KitaruContextError as exc:
                errors.append(exc)

        thread = threading.Thread(target=worker)
        thread.start()
        thread.join()
        return type(errors[0]).__name__ if errors else "no error"

    assert spawns.run().wait(timeout=30) == "KitaruContextError"


def test_an_async_checkpoint_cannot_be_submitted() -> None:
    @checkpoint
    async def coro(x: int) -> int:
        return x

    @flow
    def body() -> None:
        coro.submit(1)

    with pytest.raises(KitaruUserCodeError, match="'coro' is async: await it"):
        body.run().wait(timeout=30)


# -- logs and metadata of concurrent calls ----------------------------------------------------


def test_logs_and_metadata_of_concurrent_calls_land_on_their_own_call(any_store: str) -> None:
    barrier = threading.Barrier(6, timeout=10)

    @checkpoint
    def chatty(i: int) -> int:
        kitaru.log(item=i, nested={"i": i})
        print(f"hello from {i}")
        barrier.wait()  # all six are inside their call at once
        logging.getLogger("kitaru.tests.fanout").warning("warning from %d", i)
        print(f"bye from {i}")
        kitaru.log(done=i)
        return i

    @flow
    def noisy() -> list[int]:
        print("body line")
        return [f.result() for f in chatty.map(range(6))]

    handle = noisy.run()
    assert handle.wait(timeout=30) == list(range(6))
    entries = KitaruClient().executions.logs(handle.exec_id, source=None)
    pattern = re.compile(r"(?:hello|bye|warning) from (\d)")
    matched = 0
    for entry in entries:
        found = pattern.fullmatch(entry.message)
        if found is None:
            continue
        matched += 1
        i = int(found.group(1))
        assert (entry.call_id, entry.checkpoint_name) == (call_id("chatty", i), "chatty"), entry
    assert matched == 18
    body_lines = [e for e in entries if e.message == "body line"]
    assert [(e.call_id, e.checkpoint_name) for e in body_lines] == [(None, None)]
    for i in range(6):
        metadata = calls(handle.exec_id)[call_id("chatty", i)].metadata
        assert metadata["item"] == i
        assert metadata["nested"] == {"i": i}
        assert metadata["done"] == i

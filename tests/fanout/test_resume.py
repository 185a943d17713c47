"""Re-running a fan-out (flow retries, executions.retry): completed calls reused, failed re-run."""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Any

import pytest

from kitaru import ExecutionStatus, KitaruClient, KitaruUserCodeError, checkpoint, flow
from tests.fanout._support import call_id, calls, outputs, statuses


class Runs:
    """Counts real runs of each item; ``fail_first`` items raise on their first run."""

    def __init__(self, fail_first: set[int]) -> None:
        self.counts: Counter[int] = Counter()
        self.fail_first = fail_first
        self.lock = threading.Lock()

    def run(self, i: int) -> int:
        with self.lock:
            self.counts[i] += 1
            first = self.counts[i] == 1
        if first and i in self.fail_first:
            raise RuntimeError(f"item {i} fails the first time")
        return i * 10


def test_flow_retry_reuses_completed_submissions_and_reruns_failed_ones(any_store: str) -> None:
    runs = Runs(fail_first={4, 5})
    prepared: Counter[str] = Counter()
    seen_done: list[list[bool]] = []

    @checkpoint
    def prepare() -> int:
        prepared["prepare"] += 1
        return 6

    @checkpoint
    def work(i: int, delay: float) -> int:
        time.sleep(delay)
        return runs.run(i)

    @flow(retries=1)
    def fan() -> list[int]:
        n = prepare()
        futures = [work.submit(i, 0.05 * (n - i)) for i in range(n)]
        seen_done.append([f.done() for f in futures])
        return [f.result() for f in futures]

    handle = fan.run()
    assert handle.wait(timeout=30) == [i * 10 for i in range(6)]
    assert runs.counts == {0: 1, 1: 1, 2: 1, 3: 1, 4: 2, 5: 2}
    assert prepared == {"prepare": 1}
    # On the second run the recorded calls come back as futures that are already done.
    assert seen_done[1][:4] == [True, True, True, True]

    execution = KitaruClient().executions.get(handle.exec_id)
    assert execution.status is ExecutionStatus.COMPLETED
    assert execution.run_count == 2
    assert sorted(c.call_id for c in execution.checkpoints) == sorted(
        ["prepare", *(call_id("work", i) for i in range(6))]
    )
    assert set(statuses(handle.exec_id).values()) == {"completed"}
    for i in range(6):
        call = calls(handle.exec_id)[call_id("work", i)]
        history = [(a.run, a.status) for a in call.attempts]
        if i in (4, 5):
            assert history == [(1, "failed"), (2, "completed")]
        else:
            assert history == [(1, "completed")]


def test_executions_retry_after_a_failed_fan_out(any_store: str) -> None:
    runs = Runs(fail_first={3})

    @checkpoint
    def work(i: int) -> int:
        return runs.run(i)

    @flow
    def fan(n: int) -> int:
        return sum(f.result() for f in work.map(range(n)))

    handle = fan.run(4)
    with pytest.raises(KitaruUserCodeError, match="item 3 fails the first time"):
        handle.wait(timeout=30)
    assert statuses(handle.exec_id)[call_id("work", 3)] == "failed"

    retried = KitaruClient().executions.retry(handle.exec_id, wait=True)
    assert retried.status is ExecutionStatus.COMPLETED
    assert handle.wait(timeout=30) == 60
    assert runs.counts == {0: 1, 1: 1, 2: 1, 3: 2}
    assert outputs(handle.exec_id) == {call_id("work", i): i * 10 for i in range(4)}


def test_flow_retry_when_an_early_submission_failed_and_later_ones_completed(
    any_store: str,
) -> None:
    runs = Runs(fail_first={1})

    @checkpoint
    def work(i: int) -> int:
        return runs.run(i)

    @flow(retries=1)
    def fan() -> list[int]:
        return [f.result() for f in work.map(range(4))]

    handle = fan.run()
    assert handle.wait(timeout=30) == [0, 10, 20, 30]
    assert runs.counts == {0: 1, 1: 2, 2: 1, 3: 1}


def test_calls_are_listed_in_submission_order() -> None:
    @checkpoint
    def gate(delay: float) -> str:
        time.sleep(delay)
        return "open"

    @checkpoint
    def item(i: int) -> int:
        return i

    @flow
    def body() -> list[Any]:
        opened = gate.submit(0.3)
        waiting = item.submit(0, after=opened)  # starts only after the gate
        free = item.submit(1)  # starts at once
        return [waiting.result(), free.result()]

    handle = body.run()
    assert handle.wait(timeout=30) == [0, 1]
    listed = [c.call_id for c in KitaruClient().executions.get(handle.exec_id).checkpoints]
    assert listed == ["gate", "item", "item:2"]

"""``kitaru.sleep()``: durable wake-up time, in place or released, resumed by a worker."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import timedelta

import pytest

import kitaru
from kitaru import KitaruContextError, KitaruUsageError, checkpoint, flow
from kitaru._backend import get_backend
from kitaru._runtime.sleeps import seconds_of
from kitaru._store import ExecutionStatus, SuspensionStatus
from kitaru.client import KitaruClient
from kitaru.errors import KitaruExecutionError
from kitaru.handle import FlowHandle
from kitaru.worker import run_worker
from tests.durable_time import _flows
from tests.waits.conftest import (
    child_env,
    eventually,
    exec_threads,
    kitaru_cli,
    wait_until_released,
)


def _suspension(exec_id: str) -> object | None:
    found = get_backend().store.suspensions(exec_id)
    return found[0] if found else None


def test_a_short_sleep_sleeps_in_place_and_is_recorded_done(
    any_store: str, client: KitaruClient
) -> None:
    handle = _flows.napper.run(0.3)
    result = handle.wait()
    assert result["after"] - result["before"] >= 0.3
    (sleep,) = get_backend().store.suspensions(handle.exec_id)
    assert sleep.suspension_id == "sleep"
    assert sleep.status is SuspensionStatus.DONE
    assert sleep.wake_at is not None
    assert result["after"] >= sleep.wake_at
    assert client.executions.get(handle.exec_id).pending_sleep is None


def test_sleep_is_refused_outside_a_flow_body_and_for_bad_durations() -> None:
    with pytest.raises(KitaruContextError, match="outside a running flow"):
        kitaru.sleep(1)

    @checkpoint(cache=False)
    def naps_inside() -> None:
        kitaru.sleep(0)

    @flow(cache=False)
    def body_calls_checkpoint() -> None:
        naps_inside()

    with pytest.raises(KitaruExecutionError, match="inside checkpoint 'naps_inside'"):
        body_calls_checkpoint.run().wait()
    assert seconds_of(timedelta(milliseconds=250)) == 0.25
    for bad in (-1, "5", float("nan"), float("inf"), True, None):
        with pytest.raises(KitaruUsageError):
            seconds_of(bad)

    @flow(cache=False)
    def naps_backwards() -> None:
        kitaru.sleep(-2)

    with pytest.raises(KitaruExecutionError, match="duration >= 0"):
        naps_backwards.run().wait()

    # A wake-up time must be a date: past year 9999 nothing could show it.
    for too_long in (1e12, timedelta(days=4_000_000)):
        with pytest.raises(KitaruUsageError, match="at most"):
            seconds_of(too_long)

    @flow(cache=False)
    def naps_for_ever() -> None:
        kitaru.sleep(1e12)

    handle = naps_for_ever.run()
    with pytest.raises(KitaruExecutionError, match="at most"):
        handle.wait()
    # Listing and showing the store still work (they failed on such a date).
    from kitaru.client import KitaruClient

    assert KitaruClient().executions.get(handle.exec_id).status.value == "failed"
    assert KitaruClient().executions.list()


def test_a_stored_date_past_year_9999_reads_as_the_latest_date() -> None:
    from datetime import UTC, datetime

    from kitaru.client._models import _dt

    assert _dt(1e12 * 366) == datetime.max.replace(tzinfo=UTC)
    assert _dt(-1e15) == datetime.min.replace(tzinfo=UTC)
    assert _dt(0.0) == datetime(1970, 1, 1, tzinfo=UTC)


def test_a_long_sleep_releases_the_execution_and_a_worker_process_wakes_it(
    any_store: str,
    client: KitaruClient,
    monkeypatch: pytest.MonkeyPatch,
    spawn: Callable[..., subprocess.Popen[str]],
) -> None:
    monkeypatch.setenv("KITARU_SLEEP_RELEASE_AFTER", "0.2")
    handle = _flows.napper.run(2.5)
    execution = wait_until_released(client, handle.exec_id)
    assert exec_threads() == []  # no thread holds it
    assert execution.status_reason == "sleeping"
    assert execution.pending_sleep is not None
    assert execution.pending_sleep.kind == "sleep"
    assert execution.pending_sleep.wake_at is not None
    wake_at = execution.pending_sleep.wake_at.timestamp()

    shown = kitaru_cli("executions", "get", handle.exec_id, "-o", "json")
    assert shown.returncode == 0, shown.stderr
    item = json.loads(shown.stdout)["item"]
    assert item["status"] == "waiting"
    assert item["status_reason"] == "sleeping"
    assert item["pending_sleep"]["sleep_id"] == "sleep"
    listed = kitaru_cli("executions", "list")
    assert "sleeping until" in listed.stdout

    # A worker polling only every 30 s still wakes it on time: it sleeps until the
    # earliest due wake-up, not a whole poll interval.
    worker = spawn("-m", "kitaru.cli", "worker", "--poll-interval", "30")
    result = client.executions.wait(handle.exec_id, timeout=60)
    assert result.status is ExecutionStatus.COMPLETED
    value = handle.wait()
    assert value["after"] >= wake_at
    assert get_backend().store.suspensions(handle.exec_id)[0].status is SuspensionStatus.DONE
    worker.send_signal(signal.SIGINT)
    worker.communicate(timeout=30)


def test_cancel_stops_a_sleep_in_place_and_a_released_one(
    any_store: str, client: KitaruClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    in_place = _flows.napper.run(60)
    eventually(lambda: _suspension(in_place.exec_id), what="the sleep to be recorded")
    client.executions.cancel(in_place.exec_id)
    for thread in exec_threads(in_place.exec_id):
        thread.join(timeout=10)
        assert not thread.is_alive()  # woken at once, not after 60 s
    assert client.executions.get(in_place.exec_id).status is ExecutionStatus.CANCELLED

    monkeypatch.setenv("KITARU_SLEEP_RELEASE_AFTER", "0")
    released = _flows.napper.run(0.5)
    wait_until_released(client, released.exec_id)
    client.executions.cancel(released.exec_id)
    time.sleep(0.6)  # past its wake-up time: a worker must not run it again
    assert run_worker(once=True) == 0
    execution = client.executions.get(released.exec_id)
    assert execution.status is ExecutionStatus.CANCELLED
    assert execution.pending_sleep is None


def test_a_sleep_keeps_its_wake_up_time_across_a_sigkill(
    any_store: str, client: KitaruClient, spawn: Callable[..., subprocess.Popen[str]]
) -> None:
    script = (
        "from tests.durable_time._flows import napper\n"
        "handle = napper.run(3.0)\n"
        "print(handle.exec_id, flush=True)\n"
        "handle.wait()\n"
    )
    runner = spawn("-c", script)
    assert runner.stdout is not None
    exec_id = runner.stdout.readline().strip()
    assert exec_id, runner.stderr.read() if runner.stderr else ""
    sleep = eventually(lambda: _suspension(exec_id), what="the sleep to be recorded")
    time.sleep(1.0)
    os.killpg(runner.pid, signal.SIGKILL)
    killed_at = time.time()
    runner.communicate()
    assert client.executions.get(exec_id).status is ExecutionStatus.RUNNING  # orphaned

    resumer = subprocess.run(
        [sys.executable, "-m", "kitaru.worker", exec_id],
        capture_output=True,
        text=True,
        timeout=60,
        env=child_env(),
        check=False,
    )
    assert resumer.returncode == 0, resumer.stderr
    result = client.executions.get(exec_id)
    assert result.status is ExecutionStatus.COMPLETED
    assert result.run_count == 2
    (after_resume,) = get_backend().store.suspensions(exec_id)
    assert after_resume.wake_at == sleep.wake_at  # type: ignore[attr-defined]
    stamps = FlowHandle(exec_id).get()
    assert stamps["after"] >= sleep.wake_at  # type: ignore[attr-defined]
    # The resumed body slept only what was left: a restarted clock would end 3 s after
    # the resume, which came after the kill.
    assert stamps["after"] < killed_at + 3.0

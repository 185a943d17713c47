"""The fence stops a runner that lost its execution, with real processes, on every store.

The child runner gets a long lease, so its lease keeper does not poll during the
test: the only thing that can stop it is the fence on its next write. That is
the case the fence exists for (a runner paused by a VM freeze or a GC pause
wakes up after another process took its execution over, before its keeper
notices), and it used to pass silently on PostgreSQL.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

import kitaru.worker
from kitaru import FlowHandle, KitaruClient
from kitaru._backend import get_backend
from kitaru._store import ExecutionStatus
from kitaru._store import schema as t
from kitaru._store.records import CallStatus
from kitaru.client import Execution
from tests.recovery._rc_support import (
    REPO_ROOT,
    RUN_FLOW,
    child_env,
    counts,
    pause_runner,
    read_log,
    start,
    wait_for,
)

#: Long enough that the child's lease keeper never renews or polls during a test.
LONG_LEASE = "600"


def _expire_lease(exec_id: str) -> None:
    """Let the lease of a paused runner run out (as if the pause had lasted that long)."""
    store = get_backend().store
    with store.write() as conn:
        conn.execute(
            t.executions.update()
            .where(t.executions.c.id == exec_id)
            .values(lease_expires_at=time.time() - 1)
        )


def _take_over_while_paused(pid: int, store_url: str, exec_id: str, gate: Path) -> Execution:
    """The runner stalls (VM freeze, GC pause...) past its lease; this process takes the
    execution over and completes it; then the runner wakes up."""
    pause_runner(pid, store_url)
    _expire_lease(exec_id)
    gate.touch()
    resumed = KitaruClient().executions.resume(exec_id, wait=True)
    assert resumed.status is ExecutionStatus.COMPLETED
    os.kill(pid, signal.SIGCONT)
    return resumed


def test_a_paused_runner_taken_over_stops_at_its_next_write(any_store: str, tmp_path: Path) -> None:
    log = tmp_path / "steps.log"
    gate = tmp_path / "gate"
    child = start(
        ["-c", RUN_FLOW, "gated", str(log), str(gate)],
        cwd=REPO_ROOT,
        env=child_env(KITARU_LEASE_SECONDS=LONG_LEASE),
    )
    try:
        wait_for(lambda: "first start" in read_log(log), what="the child's first checkpoint")
        exec_id = KitaruClient().executions.latest(flow="gated").exec_id
        resumed = _take_over_while_paused(child.pid, any_store, exec_id, gate)
        out, err = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()

    # The woken runner finished its checkpoint function, was refused at the write,
    # and stopped: it did not run "second" again.
    assert counts(log) == {"first start": 2, "first end": 2, "second": 1}, (out, err)
    # Its handle reports the execution as it is: completed by the new owner.
    assert out.split()[1:] == ["RESULT", "2"], (out, err)
    assert "Traceback" not in err
    after = KitaruClient().executions.get(exec_id)
    assert after.status is ExecutionStatus.COMPLETED
    assert after.checkpoints == resumed.checkpoints
    assert [len(c.attempts) for c in after.checkpoints] == [1, 1]
    # What the woken runner printed and published past the gate was not stored: only
    # the new owner's (this process) is in the execution's logs and event stream.
    client = KitaruClient()
    woke = [e.message for e in client.executions.logs(exec_id) if "woke in" in e.message]
    assert woke == [f"woke in {os.getpid()}"], woke
    published = [
        e.payload["data"]["pid"]
        for e in client.executions.events(exec_id, follow=False)
        if e.kind == "test.woke"
    ]
    assert published == [os.getpid()]


def test_cancel_from_another_process_stops_a_runner_at_its_next_write(
    any_store: str, tmp_path: Path
) -> None:
    log = tmp_path / "steps.log"
    gate = tmp_path / "gate"
    child = start(
        ["-c", RUN_FLOW, "gated", str(log), str(gate)],
        cwd=REPO_ROOT,
        env=child_env(KITARU_LEASE_SECONDS=LONG_LEASE),
    )
    try:
        wait_for(lambda: "first start" in read_log(log), what="the child's first checkpoint")
        exec_id = KitaruClient().executions.latest(flow="gated").exec_id
        assert KitaruClient().executions.cancel(exec_id).status is ExecutionStatus.CANCELLED
        gate.touch()
        out, err = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()

    assert out.split()[1:] == ["ERROR", "cancelled"], (out, err)
    assert counts(log) == {"first start": 1, "first end": 1}  # "second" never ran
    final = KitaruClient().executions.get(exec_id)
    assert final.status is ExecutionStatus.CANCELLED
    assert [c for c in final.checkpoints if c.status is CallStatus.COMPLETED] == []
    with get_backend().store.read() as conn:
        calls = conn.execute(
            sa.select(sa.func.count()).where(t.checkpoint_calls.c.exec_id == exec_id)
        ).scalar_one()
    assert calls == 0


def _parts_started(log: Path) -> list[tuple[int, int]]:
    """(call index, pid) of every ``gated_part`` body that started."""
    found = []
    for line in read_log(log):
        _, index, _, pid = line.split()
        found.append((int(index), int(pid)))
    return found


@pytest.mark.parametrize("lost_by", ["cancel", "takeover"])
def test_a_fan_out_that_lost_its_execution_starts_no_more_calls(
    any_store: str, tmp_path: Path, lost_by: str
) -> None:
    # Two calls run, six wait in the pool. Once the execution is cancelled or taken over,
    # the runner's two calls are refused at their writes, and the six it had not started
    # must never start there: their bodies (paid LLM calls...) would run for nothing.
    log, gate = tmp_path / "parts.log", tmp_path / "gate"
    child = start(
        ["-c", RUN_FLOW, "gated_fan_out", str(log), str(gate), "8"],
        cwd=REPO_ROOT,
        env=child_env(KITARU_LEASE_SECONDS=LONG_LEASE),  # its lease keeper never notices
    )
    try:
        wait_for(lambda: len(read_log(log)) == 2, what="the child's first two calls")
        exec_id = KitaruClient().executions.latest(flow="gated_fan_out").exec_id
        if lost_by == "cancel":
            assert KitaruClient().executions.cancel(exec_id).status is ExecutionStatus.CANCELLED
            gate.touch()
        else:
            resumed = _take_over_while_paused(child.pid, any_store, exec_id, gate)
        out, err = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()

    in_child = sorted(index for index, pid in _parts_started(log) if pid == child.pid)
    assert in_child == [0, 1], (out, err)
    assert "Traceback" not in err
    final = KitaruClient().executions.get(exec_id)
    if lost_by == "cancel":
        assert final.status is ExecutionStatus.CANCELLED
        assert [c for c in final.checkpoints if c.status is CallStatus.COMPLETED] == []
    else:  # the new owner ran every call, each once there
        assert final.status is ExecutionStatus.COMPLETED
        here = sorted(index for index, pid in _parts_started(log) if pid == os.getpid())
        assert here == list(range(8))
        assert final.checkpoints == resumed.checkpoints


def _alive(pid: int) -> bool:
    """Running (a zombie waiting for its new parent to reap it counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def test_an_isolated_call_dies_with_its_runner(any_store: str, tmp_path: Path) -> None:
    # Killed with its runner, the call's process must not go on beside the run a resume
    # starts: the two copies of the call would overlap.
    log, gate = tmp_path / "isolated.log", tmp_path / "gate"
    child = start(
        ["-c", RUN_FLOW, "isolated_hold", str(log), str(gate)], cwd=REPO_ROOT, env=child_env()
    )
    isolated: int | None = None
    try:
        wait_for(lambda: bool(read_log(log)), timeout=60, what="the isolated call")
        isolated = int(read_log(log)[0].split()[1])
        assert _alive(isolated)
        child.kill()
        child.wait()
        wait_for(lambda: not _alive(isolated), timeout=10, what="the isolated call to die")
        exec_id = KitaruClient().executions.latest(flow="isolated_hold").exec_id
        gate.touch()
        resumed = KitaruClient().executions.resume(exec_id, wait=True)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        if isolated is not None and _alive(isolated):
            os.kill(isolated, signal.SIGKILL)
    assert resumed.status is ExecutionStatus.COMPLETED
    second = int(read_log(log)[1].split()[1])
    assert [line.split()[0] for line in read_log(log)] == ["isolated", "isolated"]
    assert second != isolated


MANY_GATED = """
import sys
from tests.recovery._rc_flows import gated

log, gate, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
for _ in range(n):
    print(gated.run(log, gate).exec_id, flush=True)
sys.stdin.readline()  # hold on until killed
"""


def test_one_worker_pass_resumes_every_orphan_not_a_page(
    any_store: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A page of orphans used to be the limit of a ``--once`` pass (20 then)."""

    log = tmp_path / "steps.log"
    gate = tmp_path / "gate"
    n = 25
    child = start(["-c", MANY_GATED, str(log), str(gate), str(n)], cwd=REPO_ROOT, env=child_env())
    try:
        assert child.stdout is not None
        exec_ids = [child.stdout.readline().strip() for _ in range(n)]
        wait_for(lambda: counts(log)["first start"] == n, what="every execution's first checkpoint")
    finally:
        child.kill()
        child.communicate(timeout=30)

    def all_orphaned() -> bool:
        return len(get_backend().store.orphaned(limit=None)) == n

    wait_for(all_orphaned, timeout=30, what="the killed runner's leases to expire")
    gate.touch()
    # Pages of 7, so that one pass must read four of them.
    monkeypatch.setattr(kitaru.worker, "_PAGE", 7)
    assert kitaru.worker.run_worker(once=True) == n
    client = KitaruClient()
    for exec_id in exec_ids:
        assert client.executions.wait(exec_id, timeout=60).status is ExecutionStatus.COMPLETED
        assert FlowHandle(exec_id).get() == 2
    assert get_backend().store.orphaned(limit=None) == []


_between: dict[str, threading.Event] = {}  # the current test's gates
_b_bodies: list[str] = []


@kitaru.checkpoint(cache=False)
def _part_a() -> int:
    return 1


@kitaru.checkpoint(cache=False)
def _part_b(x: int) -> int:
    _b_bodies.append("b")  # a paid call, say: it must not run in a runner that lost it
    return x + 1


@kitaru.flow(cache=False)
def _a_pause_then_b() -> int:
    a = _part_a()
    _between["reached"].set()
    _between["release"].wait(60)
    return _part_b(a)


def test_a_runner_stopped_past_its_lease_starts_no_body_once_taken_over(
    any_store: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Stopped past its lease (SIGSTOP, a frozen VM), a runner wakes up with its lease
    keeper racing its body: the next checkpoint's body must not start if another process
    took the execution over meanwhile. The runner asks the store first."""
    from kitaru._runtime import leases

    _between.update(release=threading.Event(), reached=threading.Event())
    _b_bodies.clear()
    monkeypatch.setenv("KITARU_LEASE_SECONDS", LONG_LEASE)  # the keeper stays asleep
    handle = _a_pause_then_b.run()
    assert _between["reached"].wait(30)
    store = get_backend().store
    record = store.require_execution(handle.exec_id)
    taken = store.claim(  # another process takes it over while this runner "sleeps"
        record.id,
        owner="host:1:other-runner",
        lease_seconds=600,
        from_status=(ExecutionStatus.RUNNING,),
        expected_fence=record.fence,
        require_expired_lease=False,
    )
    assert taken is not None
    # The runner wakes up long after its last renewal (its wall clock jumped).
    woken = time.time() + 10_000
    monkeypatch.setattr(leases, "_now", lambda: woken, raising=False)
    _between["release"].set()
    wait_for(lambda: get_live_done(handle.exec_id), what="the stale runner to stop")
    assert _b_bodies == []  # it asked the store before the body, and stopped
    after = store.require_execution(handle.exec_id)
    assert (after.fence, after.lease_owner) == (taken.fence, "host:1:other-runner")
    assert [c.call_id for c in store.calls(handle.exec_id)] == ["_part_a"]


def get_live_done(exec_id: str) -> bool:
    from kitaru._runtime.driver import get_live

    live = get_live(exec_id)
    return live is None or live.done.is_set()

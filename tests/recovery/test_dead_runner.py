"""A runner of this machine that died does not make ``resume`` wait out its lease.

The lease owner names the runner's process (pid, its start time, the kernel boot
and pid namespace); a resume on the same machine takes over as soon as that
process is gone, and still refuses while it runs.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from kitaru import ExecutionStatus, KitaruClient, KitaruStateError
from kitaru._backend import get_backend
from kitaru._runtime.leases import runner_gone
from tests._printed import printed_exec_id
from tests.recovery._rc_support import (
    REPO_ROOT,
    RUN_FLOW,
    child_env,
    counts,
    read_log,
    start,
    wait_for,
)

LONG_LEASE = "600"


def _kill_a_runner_hanging_in_transform(log: Path, while_alive: Callable[[str], None]) -> str:
    """Run ``pipeline`` in a child with a 600 s lease, call ``while_alive(exec_id)`` while
    it hangs in ``transform``, SIGKILL it; the execution id (its lease still valid)."""
    child = start(
        ["-c", RUN_FLOW, "pipeline", str(log), "4"],
        cwd=REPO_ROOT,
        env=child_env(RC_HANG_IN="transform", KITARU_LEASE_SECONDS=LONG_LEASE),
    )
    try:
        wait_for(
            lambda: "transform hanging" in read_log(log) or child.poll() is not None,
            what="the runner to hang in transform",
        )
        assert child.poll() is None, child.communicate()
        assert child.stdout is not None
        exec_id = printed_exec_id(child.stdout.readline())
        while_alive(exec_id)
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
        child.communicate()
    lease_end = get_backend().store.require_execution(exec_id).lease_expires_at
    assert lease_end is not None
    assert lease_end > time.time() + 300  # still valid for minutes
    return exec_id


def test_resume_takes_over_at_once_from_a_sigkilled_runner(any_store: str, tmp_path: Path) -> None:
    log = tmp_path / "steps.log"
    client = KitaruClient()

    def lease_holds(exec_id: str) -> None:
        # While the runner lives, its lease holds.
        with pytest.raises(KitaruStateError, match="lease"):
            client.executions.resume(exec_id)

    exec_id = _kill_a_runner_hanging_in_transform(log, lease_holds)

    resumed = client.executions.resume(exec_id, wait=True)

    assert resumed.status is ExecutionStatus.COMPLETED
    assert resumed.run_count == 2
    assert client.executions.get(exec_id).checkpoints[-1].artifacts[0].load() == "result=50"
    assert counts(log) == {"fetch": 1, "transform": 2, "transform hanging": 1, "finish": 1}


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
def test_runner_gone_tells_a_dead_or_reused_pid_from_a_live_runner() -> None:
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from kitaru._runtime.leases import RUNNER_ID; "
            "print(RUNNER_ID, flush=True); sys.stdin.read()",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        owner = child.stdout.readline().strip()
        host, pid, nonce, machine, started = owner.rsplit(":", 4)
        assert int(pid) == child.pid
        assert not runner_gone(owner)
        # Same pid, another start time: the pid was reused by a new process.
        assert runner_gone(f"{host}:{pid}:{nonce}:{machine}:{int(started) + 1}")
        # Another machine (or pid namespace): nothing can be told from here.
        assert not runner_gone(f"{host}:{pid}:{nonce}:00000000:{int(started) + 1}")
        # Not an owner this version writes.
        assert not runner_gone("host-1:pid-42:thread-7")
    finally:
        assert child.stdin is not None
        child.stdin.close()
        child.wait(timeout=30)
    assert runner_gone(owner)


def test_a_worker_takes_over_a_dead_runner_of_this_machine_at_once(
    any_store: str, tmp_path: Path
) -> None:
    """``kitaru worker`` used to wait out the dead runner's lease (600 s here)."""
    from kitaru.worker import run_worker

    log = tmp_path / "steps.log"

    def nothing_to_take_over(_exec_id: str) -> None:
        assert run_worker(once=True) == 0  # its runner is alive: nothing to take over

    exec_id = _kill_a_runner_hanging_in_transform(log, nothing_to_take_over)

    assert run_worker(once=True) == 1

    final = KitaruClient().executions.wait(exec_id, timeout=60)
    assert final.status is ExecutionStatus.COMPLETED
    assert counts(log) == {"fetch": 1, "transform": 2, "transform hanging": 1, "finish": 1}


def test_a_worker_skips_an_orphan_it_cannot_run_and_resumes_the_others(
    any_store: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An orphan on a stack this worker's config does not have (another user's, on a
    shared store) used to stop the worker, and with it every other resume."""
    from kitaru._store import schema
    from kitaru.worker import run_worker

    stranger = _kill_a_runner_hanging_in_transform(tmp_path / "stranger.log", lambda _: None)
    ours = _kill_a_runner_hanging_in_transform(tmp_path / "ours.log", lambda _: None)
    with get_backend().store.write() as conn:  # started from a config with that stack
        conn.execute(
            schema.executions.update()
            .where(schema.executions.c.id == stranger)
            .values(stack="someone-elses")
        )

    with caplog.at_level("WARNING", logger="kitaru.worker"):
        assert run_worker(once=True) == 1
        assert run_worker(once=True) == 0  # still not runnable here; nothing else to do

    final = KitaruClient().executions.wait(ours, timeout=60)
    assert final.status is ExecutionStatus.COMPLETED
    skipped = [r.getMessage() for r in caplog.records if "Skipping execution" in r.getMessage()]
    assert len(skipped) == 2  # once per pass of a fresh run_worker: here, two passes
    assert stranger in skipped[0]
    assert "someone-elses" in skipped[0]
    stored = get_backend().store.require_execution(stranger)
    assert stored.status is ExecutionStatus.RUNNING  # left for a worker that has the stack

"""Ctrl-C in a user's script that waits for its execution (``handle.wait()``).

Real processes get a real SIGINT: the script exits with 130 and one line on
stderr (no traceback), the execution is recorded cancelled (interrupted, no
lease), the checkpoint that was running never records an output, and
``resume`` continues it at once although the script's lease was 600 s.
"""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import pytest

from kitaru import ExecutionStatus, KitaruClient
from kitaru._backend import get_backend
from tests.recovery._rc_support import REPO_ROOT, child_env, counts, read_log, start, wait_for

SCRIPT = "import sys; from tests.recovery._rf_flows import main; main(sys.argv[1:])"
#: Far longer than any test: resuming at once proves the lease was not waited out.
LONG_LEASE = "600"


def _interrupt(log: Path, *, presses: int) -> tuple[subprocess.CompletedProcess[str], str]:
    """Run the script until its checkpoint hangs under wait(), then press Ctrl-C."""
    proc = start(
        ["-c", SCRIPT, str(log)],
        cwd=REPO_ROOT,
        env=child_env(RF_HANG="1", KITARU_LEASE_SECONDS=LONG_LEASE),
    )
    try:
        wait_for(
            lambda: "slow hanging" in read_log(log) or proc.poll() is not None,
            timeout=60,
            what="the checkpoint to hang while the script waits",
        )
        assert proc.poll() is None, proc.communicate()
        assert proc.stdout is not None
        exec_id = proc.stdout.readline().strip()
        proc.send_signal(signal.SIGINT)
        if presses == 2:
            store = get_backend().store
            # Press again while the first press is still being handled (its cancel is
            # recorded, the runner is given a moment), or right after it exited.
            wait_for(
                lambda: (
                    store.get_status(exec_id) is not ExecutionStatus.RUNNING
                    or proc.poll() is not None
                ),
                timeout=60,
                what="the first Ctrl-C to be handled",
            )
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err), exec_id


@pytest.mark.parametrize("presses", [1, 2])
def test_ctrl_c_in_wait_cancels_the_execution_and_exits_130_without_a_traceback(
    any_store: str, tmp_path: Path, presses: int
) -> None:
    log = tmp_path / "steps.log"
    done, exec_id = _interrupt(log, presses=presses)

    assert done.returncode == 130, done.stderr
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("Interrupted")
    assert f"kitaru executions resume {exec_id}" in lines[0]
    assert "RESULT" not in done.stdout

    record = get_backend().store.require_execution(exec_id)
    assert record.status is ExecutionStatus.CANCELLED
    assert record.failure is not None
    assert record.failure["reason"] == "interrupted"
    assert "interrupted by the user" in record.failure["message"]
    assert record.lease_owner is None
    # The checkpoint that was running when Ctrl-C came recorded no output.
    client = KitaruClient()
    calls = {c.call_id: c.status.value for c in client.executions.get(exec_id).checkpoints}
    assert calls.get("prepare") == "completed"
    assert calls.get("slow") != "completed"

    # At once: the script's 600 s lease went with the cancellation.
    resumed = client.executions.resume(exec_id, wait=True)
    assert resumed.status is ExecutionStatus.COMPLETED
    assert client.executions.get(exec_id).checkpoints[-1].artifacts[0].load() == 2
    assert counts(log) == {"prepare": 1, "slow": 2, "slow hanging": 1}


def test_ctrl_c_while_waiting_for_another_processs_execution_leaves_it_running(
    any_store: str, tmp_path: Path
) -> None:
    log = tmp_path / "steps.log"
    runner = start(
        ["-c", SCRIPT, str(log)],
        cwd=REPO_ROOT,
        env=child_env(RF_HANG="1", KITARU_LEASE_SECONDS=LONG_LEASE),
    )
    waiter: subprocess.Popen[str] | None = None
    try:
        wait_for(lambda: "slow hanging" in read_log(log) or runner.poll() is not None, timeout=60)
        assert runner.poll() is None, runner.communicate()
        assert runner.stdout is not None
        exec_id = runner.stdout.readline().strip()
        waiter = start(
            [
                "-c",
                "import sys; from tests.recovery._rf_flows import main_wait_for; "
                "main_wait_for(sys.argv[1:])",
                exec_id,
            ],
            cwd=REPO_ROOT,
            env=child_env(),
        )
        assert waiter.stdout is not None
        assert waiter.stdout.readline().strip() == "WAITING"
        waiter.send_signal(signal.SIGINT)
        out, err = waiter.communicate(timeout=60)

        assert waiter.returncode == 130, err
        assert "RESULT" not in out
        assert "Traceback" not in err
        assert err.strip().splitlines() == [
            f"Interrupted: stopped waiting for execution {exec_id} (it is running). "
            f"Stop it with `kitaru executions cancel {exec_id}`."
        ]
        # Not this process's to stop: it still runs in the other one.
        assert runner.poll() is None
        assert get_backend().store.get_status(exec_id) is ExecutionStatus.RUNNING
    finally:
        for proc in (runner, waiter):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.communicate()

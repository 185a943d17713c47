"""SIGKILL a process in the middle of a fan-out of 20 submissions, resume it in a new one.

The child runs ``_crash_flow.py`` and is killed once a few calls have finished
(the store says so) while others are still running or queued: some calls wait on a
gate file that is created only after the kill, so they are certainly in flight. A new process
(``python -m kitaru.worker EXEC_ID``, from another directory, once the 1 s lease
expired) resumes it. Checks: the result is right; calls recorded as completed
before the kill never ran again; every other call ran exactly once more; each
call id is recorded once, completed, with one completed attempt and one output.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from kitaru import KitaruClient
from tests.fanout._crash_flow import gate_path
from tests.fanout._support import call_id
from tests.recovery._fi_harness import (
    child_env,
    read_ledger,
    resume_in_new_process,
    wait_until_orphaned,
)

SCRIPT = Path(__file__).resolve().with_name("_crash_flow.py")
N = 20


class HarnessError(RuntimeError):
    """The crash was not staged as planned (not a finding about Kitaru)."""


def _recorded_completions(exec_id: str) -> int:
    execution = KitaruClient().executions.get(exec_id)
    return sum(1 for c in execution.checkpoints if c.status.value == "completed")


def _kill_mid_fan_out(
    tmp_path: Path, mode: str, kill_after_ends: int
) -> tuple[str, Path, dict[str, str], Counter[str]]:
    """Run the script until ``kill_after_ends`` calls finished, SIGKILL it.

    Returns (exec id, ledger, call id -> artifact id of calls completed at the kill,
    ledger at the kill).
    """
    project, ledger = tmp_path / "project", tmp_path / "ledger.txt"
    project.mkdir()
    proc = subprocess.Popen(
        [sys.executable, str(SCRIPT), str(ledger), mode, str(N)],
        cwd=project,
        env=child_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line.startswith("EXEC "):
            raise HarnessError(f"the flow script printed {line!r} instead of its execution id")
        exec_id = line.split()[1]
        deadline = time.monotonic() + 30
        # Wait for recorded completions, not for ledger "end" lines: a call's
        # function returns before its output commits, so ends can run ahead.
        while _recorded_completions(exec_id) < kill_after_ends:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise HarnessError(f"the fan-out did not reach {kill_after_ends} ends")
            time.sleep(0.005)
        proc.kill()
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()
    wait_until_orphaned(exec_id)
    execution = KitaruClient().executions.get(exec_id)
    completed = {
        c.call_id: c.output.artifact_id
        for c in execution.checkpoints
        if c.status.value == "completed" and c.output is not None
    }
    if not 0 < len(completed) < N:
        raise HarnessError(f"the kill was not mid-fan-out: {len(completed)} of {N} completed")
    before = read_ledger(ledger)
    Path(gate_path(str(ledger))).touch()  # held calls may finish in the resumed run
    return exec_id, ledger, completed, before


def _resume_and_verify(
    tmp_path: Path,
    exec_id: str,
    ledger: Path,
    completed: dict[str, str],
    before: Counter[str],
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    run = resume_in_new_process(exec_id, cwd=elsewhere)
    client = KitaruClient()
    execution = client.executions.get(exec_id)
    failure = execution.failure.message if execution.failure else None
    assert run.returncode == 0, f"worker: {run.stdout}{run.stderr}; failure: {failure}"
    assert run.stdout.strip() == f"{exec_id} completed", run.stdout + run.stderr
    assert execution.status.value == "completed"
    assert execution.run_count == 2
    assert client.artifacts.list(exec_id, role="flow_result")[0].load() == [i * i for i in range(N)]

    # Every call id recorded exactly once, completed, with one completed attempt and output.
    ids = [c.call_id for c in execution.checkpoints]
    assert ids == [call_id("work", i) for i in range(N)]
    for i, call in enumerate(execution.checkpoints):
        assert call.status.value == "completed", call.call_id
        done = [(a.run, a.status) for a in call.attempts if a.status == "completed"]
        expected_run = 1 if call.call_id in completed else 2
        assert done == [(expected_run, "completed")], (call.call_id, call.attempts)
        assert call.output is not None
        assert call.output.load() == i * i
        if call.call_id in completed:
            assert call.output.artifact_id == completed[call.call_id]
    outputs = Counter(a.call_id for a in client.artifacts.list(exec_id) if a.role == "output")
    assert outputs == Counter(call_id("work", i) for i in range(N))

    # The ledger: completed calls never ran again; every other call ran exactly once more.
    after = read_ledger(ledger)
    assert after["main"] == 1
    for i in range(N):
        start, end = f"{i} start", f"{i} end"
        if call_id("work", i) in completed:
            assert (after[start], after[end]) == (before[start], before[end]), i
        else:
            assert after[start] == before[start] + 1, (i, before[start], after[start])
            assert after[end] >= 1, i


def test_crash_mid_fan_out_with_calls_finishing_in_order(tmp_path: Path, any_store: str) -> None:
    exec_id, ledger, completed, before = _kill_mid_fan_out(tmp_path, "inorder", 6)
    in_flight = [i for i in range(N) if before[f"{i} start"] and not before[f"{i} end"]]
    if not in_flight:
        raise HarnessError("no call was in flight at the kill")
    _resume_and_verify(tmp_path, exec_id, ledger, completed, before)


def test_crash_mid_fan_out_with_calls_finishing_out_of_order(tmp_path: Path) -> None:
    exec_id, ledger, completed, before = _kill_mid_fan_out(tmp_path, "scattered", 4)
    # The realistic case: a later submission completed while an earlier one was running.
    done = sorted(int(cid.rpartition(":")[2]) - 1 if ":" in cid else 0 for cid in completed)
    if done == list(range(len(done))):
        raise HarnessError(f"calls {done} completed in submission order; expected a gap")
    _resume_and_verify(tmp_path, exec_id, ledger, completed, before)

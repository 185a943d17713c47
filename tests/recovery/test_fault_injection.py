"""Fault injection: SIGKILL a real process running a flow at every checkpoint boundary.

For each boundary (before a checkpoint starts, inside its function, inside it
once the store shows it running, just after it completed) a child process runs
``_fi_flow.py`` (four checkpoint calls) and is killed there; a new process
(``python -m kitaru.worker EXEC_ID``, started from another working directory
once the 1 s lease expired) resumes it. The checks (see ``_fi_harness.verify``):
the result is right, checkpoints that had completed never run again, the killed
one runs at most once more, and the store holds each call exactly once,
completed, with one loadable output.

Also: resume is refused while the dead runner's lease is valid; two processes
racing to resume one orphan leave exactly one winner; ``python -m kitaru.worker``
without an id finds an orphan by itself; and a long-running worker that lost
such a race takes the orphan over once the winner dies (it used to skip it forever).

``bench/crash_points.py`` runs the same harness over many more crash points.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from kitaru import KitaruClient
from kitaru._backend import forget_backends, get_backend
from tests.recovery._fi_harness import (
    CALL_IDS,
    KILL_POINTS,
    FlowProcess,
    Snapshot,
    child_env,
    kill_at_point,
    read_ledger,
    resume_in_new_process,
    snapshot,
    start_worker,
    verify,
    wait_until_finished,
    wait_until_orphaned,
)

N = 5
STALE_WORKER = Path(__file__).resolve().with_name("_fi_stale_worker.py")
#: A few boundaries of different kinds, for the (slower) PostgreSQL runs.
PG_POINTS = ("inside:load", "after:scale", "marked:scale:2", "before:summarize")


@dataclass
class Dirs:
    project: Path  # where the flow script is started from
    elsewhere: Path  # where resuming processes start: not the script's directory
    ledger: Path


@pytest.fixture
def dirs(tmp_path: Path) -> Dirs:
    project, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    project.mkdir()
    elsewhere.mkdir()
    return Dirs(project, elsewhere, tmp_path / "ledger.txt")


@pytest.fixture
def pg_store(postgres_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Point this process and its children at a fresh PostgreSQL schema."""
    monkeypatch.setenv("KITARU_STORE_URL", postgres_url)
    forget_backends()
    return postgres_url


def _assert_recovered(
    exec_id: str, before: Snapshot, dirs: Dirs, *, point: str | None = None
) -> None:
    problems = verify(exec_id, N, before, dirs.ledger, point=point)
    assert not problems, f"execution {exec_id} ({point}):\n  " + "\n  ".join(problems)


def _crash_and_resume(dirs: Dirs, point: str) -> None:
    exec_id, _ = kill_at_point(dirs.ledger, N, point, cwd=dirs.project)
    wait_until_orphaned(exec_id)
    before = snapshot(exec_id, dirs.ledger)
    assert before.status == "running"

    run = resume_in_new_process(exec_id, cwd=dirs.elsewhere)

    assert run.returncode == 0, f"worker failed after {run.tries} tries:\n{run.stderr}"
    assert run.stdout.strip() == f"{exec_id} completed"
    _assert_recovered(exec_id, before, dirs, point=point)


def test_harness_baseline_without_a_kill(dirs: Dirs) -> None:
    """The unkilled flow passes the same checks (so the checks are not vacuous)."""
    proc = FlowProcess(dirs.ledger, N, cwd=dirs.project)
    try:
        exec_id = proc.wait_for("EXEC ").split()[1]
        proc.wait_for(f"DONE {exec_id}")
        assert proc.proc.wait(timeout=30) == 0
    finally:
        proc.close()
    assert read_ledger(dirs.ledger) == {
        "main": 1,
        **{f"{cid} {edge}": 1 for cid in CALL_IDS for edge in ("start", "end")},
    }
    nothing_before = Snapshot("running", {}, Counter({"main": 1}))
    problems = verify(exec_id, N, nothing_before, dirs.ledger)
    assert not problems, "\n".join(problems)
    assert KitaruClient().executions.get(exec_id).run_count == 1


@pytest.mark.parametrize("point", KILL_POINTS)
def test_sigkill_at_boundary_then_resume_in_new_process(dirs: Dirs, point: str) -> None:
    _crash_and_resume(dirs, point)


@pytest.mark.postgres
@pytest.mark.parametrize("point", PG_POINTS)
def test_sigkill_at_boundary_then_resume_on_postgres(pg_store: str, dirs: Dirs, point: str) -> None:
    _crash_and_resume(dirs, point)


def test_resume_does_not_wait_out_the_lease_of_a_dead_runner_of_this_machine(
    dirs: Dirs,
) -> None:
    """The lease owner names a process of this machine that is gone: take over at once."""
    exec_id, _ = kill_at_point(dirs.ledger, N, "after:scale", cwd=dirs.project, lease_seconds=600)
    lease_end = get_backend().store.require_execution(exec_id).lease_expires_at
    assert lease_end is not None
    assert lease_end > time.time() + 300

    proc = start_worker(exec_id, cwd=dirs.elsewhere)
    out, err = proc.communicate(timeout=120)

    assert proc.returncode == 0, err
    assert out.split() == [exec_id, "completed"]
    execution = KitaruClient().executions.get(exec_id)
    assert execution.status.value == "completed"
    assert execution.run_count == 2


@pytest.fixture
def workers() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def test_two_processes_racing_to_resume_one_orphan_have_one_winner(
    any_store: str, dirs: Dirs, workers: list[subprocess.Popen[str]]
) -> None:
    exec_id, _ = kill_at_point(dirs.ledger, N, "after:scale", cwd=dirs.project)
    wait_until_orphaned(exec_id)
    before = snapshot(exec_id, dirs.ledger)

    # Slow checkpoints in the resumed run keep the winner running while the loser
    # tries, so the loser meets a running execution rather than a finished one.
    workers.extend(start_worker(exec_id, cwd=dirs.elsewhere, FI_STEP_DELAY="1.0") for _ in range(2))
    outcomes = []
    for proc in workers:
        out, err = proc.communicate(timeout=60)
        outcomes.append((proc.returncode, out, err))

    winners = [o for o in outcomes if o[0] == 0]
    losers = [o for o in outcomes if o[0] != 0]
    assert len(winners) == 1, outcomes
    assert winners[0][1].strip() == f"{exec_id} completed"
    assert len(losers) == 1, outcomes
    code, _, err = losers[0]
    assert code == 1, outcomes
    assert f"Execution {exec_id}" in err
    # Lost the fenced claim, or saw the winner's fresh lease.
    assert "another process" in err or "running under" in err, err
    _assert_recovered(exec_id, before, dirs, point="after:scale")


def test_worker_without_id_resumes_an_orphan_by_itself(
    any_store: str, dirs: Dirs, workers: list[subprocess.Popen[str]]
) -> None:
    exec_id, _ = kill_at_point(dirs.ledger, N, "inside:scale:2", cwd=dirs.project)
    before = snapshot(exec_id, dirs.ledger)
    assert before.status == "running"

    # Started while the dead runner's lease is still valid: it must wait for it.
    worker = start_worker("--poll-interval", "0.2", cwd=dirs.elsewhere)
    workers.append(worker)
    assert wait_until_finished(exec_id, timeout=30) == "completed"
    worker.send_signal(signal.SIGINT)
    _, err = worker.communicate(timeout=30)

    assert worker.returncode == 130, err
    assert f"Resumed execution {exec_id}" in err
    _assert_recovered(exec_id, before, dirs, point="inside:scale:2")


def test_a_worker_that_lost_a_race_resumes_the_orphan_once_the_winner_dies(
    dirs: Dirs, workers: list[subprocess.Popen[str]]
) -> None:
    """A lost claim race must not make a long-running worker ignore the execution."""
    exec_id, _ = kill_at_point(dirs.ledger, N, "after:load", cwd=dirs.project)
    wait_until_orphaned(exec_id)
    log = dirs.elsewhere / "stale-worker.log"
    with log.open("w") as log_file:
        stale = subprocess.Popen(
            [sys.executable, str(STALE_WORKER)],
            cwd=dirs.elsewhere,
            env=child_env(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log_file,
            text=True,
        )
    workers.append(stale)
    assert stale.stdout is not None
    assert stale.stdin is not None
    # Its poll saw the orphan; now another process claims it first (and is slow) ...
    assert stale.stdout.readline().split() == ["READY", "1"]
    winner = start_worker(exec_id, cwd=dirs.elsewhere, FI_STEP_DELAY="30")
    workers.append(winner)
    _poll(lambda: KitaruClient().executions.get(exec_id).run_count == 2, "the claim")
    # ... so the stale worker's attempt is refused (and logged) ...
    stale.stdin.write("GO\n")
    stale.stdin.flush()
    _poll(lambda: exec_id in log.read_text(), "the refusal")
    assert "Resumed" not in log.read_text()
    # ... and then the winner dies: its lease runs out in 1 s, the worker should take over.
    os.kill(winner.pid, signal.SIGKILL)
    winner.wait(timeout=10)
    before = snapshot(exec_id, dirs.ledger)
    try:
        status = wait_until_finished(exec_id, timeout=5)
    except RuntimeError:
        status = KitaruClient().executions.get(exec_id).status.value
    assert status == "completed", log.read_text()
    problems = verify(exec_id, N, before, dirs.ledger)
    assert not problems, "\n".join(problems)


def _poll(condition: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.05)

"""Child processes, crash simulation and polling for the recovery tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

from kitaru._backend import get_backend
from tests._printed import printed_exec_id

REPO_ROOT = Path(__file__).resolve().parents[2]

#: A child's lease lasts 1 s, so its lease keeper renews (and polls for a
#: cancel) every ~0.33 s and a dead child's execution is orphaned within 1 s.
CHILD_LEASE_SECONDS = "1"

RUN_FLOW = "import sys; from tests.recovery._rc_flows import main; main(sys.argv[1:])"


def child_env(*, pythonpath: bool = True, **extra: str) -> dict[str, str]:
    """This process's environment (KITARU_CONFIG_PATH, KITARU_STORE_URL, ...) for a child."""
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    if pythonpath:
        env["PYTHONPATH"] = str(REPO_ROOT)
    env["KITARU_LEASE_SECONDS"] = CHILD_LEASE_SECONDS
    env.update(extra)
    return env


def run(
    args: Sequence[str], *, cwd: Path, env: dict[str, str], timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def start(args: Sequence[str], *, cwd: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def read_log(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def counts(path: Path) -> Counter[str]:
    return Counter(read_log(path))


def wait_for(predicate: Callable[[], bool], *, timeout: float = 20, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or predicate}")
        time.sleep(0.02)


def wait_lease_expired(exec_id: str, *, timeout: float = 10) -> None:
    """Until the dead runner's lease has run out (the execution is orphaned)."""
    store = get_backend().store

    def expired() -> bool:
        record = store.require_execution(exec_id)
        return record.lease_expires_at is not None and record.lease_expires_at < time.time()

    wait_for(expired, timeout=timeout, what=f"the lease of {exec_id} to expire")


def crash_in_child(
    args: Sequence[str],
    *,
    cwd: Path,
    env: dict[str, str],
    log: Path,
    step: str,
    kill: bool = False,
) -> str:
    """Run a flow in a child that dies inside checkpoint ``step``; return the exec id.

    With ``kill`` the child hangs inside the step and this process SIGKILLs it;
    otherwise the child calls ``os._exit(0)`` there itself. Returns once the
    execution is orphaned (its lease expired).
    """
    env = {**env, ("RC_HANG_IN" if kill else "RC_DIE_IN"): step}
    child = start(args, cwd=cwd, env=env)
    try:
        marker = f"{step} {'hanging' if kill else 'dying'}"
        wait_for(
            lambda: marker in read_log(log) or child.poll() is not None,
            what=f"the child to reach {marker!r}",
        )
        if kill:
            os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
        out, err = child.communicate(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert marker in read_log(log), f"child exited early:\n{out}\n{err}"
    if kill:
        assert child.returncode == -signal.SIGKILL
    else:
        assert child.returncode == 0, err
    exec_id = printed_exec_id(out)
    wait_lease_expired(exec_id)
    return exec_id


def pause_runner(pid: int, store_url: str, *, timeout: float = 20) -> None:
    """SIGSTOP a runner process at a moment it holds no SQLite write lock.

    A process stopped inside a SQLite write transaction blocks every writer of
    that file until it continues: SQLite has no server that could end it (on
    PostgreSQL the server ends such a session, which the tests rely on). Tests
    that pause a runner to have it taken over pause it between transactions.
    """
    if not store_url.startswith("sqlite"):
        os.kill(pid, signal.SIGSTOP)
        return
    import sqlite3

    path = store_url.split("sqlite:///", 1)[1].split("?", 1)[0]
    deadline = time.monotonic() + timeout
    while True:
        os.kill(pid, signal.SIGSTOP)
        probe = sqlite3.connect(path, timeout=0.05, isolation_level=None)
        try:
            probe.execute("BEGIN IMMEDIATE")
            probe.execute("ROLLBACK")
            return
        except sqlite3.OperationalError:
            if time.monotonic() > deadline:
                raise
            os.kill(pid, signal.SIGCONT)  # mid-transaction: let it finish, try again
            time.sleep(0.01)
        finally:
            probe.close()

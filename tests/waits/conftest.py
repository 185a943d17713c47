"""Fixtures and helpers for the ``kitaru.wait()`` tests.

Every test ends with no runner of its own left behind: executions still
running or waiting are cancelled and their threads joined, before the store
(a PostgreSQL schema for ``any_store`` tests) is dropped.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from kitaru import KitaruError
from kitaru._runtime.driver import get_live
from kitaru.client import KitaruClient
from kitaru.client._models import Execution
from kitaru.errors import KitaruTimeoutError

REPO_ROOT = Path(__file__).resolve().parents[2]
EXEC_THREAD_PREFIX = "kitaru-exec-"

T = TypeVar("T")


@pytest.fixture(autouse=True)
def _no_runner_left_behind(request: pytest.FixtureRequest) -> Iterator[None]:
    if "any_store" in request.fixturenames:
        # Set up inside this fixture so that it is torn down after the cleanup below.
        request.getfixturevalue("any_store")
    threads_before = set(exec_threads())
    yield
    client = KitaruClient()
    with contextlib.suppress(KitaruError):
        for execution in client.executions.list(status=["running", "waiting"], limit=5000):
            with contextlib.suppress(KitaruError):
                client.executions.cancel(execution.exec_id)
    for thread in set(exec_threads()) - threads_before:
        thread.join(timeout=10)


@pytest.fixture
def client() -> KitaruClient:
    return KitaruClient()


def exec_threads(exec_id: str | None = None) -> list[threading.Thread]:
    """Runner threads (``kitaru-exec-<id prefix>``) alive in this process."""
    prefix = EXEC_THREAD_PREFIX + (exec_id[:8] if exec_id else "")
    return [t for t in threading.enumerate() if t.name.startswith(prefix) and t.is_alive()]


def child_pids() -> list[int]:
    """Live child processes of this process, read from /proc (no psutil needed)."""
    me = os.getpid()
    children = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid ...: comm may hold spaces, so split after the last ")".
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == me and fields[0] != "Z":
            children.append(int(entry))
    return children


def eventually(
    check: Callable[[], T | None],
    *,
    timeout: float = 30,
    what: str = "condition",
    pause: float = 0.01,
) -> T:
    """Poll ``check`` until it returns something truthy; fail after ``timeout`` s.

    ``pause``: between checks (longer for a costly check, which would otherwise take
    CPU from what it waits for)."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(pause)


def wait_for_status(client: KitaruClient, exec_id: str, status: str, timeout: float = 30) -> None:
    eventually(
        lambda: client.executions.get(exec_id).status.value == status,
        timeout=timeout,
        what=f"execution {exec_id} to be {status}",
    )


def wait_until_released(client: KitaruClient, exec_id: str, timeout: float = 30) -> Execution:
    """Until the runner let go: waiting, no lease, no runner thread or live entry here."""

    def released() -> Execution | None:
        execution = client.executions.get(exec_id)
        if (
            execution.status.value == "waiting"
            and execution.lease_owner is None
            and execution.lease_expires_at is None
            and get_live(exec_id) is None
            and not exec_threads(exec_id)
        ):
            return execution
        return None

    return eventually(released, timeout=timeout, what=f"execution {exec_id} to be released")


def wait_until_live_waiting(client: KitaruClient, exec_id: str, timeout: float = 30) -> Execution:
    """Until the execution waits with its runner still alive in this process."""

    def live_waiting() -> Execution | None:
        execution = client.executions.get(exec_id)
        if (
            execution.status.value == "waiting"
            and execution.pending_wait is not None
            and get_live(exec_id) is not None
        ):
            return execution
        return None

    return eventually(live_waiting, timeout=timeout, what=f"{exec_id} to wait with a live runner")


def assert_not_finished(client: KitaruClient, exec_id: str, seconds: float = 0.2) -> None:
    with pytest.raises(KitaruTimeoutError):
        client.executions.wait(exec_id, timeout=seconds)


def child_env(**extra: str) -> dict[str, str]:
    """This process's environment (KITARU_CONFIG_PATH, KITARU_STORE_URL) for a child."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO_ROOT)
    env.pop("CI", None)
    env["COLUMNS"] = "200"
    env.update(extra)
    return env


def kitaru_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """``python -m kitaru.cli ARGS`` in a child process, without a terminal."""
    return subprocess.run(
        [sys.executable, "-m", "kitaru.cli", *args],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=timeout,
        env=child_env(),
        check=False,
    )


def popen_cli(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "kitaru.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env=child_env(),
    )


def one_error_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("Error: "), stderr
    assert "Traceback" not in stderr
    return lines[0]


Json = dict[str, Any]


def interrupt_while_waiting(exec_id: str) -> None:
    """Stop a released waiting execution as Ctrl-C in its runner would have: cancelled,
    resumable, its wait still pending (``resume`` then runs the body again)."""
    from kitaru._backend import get_backend
    from kitaru._runtime.control import INTERRUPTED_FAILURE
    from kitaru._store import ExecutionStatus

    assert get_backend().store.finish_execution(
        exec_id,
        status=ExecutionStatus.CANCELLED,
        failure=dict(INTERRUPTED_FAILURE),
        only_if_status=[ExecutionStatus.WAITING],
    )

"""Fixtures of the durable-time tests: no runner of a test is left behind."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator

import pytest

from kitaru import KitaruError
from kitaru.client import KitaruClient
from tests.waits.conftest import REPO_ROOT, child_env, exec_threads


@pytest.fixture(autouse=True)
def _no_runner_left_behind(request: pytest.FixtureRequest) -> Iterator[None]:
    if "any_store" in request.fixturenames:
        request.getfixturevalue("any_store")  # torn down after the cleanup below
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


@pytest.fixture
def spawn() -> Iterator[Callable[..., subprocess.Popen[str]]]:
    """Child Python processes (repo on PYTHONPATH, this test's store); killed at teardown."""
    started: list[subprocess.Popen[str]] = []

    def _spawn(*args: str, **env: str) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [sys.executable, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            env=child_env(**env),
            cwd=str(REPO_ROOT),
            start_new_session=True,
        )
        started.append(proc)
        return proc

    yield _spawn
    for proc in started:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.communicate(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.communicate()

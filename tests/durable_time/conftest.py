"""Fixtures of the durable-time tests: no runner of a test is left behind."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator

import pytest

# The same clean-up and client fixtures as the wait tests (runner threads joined, live
# executions cancelled after each test).
from tests.waits.conftest import (  # noqa: F401
    REPO_ROOT,
    _no_runner_left_behind,
    child_env,
    client,
)


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

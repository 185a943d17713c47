"""Helpers for the observability tests: the CLI in-process and as a process, children."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from tests._cli import Invoke, in_process

REPO_ROOT = Path(__file__).resolve().parents[2]
RUN_OBS_FLOW = "import sys; from tests.observe._obs_flows import main; main(sys.argv[1:])"


@pytest.fixture
def cli() -> Invoke:
    """``kitaru ARGS`` in this process."""
    return in_process()


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    state = tmp_path / "state"
    state.mkdir()
    return state


def child_env(state: Path, **extra: str) -> dict[str, str]:
    """This process's environment (KITARU_CONFIG_PATH, store URL) for a child process."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO_ROOT)
    env["OBS_STATE"] = str(state)
    env["KITARU_LEASE_SECONDS"] = "1"
    env["COLUMNS"] = "200"
    env.update(extra)
    return env


def run_child(
    args: Sequence[str], *, env: dict[str, str], timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def start_child(args: Sequence[str], *, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )


def wait_for(predicate: Callable[[], bool], *, timeout: float = 30, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or predicate}")
        time.sleep(0.02)

"""Fixtures for CLI tests: run ``kitaru`` in-process or as a real subprocess, and flows.

The root conftest gives every test its own ``KITARU_CONFIG_PATH`` (so store and
artifacts) and working directory; a subprocess inherits both through the
environment.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pytest

from tests._cli import CliResult, Invoke, in_process


@pytest.fixture
def cli() -> Invoke:
    """Run ``kitaru ARGS`` in this process (fast; shares the flows imported here)."""
    return in_process()


@pytest.fixture
def kitaru_proc() -> Invoke:
    """Run ``python -m kitaru.cli ARGS`` as a real process (no stdin, like CI)."""

    def run(*args: str, timeout: float = 60) -> CliResult:
        proc = subprocess.run(
            [sys.executable, "-m", "kitaru.cli", *args],
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            timeout=timeout,
            env={**os.environ, "COLUMNS": "200"},
        )
        return CliResult(proc.returncode, proc.stdout, proc.stderr)

    return run


FLOWS_SOURCE = """\
import os
import time
from pathlib import Path

from kitaru import checkpoint, flow

STATE = Path({state!r})


@checkpoint
def fetch(x: int) -> int:
    return x + 1


@checkpoint(type="llm")
def think(x: int) -> int:
    # Fails the first time it ever runs (a marker file remembers), then succeeds.
    marker = STATE / "think-failed-once"
    if not marker.exists():
        marker.write_text("x")
        raise ValueError("model overloaded")
    return x * 10


@checkpoint
def finish(x: int) -> dict:
    return {{"answer": x}}


@flow
def agent(x: int = 1) -> dict:
    return finish(think(fetch(x)))


@checkpoint
def steady(x: int) -> int:
    return x * 2


@flow
def simple(x: int = 1) -> int:
    return steady(x) + 1


@checkpoint
def block_until_released(x: int) -> int:
    (STATE / "blocked").write_text("x")
    deadline = time.monotonic() + 30
    while not (STATE / "release").exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    return x


@flow
def slow(x: int = 1) -> int:
    value = block_until_released(x)
    return steady(value)


@checkpoint
def crash_once(x: int) -> int:
    marker = STATE / "crashed-once"
    if not marker.exists():
        marker.write_text("x")
        os.kill(os.getpid(), 9)
    return x + 100


@flow
def crashy(x: int = 1) -> int:
    return steady(crash_once(x))


if __name__ == "__main__":
    import sys

    handle = globals()[sys.argv[1]].run(int(sys.argv[2]))
    print(handle.exec_id, flush=True)
    handle.wait()
"""


@dataclass
class Flows:
    module: ModuleType
    path: Path
    state: Path

    def run_in_subprocess(
        self, flow_name: str, x: int, **env: str
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, str(self.path), flow_name, str(x)],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, **env},
        )


@pytest.fixture
def flows(tmp_path: Path) -> Iterator[Flows]:
    """A freshly written flows module (unique name) importable here and in subprocesses."""
    state = tmp_path / "state"
    state.mkdir()
    code_dir = tmp_path / "code"
    code_dir.mkdir()
    name = f"cli_flows_{uuid.uuid4().hex[:10]}"
    path = code_dir / f"{name}.py"
    path.write_text(textwrap.dedent(FLOWS_SOURCE.format(state=str(state))), encoding="utf-8")
    sys.path.insert(0, str(code_dir))
    try:
        module = importlib.import_module(name)
        yield Flows(module=module, path=path, state=state)
    finally:
        sys.path.remove(str(code_dir))
        sys.modules.pop(name, None)

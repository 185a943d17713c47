"""The adapter examples run offline, as written, each in a fresh interpreter and store."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests._extras import need

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.mark.parametrize(
    ("script", "module", "extra", "expected"),
    [
        ("langgraph_agent.py", "langgraph", "langgraph", "write_node"),
        ("pydantic_ai_agent.py", "pydantic_ai", "pydantic-ai", "Booked Paris."),
        ("openai_agents_runner.py", "agents", "openai-agents", "2 + 3 = 5"),
    ],
)
def test_example_runs(script: str, module: str, extra: str, expected: str, tmp_path: Path) -> None:
    need(module, extra)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KITARU_", "OPENAI_"))}
    env["KITARU_CONFIG_PATH"] = str(tmp_path / "home")
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / script)],
        cwd=tmp_path,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert expected in done.stdout
    assert "Traceback" not in done.stderr

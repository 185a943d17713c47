"""Every ```python block of README.md runs as written, each in a fresh interpreter.

Each block gets its own empty ``KITARU_CONFIG_PATH`` (so its own embedded store) and
must exit 0 by itself: a block that waits for input answers the wait itself.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"
_BLOCK = re.compile(r"^```python\n(.*?)^```$", re.DOTALL | re.MULTILINE)


def _blocks() -> list[tuple[int, str]]:
    text = README.read_text(encoding="utf-8")
    return [(text.count("\n", 0, m.start()) + 1, m.group(1)) for m in _BLOCK.finditer(text)]


def test_the_readme_has_python_blocks() -> None:
    assert len(_blocks()) >= 3


@pytest.mark.parametrize(("line", "code"), _blocks(), ids=[f"line{n}" for n, _ in _blocks()])
def test_readme_python_block_runs(line: int, code: str, tmp_path: Path) -> None:
    script = tmp_path / f"readme_line{line}.py"
    script.write_text(code, encoding="utf-8")
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("KITARU_")  # nothing of the test run's own configuration
    }
    env["KITARU_CONFIG_PATH"] = str(tmp_path / "kitaru-home")
    done = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, (
        f"README.md's python block at line {line} failed (exit {done.returncode}):\n"
        f"{done.stdout}\n{done.stderr}"
    )
    assert "Traceback" not in done.stderr

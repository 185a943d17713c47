"""Importing an adapter without its framework names the extra to install."""

from __future__ import annotations

import subprocess
import sys

import pytest

# (module to import, framework module blocked, extra named in the error)
CASES = [
    ("kitaru.adapters.langgraph", "langgraph", "langgraph"),
    ("kitaru.adapters.pydantic_ai", "pydantic_ai", "pydantic-ai"),
    ("kitaru.adapters.openai_agents", "agents", "openai-agents"),
    ("kitaru.mcp._server", "mcp", "mcp"),
]

CHILD = """
import sys
sys.modules[{blocked!r}] = None  # as if the package were not installed
from kitaru import KitaruFeatureNotAvailableError
try:
    import {module}
except KitaruFeatureNotAvailableError as exc:
    print("ERROR", exc)
else:
    print("IMPORTED")
"""


@pytest.mark.parametrize(("module", "blocked", "extra"), CASES)
def test_missing_framework_raises_feature_not_available(
    module: str, blocked: str, extra: str
) -> None:
    code = CHILD.format(module=module, blocked=blocked)
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("ERROR "), done.stdout + done.stderr
    assert f"kitaru[{extra}]" in done.stdout

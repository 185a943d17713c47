"""The environment of a child process a test starts (a script, a server, a CLI)."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
SRC = REPO_ROOT / "src"


def process_env(home: Path | None = None, **kitaru: str) -> dict[str, str]:
    """This environment without the test run's ``KITARU_*`` settings, with ``kitaru``
    instead; ``home`` as the child's config directory.

    The child imports Kitaru from this checkout's ``src`` and can import the test
    modules (``tests.*``), whatever the caller's ``PYTHONPATH`` already holds.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("KITARU_")}
    path = [str(SRC), str(REPO_ROOT), env.get("PYTHONPATH", "")]
    env["PYTHONPATH"] = os.pathsep.join(filter(None, path))
    if home is not None:
        env["KITARU_CONFIG_PATH"] = str(home)
    env.update(kitaru)
    return env

"""Running ``kitaru`` in-process for tests: one result type and one runner for every package."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass
class CliResult:
    exit_code: int
    stdout: str
    stderr: str

    def json(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.stdout)
        return data

    def error_json(self) -> dict[str, Any]:
        """The JSON error document: on stderr, with nothing on stdout."""
        assert self.stdout == "", self.stdout
        data: dict[str, Any] = json.loads(self.stderr)
        return data


Invoke = Callable[..., CliResult]


def in_process() -> Invoke:
    """``kitaru ARGS`` in this process (fast; shares the flows imported here)."""
    from typer.testing import CliRunner

    from kitaru.cli import app

    runner = CliRunner()

    def invoke(*args: str, input: str | None = None) -> CliResult:
        result = runner.invoke(app, list(args), input=input)
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise result.exception
        return CliResult(result.exit_code, result.stdout, _without_ray_notices(result.stderr))

    return invoke


def _without_ray_notices(stderr: str) -> str:
    """``stderr`` without what a Ray driver connected earlier in this test process prints
    on its own (``(raylet) ... marked dead`` when the loaded machine delays a heartbeat):
    CliRunner swaps ``sys.stderr`` while the command runs, so it would land there."""
    kept: list[str] = []
    in_notice = False
    for line in stderr.splitlines(keepends=True):
        if line.startswith("\x1b[33m(") or line.startswith(("(raylet)", "(gcs_server)")):
            in_notice = True
            continue
        if in_notice and (not line.strip() or line[:1] in (" ", "\t")):
            continue
        in_notice = False
        kept.append(line)
    return "".join(kept)

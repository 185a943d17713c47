"""Fuzz the API from its own OpenAPI document with schemathesis: no answer is a 500."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.server import _flows
from tests.server.conftest import Server


def _schemathesis() -> str:
    found = shutil.which("schemathesis") or str(Path(sys.executable).parent / "schemathesis")
    if not Path(found).exists():
        if os.environ.get("CI") == "true":
            pytest.fail("schemathesis is required in CI (it is in the dev extra)")
        pytest.skip("needs schemathesis: pip install -e '.[dev]'")
    return found


@pytest.mark.slow
def test_fuzz_from_openapi_has_no_server_errors(server: Server, tmp_path: Path) -> None:
    tool = _schemathesis()
    done = _flows.adder.run(1)
    done.wait()
    result = subprocess.run(
        [
            tool,
            "run",
            f"{server.api}/openapi.json",
            "--header",
            f"Authorization: Bearer {server.admin_key}",
            "--checks",
            "not_a_server_error",
            "--max-examples",
            "15",
            "--seed",
            "1",
            "--request-timeout",
            "20",
            "--no-color",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert "passed" in result.stdout.lower(), result.stdout[-3000:]
    print(result.stdout[-2500:])

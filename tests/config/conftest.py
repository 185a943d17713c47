"""Isolation for configuration tests: private config dir, clean env, clean cwd."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from kitaru.config import find_pyproject, reset_configuration


@pytest.fixture(autouse=True)
def isolated_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Point KITARU_CONFIG_PATH at a temp dir, drop KITARU_* vars, chdir to an empty dir."""
    for name in list(os.environ):
        if name.startswith("KITARU_"):
            monkeypatch.delenv(name)
    config_path = tmp_path / "kitaru-config"
    monkeypatch.setenv("KITARU_CONFIG_PATH", str(config_path))
    workdir = tmp_path / "work"
    # exist_ok: the suite-wide conftest may already have created (and entered) it.
    workdir.mkdir(exist_ok=True)
    monkeypatch.chdir(workdir)
    # A pyproject.toml above the temp dir would leak settings into every test.
    assert find_pyproject() is None, f"unexpected pyproject.toml above {workdir}"
    reset_configuration()
    yield config_path
    reset_configuration()

"""Fixtures for the store contract tests: a ``Store`` per backend and record factories."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator

import pytest

from kitaru._store import Store

from ._support import Records, start_python


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    """A store opened on the parametrized backend (SQLite file or fresh PostgreSQL schema)."""
    opened = Store(store_url)
    yield opened
    opened.dispose()


@pytest.fixture
def records() -> Records:
    return Records()


@pytest.fixture
def spawn() -> Iterator[Callable[..., subprocess.Popen[str]]]:
    """Start Python children (see ``start_python``); any still alive at teardown is killed."""
    started: list[subprocess.Popen[str]] = []

    def _spawn(code: str, *args: str) -> subprocess.Popen[str]:
        proc = start_python(code, *args)
        started.append(proc)
        return proc

    yield _spawn
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()

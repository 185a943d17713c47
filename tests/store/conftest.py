"""Fixtures for the store contract tests: a ``Store`` per backend and record factories."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from kitaru._store import Store

from ._support import Records, start_python

#: Modules whose tests read the store's tables or engine: they have no HTTP variant.
_DIRECT_ONLY = ("test_concurrency", "test_schema", "test_migrations")


def _no_http_variant(item: pytest.Item) -> bool:
    """The ``http`` variants the ``store`` fixture would only skip (see below)."""
    params = getattr(getattr(item, "callspec", None), "params", {})
    if params.get("store") != "http":
        return False
    module = item.nodeid.split("::", 1)[0].rsplit("/", 1)[-1].removesuffix(".py")
    return (
        module in _DIRECT_ONLY
        or item.get_closest_marker("store_internals") is not None
        or params.get("store_url") not in (None, "sqlite")
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Not collected rather than skipped: these combinations do not exist, and a run's
    # skips should only ever mean "a component is missing here".
    here = Path(__file__).parent
    dropped = [i for i in items if Path(str(i.path)).parent == here and _no_http_variant(i)]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = [i for i in items if i not in dropped]


@pytest.fixture(params=["direct", "http"])
def store(request: pytest.FixtureRequest, store_url: str, tmp_path: Path) -> Iterator[Store]:
    """A store on the parametrized backend (SQLite file or fresh PostgreSQL schema).

    ``direct`` opens it here; ``http`` is the HTTP-backed store of a real Kitaru
    server process over it (``kitaru+http://``), so the contract holds for both.
    """
    if request.param == "http":
        if request.module.__name__.rsplit(".", 1)[-1] in _DIRECT_ONLY or (
            request.node.get_closest_marker("store_internals")
        ):
            pytest.skip("reads the store's tables directly: no HTTP variant")
        if not store_url.startswith("sqlite"):
            # A server per test is costly; the HTTP layer is the same whatever store is
            # behind it, and that store's own contract runs directly.
            pytest.skip("the HTTP-backed store's contract runs over SQLite")
        from tests.server.conftest import http_store

        yield from http_store(store_url, tmp_path)
        return
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

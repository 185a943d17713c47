"""Compatibility tests: nothing a test started is left running or waiting afterwards."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest

from kitaru import KitaruError
from kitaru._runtime.driver import get_live
from kitaru.client import KitaruClient


@pytest.fixture(autouse=True)
def _no_execution_left_behind(request: pytest.FixtureRequest) -> Iterator[None]:
    if "any_store" in request.fixturenames:
        # Set up here so that the cleanup below runs before the store is dropped.
        request.getfixturevalue("any_store")
    yield
    client = KitaruClient()
    with contextlib.suppress(KitaruError):
        for execution in client.executions.list(status=["running", "waiting"], size=500):
            with contextlib.suppress(KitaruError):
                client.executions.cancel(execution.exec_id)
            live = get_live(execution.exec_id)
            if live is not None:
                live.done.wait(10)

"""A handle from ``.run()`` holds its run's result, as a Future does: waiting for an
execution that already finished in this process does not read the store again."""

from __future__ import annotations

from typing import Any

import pytest

from kitaru import FlowHandle, KitaruUserCodeError, flow
from kitaru._backend import get_backend


@flow
def listing(n: int) -> list[int]:
    return list(range(n))


@flow
def broken() -> None:
    raise ValueError("nope")


def _no_store_reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    reads: list[str] = []
    store = get_backend().store

    def refuse(name: str) -> Any:
        def read(*args: Any, **kwargs: Any) -> Any:
            reads.append(name)
            raise AssertionError(f"store.{name} read")

        return read

    for name in ("require_execution", "get_execution", "get_artifact"):
        monkeypatch.setattr(store, name, refuse(name))
    return reads


def test_waiting_for_a_finished_run_returns_its_result_without_reading_the_store(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    handle = listing.run(3)
    first = handle.wait()
    assert first == [0, 1, 2]
    reads = _no_store_reads(monkeypatch)
    assert handle.wait() is first
    assert reads == []


def test_another_handle_to_the_execution_reads_the_store() -> None:
    handle = listing.run(2)
    result = handle.wait()
    again = FlowHandle(handle.exec_id).wait()
    assert again == result
    assert again is not result  # loaded from its stored artifact


def test_a_failed_run_still_raises_its_recorded_error() -> None:
    handle = broken.run()
    for _ in range(2):
        with pytest.raises(KitaruUserCodeError, match="nope"):
            handle.wait()

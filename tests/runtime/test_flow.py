"""@flow: decoration, .run(), settings, inputs and results, on SQLite and PostgreSQL."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import textwrap
import threading
import uuid
from pathlib import Path

import pytest
from pydantic import BaseModel

import kitaru
from kitaru import (
    ExecutionStatus,
    FlowHandle,
    KitaruUsageError,
    checkpoint,
    flow,
)
from kitaru._backend import get_backend


@checkpoint
def fetch_data(url: str) -> str:
    return f"data from {url}"


@checkpoint
def process_data(data: str) -> str:
    return data.upper()


@flow
def my_agent(url: str) -> str:
    """Fetch and shout."""
    data = fetch_data(url)
    return process_data(data)


class Report(BaseModel):
    title: str
    score: float


@dataclasses.dataclass
class Pair:
    left: int
    right: list[str]


def test_issue_example_runs_and_persists_every_checkpoint(any_store: str) -> None:
    handle = my_agent.run(url="https://example.com")
    assert isinstance(handle, FlowHandle)
    assert str(uuid.UUID(handle.exec_id)) == handle.exec_id
    assert handle.wait() == "DATA FROM HTTPS://EXAMPLE.COM"
    assert handle.status is ExecutionStatus.COMPLETED

    store = get_backend().store
    calls = store.calls(handle.exec_id)
    assert [(c.call_id, c.name, c.status.value) for c in calls] == [
        ("fetch_data", "fetch_data", "completed"),
        ("process_data", "process_data", "completed"),
    ]
    backend = get_backend()
    assert [backend.load_value(c.artifact) for c in calls if c.artifact] == [
        "data from https://example.com",
        "DATA FROM HTTPS://EXAMPLE.COM",
    ]
    record = store.require_execution(handle.exec_id)
    assert record.flow_name == "my_agent"
    assert backend.load_artifact(record.inputs_artifact_id or "") == (
        (),
        {"url": "https://example.com"},
    )


def test_decorator_keeps_name_and_docstring() -> None:
    assert my_agent.__name__ == "my_agent"
    assert my_agent.__doc__ == "Fetch and shout."

    @flow(retries=1, cache=False)
    def configured() -> None:
        """Doc."""

    assert configured.__name__ == "configured"
    assert configured.__doc__ == "Doc."


def test_calling_a_flow_directly_shows_run_and_wait() -> None:
    with pytest.raises(KitaruUsageError) as info:
        my_agent("https://example.com")
    message = str(info.value)
    assert "my_agent.run(...)" in message
    assert "my_agent.run(...).wait()" in message
    assert isinstance(info.value, ValueError)


def test_run_returns_before_the_body_finishes() -> None:
    release = threading.Event()

    @checkpoint
    def blocked() -> str:
        release.wait(10)
        return "done"

    @flow
    def slow() -> str:
        return blocked()

    handle = slow.run()
    assert handle.status is ExecutionStatus.RUNNING
    release.set()
    assert handle.wait(timeout=10) == "done"


@pytest.mark.parametrize(
    "value",
    [None, 42, "text", ("a", 1), ("nested", ("t", 2.5)), {"k": [1, 2]}, b"\x00raw"],
    ids=["none", "int", "str", "tuple", "nested-tuple", "dict", "bytes"],
)
def test_wait_returns_exactly_what_the_function_returned(any_store: str, value: object) -> None:
    @flow
    def returns() -> object:
        return value

    handle = returns.run()
    result = handle.wait()
    assert result == value
    assert type(result) is type(value)
    # A reader in another handle (no live result in memory) gets the same from the store.
    from_store = FlowHandle(handle.exec_id).get()
    assert from_store == value
    assert type(from_store) is type(value)


def test_models_and_dataclasses_round_trip_through_checkpoints(any_store: str) -> None:
    @checkpoint
    def make_report() -> Report:
        return Report(title="t", score=0.5)

    @checkpoint
    def make_pair() -> Pair:
        return Pair(left=1, right=["x"])

    @flow
    def typed() -> tuple[Report, Pair]:
        return make_report(), make_pair()

    handle = typed.run()
    handle.wait()
    report, pair = FlowHandle(handle.exec_id).get()
    assert report == Report(title="t", score=0.5)
    assert isinstance(report, Report)
    assert pair == Pair(left=1, right=["x"])
    serializers = {
        c.name: c.artifact.serializer
        for c in get_backend().store.calls(handle.exec_id)
        if c.artifact
    }
    assert serializers == {"make_report": "pydantic", "make_pair": "dataclass"}


def test_positional_and_keyword_inputs_are_persisted(any_store: str) -> None:
    @flow
    def adder(a: int, b: int = 0, *, scale: int = 1) -> int:
        return (a + b) * scale

    handle = adder.run(2, 3, scale=10)
    assert handle.wait() == 50
    record = get_backend().store.require_execution(handle.exec_id)
    assert get_backend().load_artifact(record.inputs_artifact_id or "") == ((2, 3), {"scale": 10})


def test_bad_arguments_are_rejected_before_anything_is_recorded() -> None:
    with pytest.raises(KitaruUsageError, match="Invalid arguments for flow 'my_agent'"):
        my_agent.run("a", "b")
    assert get_backend().store.list_executions() == []


def test_unserializable_inputs_are_a_usage_error() -> None:
    @flow
    def takes(x: object) -> None:
        return None

    with pytest.raises(KitaruUsageError, match="inputs of flow 'takes'"):
        takes.run(threading.Lock())
    assert get_backend().store.list_executions() == []


@pytest.mark.parametrize("retries", [-1, 1.5, "2", True])
def test_invalid_retries_rejected_at_decorator_and_run(retries: object) -> None:
    with pytest.raises(KitaruUsageError, match="retries"):
        flow(retries=retries)(lambda: None)  # type: ignore[arg-type]
    with pytest.raises(KitaruUsageError, match="retries"):
        my_agent.run(url="u", retries=retries)  # type: ignore[arg-type]


def test_unknown_stack_lists_known_ones_and_records_nothing() -> None:
    kitaru.create_stack("gpu-box")
    with pytest.raises(KitaruUsageError) as info:
        my_agent.run(url="u", stack="nope")
    assert "nope" in str(info.value)
    assert "local" in str(info.value)
    assert "gpu-box" in str(info.value)
    assert get_backend().store.list_executions() == []


def test_stack_for_one_run_is_bound_only_to_that_submission() -> None:
    kitaru.create_stack("other", activate=False)
    assert kitaru.current_stack().name == "local"
    handle = my_agent.run(url="u", stack="other")
    handle.wait()
    assert kitaru.current_stack().name == "local"
    record = get_backend().store.require_execution(handle.exec_id)
    assert record.stack == "other"
    assert record.config["sources"]["stack"] == "run"
    # A failing submission does not change the active stack either.
    with pytest.raises(KitaruUsageError):
        my_agent.run(url="u", stack="missing")
    assert kitaru.current_stack().name == "local"


def test_concurrent_submissions_each_keep_their_own_stack() -> None:
    names = [f"s{i}" for i in range(6)]
    for name in names:
        kitaru.create_stack(name)
    kitaru.use_stack("s0")
    handles: dict[str, FlowHandle] = {}
    errors: list[BaseException] = []

    def submit(name: str) -> None:
        try:
            handles[name] = my_agent.run(url=name, stack=name)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=submit, args=(n,)) for n in names * 3]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    for name, handle in handles.items():
        handle.wait()
        assert get_backend().store.require_execution(handle.exec_id).stack == name
    assert kitaru.current_stack().name == "s0"


def test_run_values_override_decorator_values() -> None:
    @flow(retries=2, cache=False)
    def configured() -> int:
        return 1

    record_default = get_backend().store.require_execution(configured.run().exec_id)
    assert (record_default.config["retries"], record_default.config["cache"]) == (2, False)
    handle = configured.run(retries=0, cache=True)
    handle.wait()
    record = get_backend().store.require_execution(handle.exec_id)
    assert (record.config["retries"], record.config["cache"]) == (0, True)
    assert record.config["sources"]["retries"] == "run"


def test_configure_and_env_feed_the_frozen_configuration(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KITARU_RETRIES", "3")
    kitaru.configure(cache=False)
    handle = my_agent.run(url="u")
    handle.wait()
    config = get_backend().store.require_execution(handle.exec_id).config
    assert config["retries"] == 3
    assert config["cache"] is False
    assert config["sources"]["retries"] == "env:KITARU_RETRIES"
    assert config["sources"]["cache"] == "configure"


def test_image_is_frozen_with_the_sdk_and_redacted_secrets() -> None:
    @flow(image={"base_image": "python:3.12", "environment": {"API_KEY": "s3cret", "MODE": "x"}})
    def imaged() -> None:
        return None

    handle = imaged.run()
    handle.wait()
    image = get_backend().store.require_execution(handle.exec_id).config["image"]
    assert image["base_image"] == "python:3.12"
    assert f"kitaru=={kitaru.__version__}" in image["requirements"]
    assert image["environment"] == {"API_KEY": "***", "MODE": "x"}


def test_image_rejects_unknown_keys() -> None:
    with pytest.raises(KitaruUsageError, match="base_imag"):
        flow(image={"base_imag": "python"})(lambda: None)


def test_executions_started_by_a_script_finish_before_it_exits(tmp_path: Path) -> None:
    script = tmp_path / "fire_and_forget.py"
    script.write_text(
        textwrap.dedent(
            """
            import time
            from kitaru import checkpoint, flow

            @checkpoint
            def slow_step(i: int) -> int:
                time.sleep(0.2)
                return i * 2

            @flow
            def fire(n: int) -> int:
                return sum(slow_step(i) for i in range(n))

            for n in range(3):
                print(fire.run(n=n + 1).exec_id, flush=True)
            # The script ends here without waiting.
            """
        )
    )
    out = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60, check=True
    )
    exec_ids = out.stdout.split()
    assert len(exec_ids) == 3
    store = get_backend().store
    results = [FlowHandle(exec_id).get() for exec_id in exec_ids]
    assert results == [0, 2, 6]
    assert all(store.get_status(e) is ExecutionStatus.COMPLETED for e in exec_ids)


def test_current_execution_id_inside_and_outside() -> None:
    assert kitaru.current_execution_id() is None

    @checkpoint
    def who() -> str | None:
        return kitaru.current_execution_id()

    @flow
    def ids() -> tuple[str | None, str | None]:
        return kitaru.current_execution_id(), who()

    handle = ids.run()
    assert handle.wait() == (handle.exec_id, handle.exec_id)

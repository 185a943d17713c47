"""A checkpoint call's inputs: recorded per argument, listed on the call, loadable by id."""

from __future__ import annotations

import os

import pydantic
import pytest

from kitaru import KitaruBackendError, KitaruClient, checkpoint, flow
from kitaru.client import CallStatus

BIG = "y" * 100_000  # beyond the inline limit: its bytes go to the blob store


class Query(pydantic.BaseModel):
    text: str
    top_k: int = 3


class Connection:
    """A value only cloudpickle could store: described, never pickled."""

    def __repr__(self) -> str:
        return "<Connection to db>"


@checkpoint
def search(query: Query, limit: int, *extra: int, **options: object) -> str:
    options_seen = sorted(options)
    query.text = "changed by the body"  # the recorded input is the value at call time
    return f"{limit}:{len(extra)}:{options_seen}"


@checkpoint
def no_arguments() -> int:
    return 1


@checkpoint
def fails(n: int) -> int:
    raise ValueError(f"bad {n}")


@flow
def searching(text: str) -> str:
    no_arguments()
    return search(Query(text=text), 5, 7, 8, raw=b"\x00\xff", conn=Connection(), big=BIG)


@flow
def failing(n: int) -> int:
    return fails(n)


@checkpoint
def double(x: int) -> int:
    return 2 * x


@flow
def doubling(x: int) -> int:
    return double(x)


def test_inputs_are_recorded_per_argument_and_load_back(any_store: str) -> None:
    handle = searching.run("durable agents")
    handle.wait(timeout=30)
    client = KitaruClient()
    execution = client.executions.get(handle.exec_id)
    first, call = execution.checkpoints
    assert first.inputs == []  # a call without arguments stores nothing
    names = [ref.name for ref in call.inputs]
    assert names == ["query", "limit", "extra[0]", "extra[1]", "raw", "conn", "big"]
    assert {ref.direction for ref in call.inputs} == {"input"}
    loaded = {ref.name: ref.load() for ref in call.inputs if ref.name != "conn"}
    assert loaded == {
        "query": Query(text="durable agents"),
        "limit": 5,
        "extra[0]": 7,
        "extra[1]": 8,
        "raw": b"\x00\xff",
        "big": BIG,
    }
    by_name = {ref.name: ref for ref in call.inputs}
    assert by_name["query"].serializer == "pydantic"
    assert by_name["big"].uri is not None  # in the blob store, not in the call row
    # Inputs are the call's own: its artifacts (0.21's list) stay what it produced.
    assert [ref.direction for ref in call.artifacts] == ["output"]
    assert all(ref.direction == "output" for ref in execution.artifacts)
    # Each input is an artifact by id, for the client and the CLI alike.
    fetched = client.artifacts.get(by_name["limit"].artifact_id)
    assert (fetched.name, fetched.direction, fetched.load()) == ("limit", "input", 5)


def test_a_value_that_needs_pickle_is_described_not_stored(any_store: str) -> None:
    handle = searching.run("x")
    handle.wait(timeout=30)
    call = KitaruClient().executions.get(handle.exec_id).checkpoints[1]
    conn = next(ref for ref in call.inputs if ref.name == "conn")
    assert conn.serializer == "not_stored"
    assert conn.size == 0
    with pytest.raises(KitaruBackendError, match=r"not stored.*<Connection to db>"):
        conn.load()


def test_a_failed_call_keeps_its_inputs(any_store: str) -> None:
    handle = failing.run(41)
    with pytest.raises(Exception, match="bad 41"):
        handle.wait(timeout=30)
    (call,) = KitaruClient().executions.get(handle.exec_id).checkpoints
    assert call.call_status is CallStatus.FAILED
    assert [(ref.name, ref.load()) for ref in call.inputs] == [("n", 41)]


def test_a_cache_hit_and_a_replay_record_the_inputs_they_ran_with(any_store: str) -> None:
    first = doubling.run(4)
    assert first.wait(timeout=30) == 8
    second = doubling.run(4)
    assert second.wait(timeout=30) == 8
    client = KitaruClient()
    (cached,) = client.executions.get(second.exec_id).checkpoints
    assert cached.call_status is CallStatus.CACHED
    assert [(ref.name, ref.load()) for ref in cached.inputs] == [("x", 4)]

    replay = client.executions.replay(
        first.exec_id, at="double", checkpoint_overrides={"double": {"input": {"x": 20}}}
    )
    (rerun,) = client.executions.get(replay.results[0].replay_exec_id).checkpoints
    assert rerun.artifacts[0].load() == 40
    assert [(ref.name, ref.load()) for ref in rerun.inputs] == [("x", 20)]


@flow
def doubling_twice(x: int) -> int:
    return double(double(x))


def test_a_call_a_replay_reuses_shows_the_inputs_it_ran_with(any_store: str) -> None:
    source = doubling_twice.run(3)
    assert source.wait(timeout=30) == 12
    client = KitaruClient()
    replay = client.executions.replay(source.exec_id, at="double:2", wait=True)
    reused, rerun = client.executions.get(replay.results[0].replay_exec_id).checkpoints
    assert reused.call_status is CallStatus.REUSED
    assert [(ref.name, ref.load()) for ref in reused.inputs] == [("x", 3)]
    assert [(ref.name, ref.load()) for ref in rerun.inputs] == [("x", 6)]


def test_an_unknown_input_id_is_an_unknown_artifact(any_store: str) -> None:
    handle = doubling.run(1)
    handle.wait(timeout=30)
    client = KitaruClient()
    for missing in (f"{handle.exec_id}:in:1:9", f"{handle.exec_id}:in:99:0"):
        with pytest.raises(KitaruBackendError):
            client.artifacts.get(missing)


def test_recording_inputs_can_be_turned_off(
    any_store: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KITARU_RECORD_INPUTS", "0")
    handle = doubling.run(6)
    assert handle.wait(timeout=30) == 12
    (call,) = KitaruClient().executions.get(handle.exec_id).checkpoints
    assert call.inputs == []
    assert call.artifacts[0].load() == 12


@checkpoint
def make_big(n: int) -> str:
    return BIG + str(n)


@checkpoint
def measure(text: str) -> int:
    return len(text)


@flow
def produce(n: int) -> str:
    return make_big(n)


@flow
def consume(text: str) -> int:
    return measure(text)


def _blob_files(client: KitaruClient, exec_id: str) -> set[str]:
    """The blob store files an execution's calls refer to (outputs and arguments)."""
    execution = client.executions.get(exec_id)
    refs = [ref for call in execution.checkpoints for ref in (*call.artifacts, *call.inputs)]
    return {ref.uri for ref in refs if ref.uri is not None}


def test_deleting_an_execution_deletes_its_large_arguments(any_store: str) -> None:
    client = KitaruClient()
    handle = consume.run(BIG)
    assert handle.wait(timeout=30) == len(BIG)
    files = _blob_files(client, handle.exec_id)
    assert len(files) == 1
    assert all(os.path.exists(f) for f in files)

    client.executions.delete(handle.exec_id)
    assert not any(os.path.exists(f) for f in files)


def test_a_blob_another_execution_takes_as_an_argument_outlives_its_producer(
    any_store: str,
) -> None:
    # The blob store is content-addressed: one execution's output and another's
    # argument with the same bytes are one file.
    client = KitaruClient()
    produced = produce.run(1)
    value = produced.wait(timeout=30)
    consumed = consume.run(value)
    assert consumed.wait(timeout=30) == len(value)
    files = _blob_files(client, produced.exec_id)
    assert files
    assert files == _blob_files(client, consumed.exec_id)

    client.executions.delete(produced.exec_id)
    assert all(os.path.exists(f) for f in files)
    (call,) = client.executions.get(consumed.exec_id).checkpoints
    assert [(ref.name, ref.load()) for ref in call.inputs] == [("text", value)]

    client.executions.delete(consumed.exec_id)
    assert not any(os.path.exists(f) for f in files)

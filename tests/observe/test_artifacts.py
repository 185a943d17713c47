"""kitaru.save() / kitaru.load() and KitaruClient().artifacts.list filters."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pytest

import kitaru
from kitaru import (
    KitaruBackendError,
    KitaruClient,
    KitaruContextError,
    KitaruRuntimeError,
    KitaruUsageError,
    KitaruUserCodeError,
    checkpoint,
    flow,
)
from kitaru._backend import get_backend
from kitaru.artifacts import ARTIFACT_TYPES
from kitaru.client import ArtifactRef
from tests.observe.conftest import RUN_OBS_FLOW, child_env, run_child, wait_for


def _saved(exec_id: str, name: str | None = None) -> list[ArtifactRef]:
    return KitaruClient().artifacts.list(exec_id, role="saved", name=name)


# --- types, tags, arguments --------------------------------------------------------------


@checkpoint
def saves_every_type() -> int:
    for artifact_type in ARTIFACT_TYPES:
        kitaru.save(f"a-{artifact_type}", {"type": artifact_type}, type=artifact_type)
    kitaru.save("default-type", "text")
    kitaru.save("tagged", b"\x00bytes", type="blob", tags=["raw", "v2"])
    return 0


@flow
def types_flow() -> int:
    return saves_every_type()


def test_save_accepts_each_type_and_records_type_and_tags(any_store: str) -> None:
    handle = types_flow.run()
    handle.wait(timeout=30)
    saved = {ref.name: ref for ref in _saved(handle.exec_id)}
    for artifact_type in ARTIFACT_TYPES:
        ref = saved[f"a-{artifact_type}"]
        assert ref.type == artifact_type
        assert ref.load() == {"type": artifact_type}
        assert ref.call_id == "saves_every_type"
    assert saved["default-type"].type == "output"
    assert saved["tagged"].tags == ["raw", "v2"]
    assert saved["tagged"].load() == b"\x00bytes"
    assert saved["default-type"].tags == []


@checkpoint
def bad_saves() -> list[str]:
    messages = []
    for kwargs in (
        {"name": "x", "value": 1, "type": "picture"},
        {"name": "", "value": 1},
        {"name": "x", "value": 1, "tags": ["ok", 3]},
    ):
        try:
            kitaru.save(**kwargs)  # type: ignore[arg-type]
        except KitaruUsageError as exc:
            messages.append(str(exc))
    return messages


@flow
def bad_saves_flow() -> list[str]:
    messages = bad_saves()
    try:
        kitaru.save("in-body", 1, type="Output")
    except KitaruUsageError as exc:
        messages.append(str(exc))
    return messages


def test_bad_type_name_or_tags_are_usage_errors_and_store_nothing(any_store: str) -> None:
    handle = bad_saves_flow.run()
    messages = handle.wait(timeout=30)
    assert len(messages) == 4
    assert "'picture'" in messages[0]
    assert all(t in messages[0] for t in ARTIFACT_TYPES)  # says what is allowed
    assert "non-empty name" in messages[1]
    assert "list of strings" in messages[2]
    assert "'Output'" in messages[3]
    assert _saved(handle.exec_id) == []
    assert [c.call_id for c in KitaruClient().executions.get(handle.exec_id).checkpoints] == [
        "bad_saves"
    ]


def test_save_outside_a_flow_is_a_context_error() -> None:
    with pytest.raises(KitaruContextError):
        kitaru.save("x", 1)
    with pytest.raises(KitaruUsageError):  # argument errors come first
        kitaru.save("x", 1, type="nope")


# --- inside a checkpoint: written with the call --------------------------------------------

_tries: list[int] = []


@checkpoint(retries=2)
def saves_then_fails_twice() -> int:
    _tries.append(1)
    attempt = len(_tries)
    kitaru.save("draft", {"attempt": attempt}, type="response")
    if attempt < 3:
        raise RuntimeError(f"attempt {attempt} fails")
    return attempt


@checkpoint
def saves_then_always_fails() -> int:
    kitaru.save("doomed", "never stored")
    raise RuntimeError("always")


@flow
def retried_save_flow() -> int:
    return saves_then_fails_twice()


@flow
def failed_save_flow() -> int:
    return saves_then_always_fails()


def test_a_retried_checkpoint_stores_only_the_successful_attempts_save(any_store: str) -> None:
    _tries.clear()
    handle = retried_save_flow.run()
    assert handle.wait(timeout=30) == 3
    saved = _saved(handle.exec_id)
    assert [(r.name, r.load()) for r in saved] == [("draft", {"attempt": 3})]
    assert kitaru.load(handle.exec_id, "draft") == {"attempt": 3}


def test_a_checkpoint_that_fails_stores_none_of_its_saves(any_store: str) -> None:
    handle = failed_save_flow.run()
    with pytest.raises(KitaruUserCodeError):
        handle.wait(timeout=30)
    assert _saved(handle.exec_id) == []
    with pytest.raises(KitaruRuntimeError):
        kitaru.load(handle.exec_id, "doomed")


@checkpoint
def saves_twice_same_name() -> int:
    kitaru.save("note", "first")
    kitaru.save("note", "second", type="context")
    return 0


@flow
def saves_twice_flow() -> int:
    return saves_twice_same_name()


def test_saving_a_name_twice_in_one_call_keeps_both(any_store: str) -> None:
    # As in the flow body and in 0.21: nothing saved is dropped, and a load by that name
    # is ambiguous instead of silently giving one of them.
    handle = saves_twice_flow.run()
    handle.wait(timeout=30)
    saved = _saved(handle.exec_id)
    assert sorted((r.name, r.type, r.load()) for r in saved) == [
        ("note", "context", "second"),
        ("note", "output", "first"),
    ]
    with pytest.raises(KitaruRuntimeError, match=r"several|more than one|ambiguous"):
        kitaru.load(handle.exec_id, "note")


@checkpoint
def saves_with_tags(tags: Any) -> int:
    kitaru.save("tagged", 1, tags=tags)
    return 0


@flow
def tags_flow(tags: Any) -> int:
    return saves_with_tags(tags)


@pytest.mark.parametrize("tags", ["abc", b"ab", 5, [1, 2], ["ok", None]])
def test_tags_must_be_a_list_of_strings(any_store: str, tags: Any) -> None:
    with pytest.raises(KitaruUserCodeError, match=r"KitaruUsageError.*takes a list of strings"):
        tags_flow.run(tags).wait(timeout=30)


# --- in the flow body: durable, not saved twice -------------------------------------------

_body_runs: list[int] = []


@checkpoint
def after_save(x: int) -> int:
    return x + 1


@flow(retries=1)
def body_save_then_fail(x: int) -> int:
    _body_runs.append(1)
    run = len(_body_runs)
    kitaru.save("plan", {"run": run}, type="context", tags=["body"])
    value = after_save(x)
    if run == 1:
        raise RuntimeError("fails after the save")
    return value


def test_a_body_save_is_durable_and_a_rerun_body_does_not_save_again(any_store: str) -> None:
    _body_runs.clear()
    handle = body_save_then_fail.run(1)
    assert handle.wait(timeout=30) == 2
    assert len(_body_runs) == 2  # the body ran twice
    saved = _saved(handle.exec_id)
    assert [(r.name, r.type, r.tags, r.call_id) for r in saved] == [
        ("plan", "context", ["body"], "save:plan")
    ]
    assert saved[0].load() == {"run": 1}  # the first run's value; the re-run did not save
    assert kitaru.load(handle.exec_id, "plan") == {"run": 1}
    # The save is a pseudo call, not a checkpoint of the timeline.
    execution = KitaruClient().executions.get(handle.exec_id)
    assert [c.call_id for c in execution.checkpoints] == ["after_save"]


def test_a_body_save_survives_a_crash_and_resume(any_store: str, state_dir: Path) -> None:
    env = child_env(state_dir)
    child = run_child(["-c", RUN_OBS_FLOW, "save_then_crash", "5"], env=env)
    assert child.returncode == -9, child.stderr  # killed inside crash_once
    exec_id = KitaruClient().executions.latest().exec_id  # the child may print its id late
    store = get_backend().store
    wait_for(
        lambda: (store.require_execution(exec_id).lease_expires_at or 0) < time.time(),
        what="the crashed runner's lease to expire",
    )
    assert _saved(exec_id)[0].load() == {"body_run": 1}

    resumed = run_child(["-m", "kitaru.cli", "executions", "resume", exec_id], env=env)
    assert resumed.returncode == 0, resumed.stderr
    assert (state_dir / "body-runs").read_text() == "2"  # the body ran again ...
    saved = _saved(exec_id)
    assert [(r.name, r.load()) for r in saved] == [("plan", {"body_run": 1})]  # ... saved once
    assert kitaru.load(exec_id, "crash_once") == 6


# --- load -------------------------------------------------------------------------------------


@checkpoint
def produce(x: int) -> dict[str, int]:
    kitaru.save("scratch", [x], type="context")
    return {"x": x}


@checkpoint
def repeat(x: int) -> int:
    return x * 10


@flow
def load_source(x: int) -> int:
    produce(x)
    repeat(x)
    repeat(x + 1)
    kitaru.save("body-note", "from the body", type="input")
    return x


@flow
def load_elsewhere(source: str) -> list[object]:
    return [kitaru.load(source, "produce"), kitaru.load(source, "scratch")]


def test_load_by_checkpoint_name_call_id_saved_name_and_from_another_execution(
    any_store: str,
) -> None:
    source = load_source.run(3)
    source.wait(timeout=30)
    exec_id = source.exec_id
    assert kitaru.load(exec_id, "produce") == {"x": 3}
    assert kitaru.load(exec_id, "scratch") == [3]
    assert kitaru.load(exec_id, "body-note") == "from the body"
    assert kitaru.load(exec_id, "repeat:2") == 40
    assert kitaru.load(exec_id.upper(), "produce") == {"x": 3}  # the same UUID
    # From the body of another execution.
    other = load_elsewhere.run(exec_id)
    assert other.wait(timeout=30) == [{"x": 3}, [3]]


def test_load_without_a_match_is_a_runtime_error(any_store: str) -> None:
    source = load_source.run(4)
    source.wait(timeout=30)
    with pytest.raises(KitaruRuntimeError, match=r"no checkpoint output or saved artifact named"):
        kitaru.load(source.exec_id, "missing")
    with pytest.raises(KitaruUsageError, match="must be a UUID"):
        kitaru.load("no-such-execution", "produce")
    unknown = "00000000-0000-0000-0000-000000000000"
    with pytest.raises(KitaruBackendError, match=f"Failed to load execution '{unknown}'"):
        kitaru.load(unknown, "produce")


def test_an_ambiguous_load_lists_the_matches(any_store: str) -> None:
    source = load_source.run(5)
    source.wait(timeout=30)
    with pytest.raises(KitaruRuntimeError, match="ambiguous") as info:
        kitaru.load(source.exec_id, "repeat")
    message = str(info.value)
    assert "'repeat'" in message
    assert "'repeat:2'" in message


@checkpoint
def clash() -> int:
    kitaru.save("clash", "saved value")
    return 1


@flow
def clash_flow() -> int:
    clash()
    kitaru.save("twice", 1)
    kitaru.save("twice", 2)
    return 0


def test_a_name_that_is_both_output_and_saved_or_saved_twice_is_ambiguous(
    any_store: str,
) -> None:
    handle = clash_flow.run()
    handle.wait(timeout=30)
    with pytest.raises(KitaruRuntimeError) as info:
        kitaru.load(handle.exec_id, "clash")
    message = str(info.value)
    saved_id = _saved(handle.exec_id, "clash")[0].artifact_id
    assert saved_id in message
    assert "checkpoint call 'clash'" in message

    with pytest.raises(KitaruRuntimeError) as info:
        kitaru.load(handle.exec_id, "twice")
    ids = [r.artifact_id for r in _saved(handle.exec_id, "twice")]
    assert len(ids) == 2  # two body saves of one name: save:twice and save:twice:2
    assert all(i in str(info.value) for i in ids)


# --- artifacts.list filters --------------------------------------------------------------------


def test_artifacts_list_filters_by_name_kind_type_and_call(any_store: str) -> None:
    handle = load_source.run(6)
    handle.wait(timeout=30)
    client = KitaruClient()
    everything = client.artifacts.list(handle.exec_id)
    # The flow's arguments are its input; everything else is something it produced.
    assert [r.direction for r in everything] == ["input"] + ["output"] * 6
    assert [(r.role, r.name) for r in everything] == [
        ("flow_inputs", "inputs"),
        ("saved", "scratch"),
        ("output", "produce"),
        ("output", "repeat"),
        ("output", "repeat"),
        ("saved", "body-note"),
        ("flow_result", "result"),
    ]
    assert [r.name for r in client.artifacts.list(handle.exec_id, type="context")] == ["scratch"]
    assert [r.name for r in client.artifacts.list(handle.exec_id, type="input")] == ["body-note"]
    assert client.artifacts.list(handle.exec_id, type="prompt") == []
    assert [r.name for r in client.artifacts.list(handle.exec_id, role="saved")] == [
        "scratch",
        "body-note",
    ]
    # 0.21's kind is a saved artifact's type; save_type tells saved from returned values.
    assert [r.name for r in client.artifacts.list(handle.exec_id, kind="context")] == ["scratch"]
    assert [(r.name, r.save_type) for r in everything] == [
        ("inputs", "external"),
        ("scratch", "manual"),
        ("produce", "step_output"),
        ("repeat", "step_output"),
        ("repeat", "step_output"),
        ("body-note", "manual"),
        ("result", "step_output"),
    ]
    assert [r.call_id for r in client.artifacts.list(handle.exec_id, name="repeat")] == [
        "repeat",
        "repeat:2",
    ]
    assert [
        (r.role, r.name) for r in client.artifacts.list(handle.exec_id, producing_call="produce")
    ] == [("saved", "scratch"), ("output", "produce")]
    assert len(client.artifacts.list(handle.exec_id, limit=2)) == 2
    ref = client.artifacts.get(everything[1].artifact_id)
    assert ref == everything[1]
    assert ref.load() == [6]
    with pytest.raises(KitaruBackendError, match=re.escape("'nope'")):
        client.artifacts.get("nope")


# --- a reused call keeps what it saved ---------------------------------------------------

saving_runs: list[str] = []


@checkpoint
def prepares(x: str) -> str:
    saving_runs.append(x)
    kitaru.save("prompt_used", "P:" + x, type="prompt")
    kitaru.save("big_context", b"c" * 200_000, type="context")  # a blob, not inline
    kitaru.log(tokens=5)
    return x * 2


@checkpoint
def finishes(y: str) -> str:
    return y + "!"


@flow
def saving_flow(x: str) -> str:
    return finishes(prepares(x))


def _reused_call_keeps_its_saves(exec_id: str, source_id: str) -> None:
    assert kitaru.load(exec_id, "prompt_used") == "P:a"
    assert kitaru.load(exec_id, "big_context") == b"c" * 200_000
    execution = KitaruClient().executions.get(exec_id)
    [prep] = [call for call in execution.checkpoints if call.name == "prepares"]
    assert prep.metadata == {"tokens": 5}
    assert {a.name for a in prep.artifacts if a.save_type == "manual"} == {
        "prompt_used",
        "big_context",
    }
    saved = [a for a in execution.artifacts if a.save_type == "manual"]
    assert sorted(a.name for a in saved) == ["big_context", "prompt_used"]
    assert all(a.producing_call == prep.call_id for a in saved)
    # The new execution's own rows: deleting the source keeps them readable.
    KitaruClient().executions.delete(source_id)
    assert kitaru.load(exec_id, "big_context") == b"c" * 200_000


def test_a_cache_hit_keeps_what_the_cached_call_saved(any_store: str) -> None:
    saving_runs.clear()
    first = saving_flow.run("a")
    first.wait()
    second = saving_flow.run("a")
    assert second.wait() == "aa!"
    assert saving_runs == ["a"]  # answered from the cache
    _reused_call_keeps_its_saves(second.exec_id, first.exec_id)


def test_a_replay_keeps_what_its_reused_calls_saved(any_store: str) -> None:
    saving_runs.clear()
    source = saving_flow.run("a")
    source.wait()
    submission = KitaruClient().executions.replay(source.exec_id, at="finishes")
    replay_id = submission.results[0].replay_exec_id
    KitaruClient().executions.wait(replay_id, timeout=60)
    assert saving_runs == ["a"]  # reused, not run again
    _reused_call_keeps_its_saves(replay_id, source.exec_id)

"""``allow_pickle``: with it off, values that need cloudpickle are neither stored nor loaded.

Loading a pickled value runs code chosen by whoever wrote it. ``Touch`` below is such a
value: unpickling it creates a marker file, which is how these tests see whether
anything was unpickled.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import kitaru
from kitaru import KitaruClient, KitaruUserCodeError, checkpoint, flow
from kitaru._blobs import (
    PickleLoadNotAllowedError,
    PickleNotAllowedError,
    SerializationError,
    deserialize,
    serialize,
)
from kitaru.cli import app
from kitaru.errors import KitaruUsageError


def _touch(path: str) -> str:
    Path(path).touch()
    return "touched"


class Touch:
    """A value only cloudpickle can store; unpickling it touches ``path``."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (_touch, (self.path,))


SUPPORTED = ("JSON-able", "Pydantic", "dataclasses", "tuples", "bytes")


def _pickle_off(how: str, monkeypatch: pytest.MonkeyPatch) -> None:
    if how == "env":
        monkeypatch.setenv("KITARU_ALLOW_PICKLE", "0")
    elif how == "configure":
        kitaru.configure(allow_pickle=False)
    else:
        Path("pyproject.toml").write_text("[tool.kitaru]\nallow_pickle = false\n")


HOW = ["env", "configure", "pyproject"]


# ------------------------------------------------------------------ writing


@pytest.mark.parametrize("how", HOW)
def test_writing_a_pickled_value_is_refused(how: str, monkeypatch: pytest.MonkeyPatch) -> None:
    _pickle_off(how, monkeypatch)
    with pytest.raises(PickleNotAllowedError) as caught:
        serialize({1, 2})
    message = str(caught.value)
    assert "'set'" in message
    for kind in SUPPORTED:
        assert kind in message
    assert "KITARU_ALLOW_PICKLE=1" in message
    assert isinstance(caught.value, SerializationError)
    # Values the portable serializers hold are unaffected.
    assert deserialize(serialize(("a", 1, b"x"))) == ("a", 1, b"x")


def test_pickle_inside_a_tuple_is_refused_naming_the_item(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("KITARU_ALLOW_PICKLE", "off")
    with pytest.raises(PickleNotAllowedError, match=r"'frozenset'"):
        serialize(("fine", frozenset({1})))


def test_precedence_configure_over_env_over_pyproject(monkeypatch: pytest.MonkeyPatch) -> None:
    Path("pyproject.toml").write_text("[tool.kitaru]\nallow_pickle = false\n")
    monkeypatch.setenv("KITARU_ALLOW_PICKLE", "1")
    assert serialize({1}).serializer == "pickle"  # env beats pyproject
    monkeypatch.setenv("KITARU_ALLOW_PICKLE", "0")
    kitaru.configure(allow_pickle=True)
    assert serialize({1}).serializer == "pickle"  # configure beats env
    kitaru.configure(allow_pickle=None)
    with pytest.raises(PickleNotAllowedError, match="KITARU_ALLOW_PICKLE=0"):
        serialize({1})
    monkeypatch.delenv("KITARU_ALLOW_PICKLE")
    with pytest.raises(PickleNotAllowedError, match=r"pyproject\.toml"):
        serialize({1})


def test_bad_setting_values_are_usage_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(KitaruUsageError, match="allow_pickle must be True or False"):
        kitaru.configure(allow_pickle="no")  # type: ignore[arg-type]
    monkeypatch.setenv("KITARU_ALLOW_PICKLE", "maybe")
    with pytest.raises(KitaruUsageError, match="KITARU_ALLOW_PICKLE must be one of"):
        serialize({1})
    monkeypatch.delenv("KITARU_ALLOW_PICKLE")
    Path("pyproject.toml").write_text('[tool.kitaru]\nallow_pickle = "no"\n')
    with pytest.raises(KitaruUsageError, match="allow_pickle must be True or False"):
        serialize({1})


@checkpoint
def returns_a_set() -> set[int]:
    return {1, 2}


@flow
def set_flow() -> int:
    return len(returns_a_set())


def test_a_checkpoint_returning_a_pickled_value_fails_clearly(
    any_store: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KITARU_ALLOW_PICKLE", "0")
    handle = set_flow.run()
    with pytest.raises(KitaruUserCodeError, match="only cloudpickle can serialize it"):
        handle.wait(timeout=60)
    (call,) = KitaruClient().executions.get(handle.exec_id).checkpoints
    assert call.status.value == "failed"
    assert KitaruClient().artifacts.list(handle.exec_id, role="output") == []


# ------------------------------------------------------------------ loading


def test_loading_a_pickled_value_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    marker = tmp_path / "unpickled"
    stored = serialize(Touch(str(marker)))
    assert stored.serializer == "pickle"
    monkeypatch.setenv("KITARU_ALLOW_PICKLE", "false")
    with pytest.raises(PickleLoadNotAllowedError) as caught:
        deserialize(stored)
    assert "would run code" in str(caught.value)
    assert "KITARU_ALLOW_PICKLE=1" in str(caught.value)
    assert f"{__name__}:Touch" in str(caught.value)
    assert not marker.exists()
    monkeypatch.setenv("KITARU_ALLOW_PICKLE", "true")
    assert deserialize(stored) == "touched"
    assert marker.exists()  # the control: loading it really runs code


def test_a_pickled_item_of_a_tuple_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    marker = tmp_path / "unpickled"
    stored = serialize(("fine", Touch(str(marker))))
    assert stored.serializer == "tuple"
    monkeypatch.setenv("KITARU_ALLOW_PICKLE", "0")
    with pytest.raises(PickleLoadNotAllowedError):
        deserialize(stored)
    assert not marker.exists()


@checkpoint
def make_touch(path: str) -> Touch:
    return Touch(path)


@flow
def touch_flow(path: str) -> str:
    make_touch(path)
    return "done"


def _pickled_output(tmp_path: Path) -> tuple[str, str, Path]:
    marker = tmp_path / "unpickled"
    handle = touch_flow.run(str(marker))
    assert handle.wait(timeout=60) == "done"
    (ref,) = KitaruClient().artifacts.list(handle.exec_id, role="output")
    assert ref.serializer == "pickle"
    assert not marker.exists()
    return handle.exec_id, ref.artifact_id, marker


def test_client_load_is_refused_when_pickle_is_off(
    any_store: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _exec_id, artifact_id, marker = _pickled_output(tmp_path)
    monkeypatch.setenv("KITARU_ALLOW_PICKLE", "0")
    with pytest.raises(PickleLoadNotAllowedError, match="would run code"):
        KitaruClient().artifacts.get(artifact_id).load()
    assert not marker.exists()


# ------------------------------------------------------------------ the CLI


def _cli(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args))
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def test_cli_never_unpickles_without_value(any_store: str, tmp_path: Path) -> None:
    exec_id, artifact_id, marker = _pickled_output(tmp_path)
    for args in (
        ("artifacts", "show", artifact_id),
        ("artifacts", "show", artifact_id, "-o", "json"),
        ("artifacts", "list", exec_id),
        ("artifacts", "list", exec_id, "-o", "json"),
        ("executions", "get", exec_id),
        ("executions", "get", exec_id, "-o", "json"),
        ("executions", "list"),
    ):
        code, _out, err = _cli(*args)
        assert code == 0, (args, err)
        assert not marker.exists(), args

    code, out, _err = _cli("artifacts", "show", artifact_id, "-o", "json")
    shown = json.loads(out)
    text = json.dumps(shown)
    assert f"{__name__}:Touch" in text
    assert "pickle" in text
    ref = KitaruClient().artifacts.get(artifact_id)
    assert ref.sha256 in text
    code, out, _err = _cli("artifacts", "show", artifact_id)
    assert "SHA-256" in out
    assert "Touch" in out


def test_cli_value_is_refused_when_pickle_is_off(
    any_store: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _exec_id, artifact_id, marker = _pickled_output(tmp_path)
    monkeypatch.setenv("KITARU_ALLOW_PICKLE", "0")
    code, out, err = _cli("artifacts", "show", artifact_id, "--value")
    assert code == 1
    assert "would run code" in err
    assert artifact_id in err
    assert not marker.exists()
    code, out, err = _cli("artifacts", "show", artifact_id, "--value", "-o", "json")
    assert code == 1
    assert out == ""  # a JSON error goes to stderr, stdout stays empty
    assert "would run code" in json.loads(err)["error"]["message"]
    assert not marker.exists()

    # Asked for, and allowed: the value is loaded (the control for the checks above).
    monkeypatch.setenv("KITARU_ALLOW_PICKLE", "1")
    code, out, err = _cli("artifacts", "show", artifact_id, "--value")
    assert code == 0, err
    assert marker.exists()


@checkpoint(runtime="isolated")
def isolated_set() -> set[int]:
    return {3}


@flow
def isolated_set_flow() -> int:
    return len(isolated_set())


def test_configure_reaches_isolated_checkpoints(any_store: str) -> None:
    """The child stores under the parent's rule: a clear write error, not a load refusal."""
    kitaru.configure(allow_pickle=False)
    handle = isolated_set_flow.run()
    with pytest.raises(KitaruUserCodeError, match="only cloudpickle can serialize it"):
        handle.wait(timeout=120)

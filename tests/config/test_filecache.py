"""Configuration files read once per version: a change between two ``.run()`` calls of
one process is still seen by the second, and an unchanged file is not read again."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import kitaru
from kitaru import _filecache, _paths, _pyproject
from kitaru._backend import get_backend
from kitaru.flow import flow
from kitaru.handle import FlowHandle


@flow
def tiny() -> int:
    return 1


def _config(handle: FlowHandle) -> dict[str, Any]:
    handle.wait()
    config: dict[str, Any] = get_backend().store.require_execution(handle.exec_id).config
    return config


def _ref(handle: FlowHandle) -> dict[str, Any]:
    handle.wait()
    ref: dict[str, Any] = get_backend().store.require_execution(handle.exec_id).flow_ref
    return ref


def _count(monkeypatch: pytest.MonkeyPatch, module: Any, name: str) -> list[int]:
    """Count the calls of ``module.name`` (a one-element list, read after the calls)."""
    calls = [0]
    original: Callable[..., Any] = getattr(module, name)

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        return original(*args, **kwargs)

    monkeypatch.setattr(module, name, counted)
    return calls


@pytest.fixture
def settled_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every file looks long unmodified (as most are when a run starts)."""
    monkeypatch.setattr(_filecache, "now_ns", lambda: time.time_ns() + 3600 * 10**9)


def _write(path: Path, text: str, *, mtime_s: float | None = None) -> None:
    path.write_text(text)
    if mtime_s is not None:
        os.utime(path, (mtime_s, mtime_s))


# -- pyproject.toml ----------------------------------------------------------------------


def test_pyproject_edited_between_two_runs_is_seen(monkeypatch: pytest.MonkeyPatch) -> None:
    # Just written (not settled): each run reads the file, a same-size edit is seen.
    pyproject = Path.cwd() / "pyproject.toml"
    reads = _count(monkeypatch, _pyproject, "_read")
    for retries in (1, 2):
        _write(pyproject, f"[tool.kitaru]\nretries = {retries}\n")
        before = reads[0]
        handle = tiny.run()
        assert reads[0] == before + 1  # one read for the run, not one per setting it gives
        assert _config(handle)["retries"] == retries


@pytest.mark.usefixtures("settled_clock")
def test_settled_pyproject_is_read_once_until_it_changes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pyproject = Path.cwd() / "pyproject.toml"
    reads = _count(monkeypatch, _pyproject, "_read")
    _write(pyproject, "[tool.kitaru]\nretries = 1\n", mtime_s=1_000_000)
    assert _config(tiny.run())["retries"] == 1
    assert _config(tiny.run())["retries"] == 1
    assert reads[0] == 1
    # The same size, only the modification time tells it changed.
    _write(pyproject, "[tool.kitaru]\nretries = 2\n", mtime_s=1_000_001)
    assert _config(tiny.run())["retries"] == 2
    assert reads[0] == 2
    # Replaced by another file (an editor's save): another inode.
    replacement = Path.cwd() / "pyproject.new"
    _write(replacement, "[tool.kitaru]\nretries = 3\n", mtime_s=1_000_001)
    os.replace(replacement, pyproject)
    assert _config(tiny.run())["retries"] == 3
    pyproject.unlink()
    assert _config(tiny.run())["sources"]["retries"] == "default"


def test_a_recently_modified_file_is_read_again_even_if_its_version_is_the_same(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A filesystem with coarse timestamps may give a same-size rewrite the version of
    # the file it replaced; simulated here with a version that never changes.
    pyproject = Path.cwd() / "pyproject.toml"
    modified = time.time_ns()
    monkeypatch.setattr(_pyproject, "file_version", lambda path: (1, 1, 26, modified, modified))
    _write(pyproject, "[tool.kitaru]\nretries = 1\n")
    assert _config(tiny.run())["retries"] == 1
    _write(pyproject, "[tool.kitaru]\nretries = 2\n")
    assert _config(tiny.run())["retries"] == 2  # modified just now: read again
    # Once the version is old enough to tell every change, it is trusted as is.
    monkeypatch.setattr(_filecache, "now_ns", lambda: modified + _filecache.SETTLE_NS + 1)
    assert _config(tiny.run())["retries"] == 2
    _write(pyproject, "[tool.kitaru]\nretries = 3\n")
    assert _config(tiny.run())["retries"] == 2


@pytest.mark.usefixtures("settled_clock")
def test_pyproject_appearing_above_the_cwd_or_a_new_cwd_is_seen(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    inner = Path.cwd() / "pkg" / "sub"
    inner.mkdir(parents=True)
    monkeypatch.chdir(inner)
    assert _config(tiny.run())["sources"]["retries"] == "default"
    _write(Path.cwd().parent.parent / "pyproject.toml", "[tool.kitaru]\nretries = 4\n")
    assert _config(tiny.run())["retries"] == 4
    other = tmp_path / "other"
    other.mkdir()
    _write(other / "pyproject.toml", "[tool.kitaru]\nretries = 5\n")
    monkeypatch.chdir(other)
    assert _config(tiny.run())["retries"] == 5


@pytest.mark.usefixtures("settled_clock")
def test_broken_pyproject_fails_every_run_until_fixed() -> None:
    pyproject = Path.cwd() / "pyproject.toml"
    _write(pyproject, "[tool.kitaru\n", mtime_s=1_000_000)
    for _ in range(2):
        with pytest.raises(kitaru.KitaruUsageError, match="not valid TOML"):
            tiny.run()
    _write(pyproject, "[tool.kitaru]\n", mtime_s=1_000_001)
    assert _config(tiny.run())["retries"] == 0


def test_environment_changed_between_two_runs_is_seen(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KITARU_RETRIES", "2")
    assert _config(tiny.run())["retries"] == 2
    monkeypatch.setenv("KITARU_RETRIES", "3")
    assert _config(tiny.run())["retries"] == 3
    monkeypatch.delenv("KITARU_RETRIES")
    assert _config(tiny.run())["sources"]["retries"] == "default"


# -- the global config file --------------------------------------------------------------


@pytest.mark.usefixtures("settled_clock")
def test_active_stack_changed_between_two_runs_is_seen(monkeypatch: pytest.MonkeyPatch) -> None:
    reads = _count(monkeypatch, _paths, "read_global_config")
    kitaru.create_stack("second")  # and makes it the active one
    assert _config(tiny.run())["stack"] == "second"
    before = reads[0]
    assert _config(tiny.run())["stack"] == "second"
    assert reads[0] == before  # unchanged: served from the last read
    kitaru.use_stack("local")
    assert _config(tiny.run())["stack"] == "local"


@pytest.mark.usefixtures("settled_clock")
def test_config_file_edited_by_hand_between_two_runs_is_seen(isolated_config: Path) -> None:
    kitaru.create_stack("hand")
    config_file = isolated_config / "config.json"
    data = json.loads(config_file.read_text())
    assert _config(tiny.run())["stack"] == "hand"
    data["active_stack"] = "local"
    _write(config_file, json.dumps(data), mtime_s=1_000_000)
    assert _config(tiny.run())["stack"] == "local"
    data["active_stack"] = "hand"
    _write(config_file, json.dumps(data), mtime_s=1_000_001)
    assert _config(tiny.run())["stack"] == "hand"


@pytest.mark.usefixtures("settled_clock")
def test_config_path_changed_between_two_runs_is_seen(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kitaru.configure(store_url=f"sqlite:///{tmp_path / 'fixed.db'}")  # one store for both
    kitaru.create_stack("elsewhere")
    assert _config(tiny.run())["stack"] == "elsewhere"
    monkeypatch.setenv("KITARU_CONFIG_PATH", str(tmp_path / "fresh-config"))
    assert _config(tiny.run())["stack"] == "local"


def test_a_corrupt_config_file_fails_every_run(isolated_config: Path) -> None:
    isolated_config.mkdir(parents=True, exist_ok=True)
    (isolated_config / "config.json").write_text("{not json")
    for _ in range(2):
        with pytest.raises(kitaru.KitaruBackendError, match="corrupt"):
            tiny.run()


# -- where the flow's code is ------------------------------------------------------------


def test_project_created_between_two_runs_is_recorded(monkeypatch: pytest.MonkeyPatch) -> None:
    project = Path.cwd()
    assert _ref(tiny.run())["project_root"] != str(project)
    (project / ".kitaru").mkdir()
    sub = project / "sub"
    sub.mkdir()
    monkeypatch.chdir(sub)
    ref = _ref(tiny.run())
    assert ref["cwd"] == str(sub)
    # This test file's directory is not under the project: found from the cwd.
    assert ref["project_root"] == str(project)
    assert ref["file"] == str(Path(__file__).resolve())


def test_where_a_flow_is_defined_is_looked_up_once(monkeypatch: pytest.MonkeyPatch) -> None:
    import inspect

    lookups = _count(monkeypatch, inspect, "getsourcefile")
    refs = [_ref(tiny.run()) for _ in range(3)]
    assert lookups[0] <= 1
    assert refs[0] == refs[1] == refs[2]
    assert refs[0]["file"] == str(Path(__file__).resolve())


# -- the config directory ----------------------------------------------------------------


def test_config_dir_deleted_or_moved_between_two_runs_is_made_again(
    isolated_config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    from kitaru._paths import config_dir

    assert config_dir() == isolated_config
    shutil.rmtree(isolated_config)
    assert config_dir() == isolated_config
    assert isolated_config.is_dir()
    assert (isolated_config.stat().st_mode & 0o777) == 0o700
    moved = tmp_path / "moved-config"
    monkeypatch.setenv("KITARU_CONFIG_PATH", str(moved))
    assert config_dir() == moved
    assert moved.is_dir()
    # A relative override is against the cwd of the moment.
    monkeypatch.setenv("KITARU_CONFIG_PATH", "rel-config")
    assert config_dir() == Path.cwd() / "rel-config"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert config_dir() == elsewhere / "rel-config"
    assert (elsewhere / "rel-config").is_dir()


def test_one_look_serves_only_its_own_thread_and_only_while_open() -> None:
    import contextvars
    import threading

    calls: list[str] = []

    def look() -> int:
        calls.append(threading.current_thread().name)
        return len(calls)

    inherited: list[int] = []
    with _filecache.one_look():
        assert _filecache.looked("x", look) == 1
        assert _filecache.looked("x", look) == 1
        context = contextvars.copy_context()  # as a thread inheriting it would see it
        thread = threading.Thread(
            target=lambda: inherited.append(context.run(_filecache.looked, "x", look))
        )
        thread.start()
        thread.join()
    assert inherited == [2]  # looked again: another thread
    assert context.run(_filecache.looked, "x", look) == 3  # the block has ended
    assert _filecache.looked("x", look) == 4

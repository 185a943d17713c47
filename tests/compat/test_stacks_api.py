"""Kitaru 0.21's stack functions and ``kitaru stack create|delete`` options.

0.21: ``create_stack(name, *, activate=True, labels=None)`` activates the new
stack by default; ``delete_stack(name_or_id, *, recursive=False, force=False)``;
``kitaru stack create --no-activate --type``, ``kitaru stack delete --recursive``.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

import kitaru
from kitaru import KitaruFeatureNotAvailableError, KitaruUsageError, StackInfo
from kitaru._paths import read_global_config
from tests._cli import Invoke, in_process


@pytest.fixture
def cli() -> Invoke:
    """``kitaru ARGS`` in this process."""
    return in_process()


def test_stack_functions_are_exported_with_0_21_signatures() -> None:
    import inspect

    for name in (
        "list_stacks",
        "current_stack",
        "use_stack",
        "create_stack",
        "delete_stack",
        "StackInfo",
    ):
        assert name in kitaru.__all__
    assert [f.name for f in dataclasses.fields(StackInfo)][:3] == ["id", "name", "is_active"]
    create = inspect.signature(kitaru.create_stack).parameters
    assert create["activate"].default is True
    assert create["activate"].kind is inspect.Parameter.KEYWORD_ONLY
    assert create["labels"].default is None
    delete = inspect.signature(kitaru.delete_stack).parameters
    assert (delete["recursive"].default, delete["force"].default) == (False, False)


def test_create_stack_activates_by_default() -> None:
    info = kitaru.create_stack("prod")
    assert info.is_active is True
    assert kitaru.current_stack() == info
    assert [(s.name, s.is_active) for s in kitaru.list_stacks()] == [
        ("local", False),
        ("prod", True),
    ]
    quiet = kitaru.create_stack("quiet", activate=False)
    assert quiet.is_active is False
    assert kitaru.current_stack().name == "prod"
    assert kitaru.use_stack(quiet.id).name == "quiet"
    assert kitaru.current_stack().name == "quiet"


def test_a_new_default_stack_is_used_by_later_runs() -> None:
    kitaru.create_stack("team")

    @kitaru.flow
    def where() -> str:
        return "ok"

    handle = where.run()
    assert handle.wait() == "ok"
    from kitaru._backend import get_backend

    assert get_backend().store.require_execution(handle.exec_id).stack == "team"


def test_labels_are_kept_and_checked() -> None:
    kitaru.create_stack("labelled", labels={"team": "ml", "env": "dev"})
    stored = read_global_config()["stacks"]["labelled"]
    assert stored["labels"] == {"team": "ml", "env": "dev"}
    for bad in ({"team": 1}, ["team"], {1: "x"}):
        with pytest.raises(KitaruUsageError, match="labels"):
            kitaru.create_stack("other", labels=bad)  # type: ignore[arg-type]
    assert [s.name for s in kitaru.list_stacks()] == ["local", "labelled"]


def test_delete_stack_takes_recursive_and_force() -> None:
    kitaru.create_stack("one", activate=False)
    kitaru.delete_stack("one", recursive=True)
    assert [s.name for s in kitaru.list_stacks()] == ["local"]
    kitaru.create_stack("two")
    with pytest.raises(KitaruUsageError, match="active stack"):
        kitaru.delete_stack("two", recursive=True)
    assert kitaru.current_stack().name == "two"  # refused: nothing changed
    kitaru.delete_stack("two", recursive=True, force=True)
    assert kitaru.current_stack().name == "local"
    kitaru.create_stack("three", activate=False)
    with pytest.raises(KitaruUsageError, match="recursive"):
        kitaru.delete_stack("three", recursive="yes")  # type: ignore[arg-type]
    assert [s.name for s in kitaru.list_stacks()] == ["local", "three"]


# --- the CLI -------------------------------------------------------------------------------------


def test_cli_create_activates_unless_no_activate(cli: Invoke) -> None:
    created = cli("stack", "create", "prod", "-o", "json")
    assert created.exit_code == 0, created.stderr
    item = created.json()["item"]
    assert item["name"] == "prod"
    assert item["is_active"] is True
    assert item["previous_active_stack"] == "local"
    assert item["stack_type"] == "local"
    assert item["components_created"] == []
    assert cli("stack", "current", "-o", "json").json()["item"]["name"] == "prod"

    quiet = cli("stack", "create", "quiet", "--no-activate", "--type", "local", "-o", "json")
    assert quiet.exit_code == 0, quiet.stderr
    assert quiet.json()["item"]["is_active"] is False
    assert quiet.json()["item"]["previous_active_stack"] == "prod"
    assert cli("stack", "current", "-o", "json").json()["item"]["name"] == "prod"

    text = cli("stack", "create", "texty")
    assert "now the active stack" in text.stdout


def test_cli_create_unknown_type_is_a_clear_error(cli: Invoke) -> None:
    result = cli("stack", "create", "k8s", "--type", "kubernetes", "-o", "json")
    assert result.exit_code == 1
    # (Which stream carries the JSON error is the CLI envelope's business, tested there.)
    error = json.loads(result.stderr.strip() or result.stdout)["error"]
    assert error["type"] == KitaruFeatureNotAvailableError.__name__
    assert "kubernetes" in error["message"]
    assert "local" in error["message"]
    assert [s.name for s in kitaru.list_stacks()] == ["local"]


def test_cli_delete_recursive(cli: Invoke) -> None:
    cli("stack", "create", "gone")
    refused = cli("stack", "delete", "gone", "--recursive")
    assert refused.exit_code == 1
    assert "--force" in refused.stderr
    deleted = cli("stack", "delete", "gone", "--recursive", "--force", "-o", "json")
    assert deleted.exit_code == 0, deleted.stderr
    item = deleted.json()["item"]
    assert item["deleted_stack"] == "gone"
    assert item["components_deleted"] == []
    assert item["new_active_stack"] == "local"
    assert item["recursive"] is True


def test_cli_create_as_a_real_process_exits_1_without_traceback() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "kitaru.cli", "stack", "create", "bad name"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "Invalid stack name" in result.stderr


def test_cli_create_from_a_file(cli: Invoke, tmp_path: Path) -> None:
    spec = tmp_path / "stack.yaml"
    spec.write_text(
        "name: gpu\n"
        "type: ray\n"
        "activate: false\n"
        "address: 127.0.0.1:6379\n"
        "runtime_env: {pip: [httpx]}\n"
        "num_gpus: 1\n"
        "labels: {team: research}\n"
    )
    created = cli("stack", "create", "-f", str(spec), "-o", "json")
    assert created.exit_code == 0, created.stderr
    item = created.json()["item"]
    assert (item["name"], item["is_active"], item["stack_type"]) == ("gpu", False, "ray")
    shown = cli("stack", "show", "gpu", "-o", "json").json()["item"]
    assert shown["config"]["address"] == "127.0.0.1:6379"
    assert shown["config"]["runtime_env"] == {"pip": ["httpx"]}
    assert shown["config"]["num_gpus"] == 1
    assert shown["labels"] == {"team": "research"}

    # NAME and options win over the file: the file as a template.
    other = cli("stack", "create", "other", "--file", str(spec), "--activate", "-o", "json")
    assert other.exit_code == 0, other.stderr
    assert (other.json()["item"]["name"], other.json()["item"]["is_active"]) == ("other", True)
    assert cli("stack", "show", "other", "-o", "json").json()["item"]["config"]["num_gpus"] == 1


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "does not exist"),
        ("- a\n- b\n", "must hold a mapping"),
        ("name: x\nflavour: ray\n", "unknown setting(s) flavour"),
        ("name: [unclosed\n", "not valid YAML"),
        ("type: local\n", "Missing NAME"),
        ("name: x\nactivate: maybe\n", "'activate' must be true or false"),
        ("name: bad name!\n", "Invalid stack name"),
    ],
)
def test_cli_create_from_a_bad_file_is_one_clear_error(
    cli: Invoke, tmp_path: Path, content: str | None, expected: str
) -> None:
    spec = tmp_path / "stack.yaml"
    if content is not None:
        spec.write_text(content)
    result = cli("stack", "create", "-f", str(spec), "-o", "json")
    assert result.exit_code == 1
    assert result.stdout == ""
    assert expected in json.loads(result.stderr)["error"]["message"]
    assert [s.name for s in kitaru.list_stacks()] == ["local"]


def test_cli_create_without_name_or_file_is_a_clear_error(cli: Invoke) -> None:
    result = cli("stack", "create")
    assert result.exit_code == 1
    assert "Missing NAME" in result.stderr

"""kitaru stack create --type ray and friends (no cluster needed to create or show one)."""

from __future__ import annotations

import pytest

import kitaru
from kitaru.errors import KitaruFeatureNotAvailableError, KitaruUsageError
from tests.cli.conftest import Invoke


def test_create_show_and_list_a_ray_stack(cli: Invoke) -> None:
    created = cli(
        "stack",
        "create",
        "cluster",
        "--type",
        "ray",
        "--address",
        "ray://head.example:10001",
        "--artifact-store",
        "s3://bucket/kitaru",
        "--runtime-env",
        '{"pip": ["httpx"], "env_vars": {"LOG_LEVEL": "debug"}}',
        "--num-cpus",
        "2",
        "--num-gpus",
        "0.5",
        "--resources",
        '{"accelerator_type:A100": 1}',
        "--no-activate",
        "-o",
        "json",
    )
    assert created.exit_code == 0, created.stderr
    assert created.json()["item"]["kind"] == "ray"
    assert created.json()["item"]["is_active"] is False

    shown = cli("stack", "show", "cluster", "-o", "json").json()["item"]
    assert shown["kind"] == "ray"
    assert shown["config"] == {
        "address": "ray://head.example:10001",
        "artifact_store": "s3://bucket/kitaru",
        "runtime_env": {"pip": ["httpx"], "env_vars": {"LOG_LEVEL": "debug"}},
        "num_cpus": 2,
        "num_gpus": 0.5,
        "resources": {"accelerator_type:A100": 1},
    }
    text = cli("stack", "show", "cluster").stdout
    assert "ray://head.example:10001" in text
    listed = cli("stack", "list", "-o", "json").json()["items"]
    assert {s["name"]: s["kind"] for s in listed} == {"local": "local", "cluster": "ray"}
    assert "ray" in cli("stack", "list").stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "needs an address"),
        (["--address", "not an address"], "Invalid address"),
        (["--address", "auto", "--runtime-env", "{nope"], "not valid JSON"),
        (["--address", "auto", "--runtime-env", "[1]"], "must be a JSON object"),
        (["--address", "auto", "--num-cpus", "-1"], "num_cpus"),
        # NaN and Infinity are not JSON: the stack's config file would not be either.
        (["--address", "auto", "--num-gpus", "inf"], "finite number"),
        (["--address", "auto", "--num-cpus", "nan"], "finite number"),
        (["--address", "auto", "--resources", '{"x": Infinity}'], "finite amounts"),
        (["--address", "auto", "--runtime-env", '{"a": NaN}'], "JSON-serializable"),
        (["--address", "auto", "--resources", '{"CPU": 2}'], "num_cpus/num_gpus"),
        (
            ["--address", "auto", "--runtime-env", '{"env_vars": {"OPENAI_API_KEY": "x"}}'],
            "look like secrets",
        ),
    ],
)
def test_bad_ray_options_are_one_clear_error(cli: Invoke, args: list[str], message: str) -> None:
    result = cli("stack", "create", "bad", "--type", "ray", *args)
    assert result.exit_code != 0
    assert message in result.stderr + result.stdout
    assert "Traceback" not in result.stderr + result.stdout
    assert [s.name for s in kitaru.list_stacks()] == ["local"]


def test_unknown_type_lists_the_kinds(cli: Invoke) -> None:
    result = cli("stack", "create", "k8s", "--type", "kubernetes")
    assert result.exit_code == 1
    assert "Available kinds: local, ray" in result.stderr + result.stdout


def test_python_api(cli: Invoke) -> None:
    info = kitaru.create_stack("cluster", kind="ray", address="auto", num_cpus=1, activate=False)
    assert info.kind == "ray"
    with pytest.raises(KitaruUsageError, match="only apply to ray stacks"):
        kitaru.create_stack("plain", address="auto")
    with pytest.raises(KitaruFeatureNotAvailableError, match="local, ray"):
        kitaru.create_stack("k8s", kind="kubernetes")

"""configure(), settings precedence, env vars, pyproject discovery, store location."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from kitaru._paths import config_dir
from kitaru._pyproject import KitaruConfigWarning
from kitaru._stacks import (
    LOCAL_STACK_ID,
    create_stack,
    current_stack,
    get_stack,
    persisted_active_stack,
    use_stack,
)
from kitaru.config import (
    ImageSettings,
    KitaruConfig,
    ResolvedSettings,
    configure,
    current_configuration,
    find_pyproject,
    reset_configuration,
    resolve_artifacts_root,
    resolve_llm_estimated_costs,
    resolve_settings,
    resolve_store_url,
    validate_cache,
    validate_retries,
)
from kitaru.errors import KitaruUsageError

# --------------------------------------------------------------------------------------
# Precedence: every level beats every level below it, for each key.
# --------------------------------------------------------------------------------------

LEVELS = ["run", "decorator", "configure", "env", "pyproject", "active", "default"]

# A distinct value per (key, level). Stack values are stack names created in the test.
VALUES: dict[str, dict[str, Any]] = {
    "stack": {
        "run": "s-run",
        "decorator": "s-dec",
        "configure": "s-conf",
        "env": "s-env",
        "pyproject": "s-py",
        "active": "s-active",
        "default": "local",
    },
    "cache": {
        "run": False,
        "decorator": True,
        "configure": False,
        "env": True,
        "pyproject": False,
        "default": True,
    },
    "retries": {
        "run": 1,
        "decorator": 2,
        "configure": 3,
        "env": 4,
        "pyproject": 5,
        "default": 0,
    },
    "image": {
        "run": "img-run",
        "decorator": "img-dec",
        "configure": "img-conf",
        "env": "img-env",
        "pyproject": "img-py",
        "default": None,
    },
}
ENV_NAMES = {
    "stack": "KITARU_STACK",
    "cache": "KITARU_CACHE",
    "retries": "KITARU_RETRIES",
    "image": "KITARU_IMAGE",
}


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    return json.dumps(value)


def _set_level(
    key: str,
    level: str,
    value: Any,
    monkeypatch: pytest.MonkeyPatch,
    run: dict[str, Any],
    decorator: dict[str, Any],
    workdir: Path,
) -> None:
    if level == "run":
        run[key] = value
    elif level == "decorator":
        decorator[key] = value
    elif level == "configure":
        configure(**{key: value})
    elif level == "env":
        monkeypatch.setenv(ENV_NAMES[key], str(value).lower() if key == "cache" else str(value))
    elif level == "pyproject":
        (workdir / "pyproject.toml").write_text(
            f'[project]\nname = "x"\n\n[tool.kitaru]\n{key} = {_toml_value(value)}\n'
        )
    elif level == "active":
        use_stack(value)
    else:
        raise AssertionError(level)


CASES = [
    (key, level)
    for key in VALUES
    for level in LEVELS
    if level in VALUES[key] and level != "default"
]


@pytest.mark.parametrize(("key", "level"), CASES, ids=[f"{k}-{lv}" for k, lv in CASES])
def test_each_level_beats_all_levels_below(
    key: str, level: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if key == "stack":
        for name in VALUES["stack"].values():
            if name != "local":
                create_stack(name, activate=False)
    workdir = Path.cwd()
    run: dict[str, Any] = {}
    decorator: dict[str, Any] = {}
    start = LEVELS.index(level)
    for lower in LEVELS[start:]:
        if lower in VALUES[key] and lower != "default":
            _set_level(key, lower, VALUES[key][lower], monkeypatch, run, decorator, workdir)

    resolved = resolve_settings(run=run, decorator=decorator)

    expected = VALUES[key][level]
    if key == "image":
        assert resolved.image is not None
        assert resolved.image["base_image"] == expected
    else:
        assert getattr(resolved, key) == expected
    expected_source = {
        "env": f"env:{ENV_NAMES[key]}",
        "pyproject": f"pyproject:{workdir / 'pyproject.toml'}",
        "active": "active stack",
    }.get(level, level)
    assert resolved.sources[key] == expected_source


def test_builtin_defaults() -> None:
    resolved = resolve_settings(run={}, decorator={})
    assert resolved == ResolvedSettings(
        stack="local",
        cache=True,
        retries=0,
        image=None,
        sources={"stack": "default", "cache": "default", "retries": "default", "image": "default"},
        stack_id=LOCAL_STACK_ID,
    )
    assert resolved.cache_explicit is False


def test_none_values_mean_not_given() -> None:
    configure(retries=3, cache=False)
    resolved = resolve_settings(
        run={"stack": None, "cache": None, "retries": None, "image": None},
        decorator={"retries": None},
    )
    assert (resolved.retries, resolved.cache) == (3, False)
    assert resolved.sources["retries"] == "configure"
    assert resolved.cache_explicit is True


def test_resolve_settings_accepts_missing_mappings() -> None:
    assert resolve_settings().stack == "local"


def test_unknown_keys_in_run_are_rejected() -> None:
    with pytest.raises(KitaruUsageError, match="'retry'"):
        resolve_settings(run={"retry": 1}, decorator={}, flow_name="agent")


# --------------------------------------------------------------------------------------
# Stack resolution
# --------------------------------------------------------------------------------------


def test_unknown_stack_lists_known_stacks() -> None:
    create_stack("prod")
    with pytest.raises(KitaruUsageError) as excinfo:
        resolve_settings(run={"stack": "nope"}, decorator={})
    message = str(excinfo.value)
    assert "'nope'" in message
    assert "local" in message
    assert "prod" in message
    assert "run" in message


def test_configured_stack_is_checked_at_resolution_not_configure() -> None:
    configure(stack="later")  # fine: may be created afterwards
    with pytest.raises(KitaruUsageError, match="Known stacks: local"):
        resolve_settings()
    create_stack("later")
    assert resolve_settings().stack == "later"


def test_stack_given_by_id_resolves_to_name() -> None:
    info = create_stack("gpu")
    resolved = resolve_settings(run={"stack": info.id})
    assert (resolved.stack, resolved.stack_id) == ("gpu", info.id)


def test_resolution_never_changes_the_persisted_active_stack(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    create_stack("a")
    create_stack("b")
    create_stack("c")
    use_stack("a")
    before = (config_dir() / "config.json").read_bytes()

    assert resolve_settings(run={"stack": "b"}).stack == "b"
    configure(stack="c")
    assert resolve_settings().stack == "c"
    monkeypatch.setenv("KITARU_STACK", "b")
    reset_configuration()
    assert resolve_settings().stack == "b"
    monkeypatch.delenv("KITARU_STACK")

    assert persisted_active_stack() == "a"
    assert current_stack().name == "a"
    assert resolve_settings().stack == "a"
    assert (config_dir() / "config.json").read_bytes() == before


def test_run_stack_is_bound_only_to_that_submission() -> None:
    create_stack("other", activate=False)
    assert resolve_settings(run={"stack": "other"}).stack == "other"
    assert resolve_settings(run={}).stack == "local"


def test_stale_persisted_active_stack_falls_back_to_default(isolated_config: Path) -> None:
    isolated_config.mkdir(parents=True, exist_ok=True)
    (isolated_config / "config.json").write_text(json.dumps({"active_stack": "gone"}))
    resolved = resolve_settings()
    assert (resolved.stack, resolved.sources["stack"]) == ("local", "default")


# --------------------------------------------------------------------------------------
# Validation helpers and configure()
# --------------------------------------------------------------------------------------


def test_validate_retries_message() -> None:
    with pytest.raises(KitaruUsageError) as excinfo:
        validate_retries(-1, where="in @flow(...) for 'my_agent'")
    assert str(excinfo.value) == (
        "retries must be a non-negative integer, got -1 (in @flow(...) for 'my_agent')."
    )


@pytest.mark.parametrize("bad", [-1, True, False, 1.0, "2", [1]])
def test_validate_retries_rejects(bad: object) -> None:
    with pytest.raises(KitaruUsageError, match="retries must be a non-negative integer"):
        validate_retries(bad, where="somewhere")


@pytest.mark.parametrize("good", [None, 0, 7])
def test_validate_retries_accepts(good: int | None) -> None:
    assert validate_retries(good, where="x") == good


@pytest.mark.parametrize("bad", [0, 1, "true", "yes"])
def test_validate_cache_rejects(bad: object) -> None:
    with pytest.raises(KitaruUsageError, match=r"cache must be True or False.*\(in here\)"):
        validate_cache(bad, where="in here")


def test_decorator_errors_name_the_flow() -> None:
    with pytest.raises(KitaruUsageError, match=r"\(in @flow\(\.\.\.\) for 'my_agent'\)"):
        resolve_settings(run={}, decorator={"retries": -1}, flow_name="my_agent")
    with pytest.raises(KitaruUsageError, match=r"\(in \.run\(\.\.\.\) for 'my_agent'\)"):
        resolve_settings(run={"cache": "no"}, decorator={}, flow_name="my_agent")


def test_configure_only_changes_passed_arguments() -> None:
    configure(retries=2, cache=False)
    result = configure(stack="prod")
    assert result == KitaruConfig(stack="prod", retries=2, cache=False)
    assert current_configuration() == result


def test_configure_none_clears_a_setting() -> None:
    configure(retries=2, cache=False, image="python:3.12")
    result = configure(retries=None, image=None)
    assert result == KitaruConfig(cache=False)


def test_configure_coerces_image() -> None:
    result = configure(image={"base_image": "python:3.12", "environment": {"A": "1"}})
    assert result.image == ImageSettings(base_image="python:3.12", environment={"A": "1"})


def test_configure_all_fields() -> None:
    result = configure(
        stack="s",
        image="img",
        cache=True,
        retries=1,
        llm_estimated_costs="OFF",
        project="proj",
        store_url="sqlite:////tmp/x.db",
        artifacts_root="/tmp/arts",
    )
    assert result == KitaruConfig(
        stack="s",
        image=ImageSettings(base_image="img"),
        cache=True,
        retries=1,
        llm_estimated_costs="off",
        project="proj",
        store_url="sqlite:////tmp/x.db",
        artifacts_root="/tmp/arts",
    )


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"retries": -1}, "retries must be a non-negative integer"),
        ({"retries": True}, "retries must be a non-negative integer"),
        ({"cache": "yes"}, "cache must be True or False"),
        ({"stack": ""}, "stack must be a non-empty"),
        ({"stack": 3}, "stack must be a non-empty"),
        ({"image": 3}, "image must be a base image string"),
        ({"image": {"nope": 1}}, "Unknown image setting 'nope'"),
        ({"llm_estimated_costs": "sometimes"}, "llm_estimated_costs must be 'auto' or 'off'"),
        ({"project": ""}, "project must be a non-empty string"),
        ({"store_url": 5}, "store_url must be a non-empty string"),
    ],
)
def test_configure_validates(kwargs: dict[str, Any], pattern: str) -> None:
    with pytest.raises(KitaruUsageError, match=pattern) as excinfo:
        configure(**kwargs)
    assert "kitaru.configure()" in str(excinfo.value)


def test_configure_is_all_or_nothing() -> None:
    configure(retries=1)
    with pytest.raises(KitaruUsageError):
        configure(retries=5, cache="bad")  # type: ignore[arg-type]
    assert current_configuration() == KitaruConfig(retries=1)


def test_reset_configuration() -> None:
    configure(retries=1, stack="x")
    reset_configuration()
    assert current_configuration() == KitaruConfig()


def test_configure_is_thread_safe() -> None:
    barrier = threading.Barrier(8)
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        try:
            barrier.wait()
            for _ in range(200):
                if i % 4 == 0:
                    configure(retries=i)
                elif i % 4 == 1:
                    configure(cache=False)
                elif i % 4 == 2:
                    configure(stack="s")
                else:
                    configure(project="p")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    final = current_configuration()
    assert final.retries in (0, 4)
    assert (final.cache, final.stack, final.project) == (False, "s", "p")


# --------------------------------------------------------------------------------------
# Environment variables
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("true", True),
        ("1", True),
        ("YES", True),
        ("On", True),
        (" false ", False),
        ("0", False),
        ("no", False),
        ("OFF", False),
    ],
)
def test_env_cache_values(raw: str, expected: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KITARU_CACHE", raw)
    resolved = resolve_settings()
    assert resolved.cache is expected
    assert resolved.sources["cache"] == "env:KITARU_CACHE"


def test_env_cache_invalid(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KITARU_CACHE", "maybe")
    with pytest.raises(KitaruUsageError, match=r"KITARU_CACHE.*'maybe'"):
        resolve_settings()


@pytest.mark.parametrize("raw", ["abc", "-1", "1.5", "2x"])
def test_env_retries_invalid(raw: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KITARU_RETRIES", raw)
    with pytest.raises(KitaruUsageError, match="KITARU_RETRIES must be a non-negative integer"):
        resolve_settings()


def test_env_empty_values_count_as_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("KITARU_STACK", "KITARU_CACHE", "KITARU_RETRIES", "KITARU_IMAGE"):
        monkeypatch.setenv(name, "  ")
    resolved = resolve_settings()
    assert set(resolved.sources.values()) == {"default"}


def test_env_image_string_and_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KITARU_IMAGE", "python:3.12-slim")
    image = resolve_settings().image
    assert image is not None
    assert image["base_image"] == "python:3.12-slim"

    monkeypatch.setenv("KITARU_IMAGE", json.dumps({"base_image": "b", "apt_packages": ["git"]}))
    resolved = resolve_settings()
    assert resolved.image is not None
    assert resolved.image["apt_packages"] == ["git"]
    assert resolved.sources["image"] == "env:KITARU_IMAGE"


def test_env_image_bad_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KITARU_IMAGE", "{not json")
    with pytest.raises(KitaruUsageError, match="KITARU_IMAGE"):
        resolve_settings()


def test_env_image_unknown_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KITARU_IMAGE", '{"base": "x"}')
    with pytest.raises(KitaruUsageError, match=r"Unknown image setting 'base'.*KITARU_IMAGE"):
        resolve_settings()


def test_env_errors_surface_even_when_overridden(monkeypatch: pytest.MonkeyPatch) -> None:
    # A broken setting should fail loudly, not only on the day it starts to matter.
    monkeypatch.setenv("KITARU_RETRIES", "lots")
    with pytest.raises(KitaruUsageError, match="KITARU_RETRIES"):
        resolve_settings(run={"retries": 1})


# --------------------------------------------------------------------------------------
# pyproject.toml
# --------------------------------------------------------------------------------------


def _write_pyproject(directory: Path, body: str) -> Path:
    path = directory / "pyproject.toml"
    path.write_text('[project]\nname = "demo"\n\n' + body)
    return path


def test_pyproject_found_from_nested_subdirectory(monkeypatch: pytest.MonkeyPatch) -> None:
    root = Path.cwd()
    path = _write_pyproject(root, "[tool.kitaru]\nretries = 3\ncache = false\n")
    nested = root / "src" / "pkg" / "deep"
    nested.mkdir(parents=True)
    monkeypatch.chdir(nested)
    assert find_pyproject() == path
    resolved = resolve_settings()
    assert (resolved.retries, resolved.cache) == (3, False)
    assert resolved.sources["retries"] == f"pyproject:{path}"


def test_nearest_pyproject_wins_even_without_kitaru_table(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    root = Path.cwd()
    _write_pyproject(root, "[tool.kitaru]\nretries = 3\n")
    inner = root / "inner"
    inner.mkdir()
    _write_pyproject(inner, "[tool.other]\nx = 1\n")
    monkeypatch.chdir(inner)
    assert resolve_settings().retries == 0


def test_pyproject_image_table() -> None:
    _write_pyproject(
        Path.cwd(),
        "[tool.kitaru.image]\nbase_image = 'python:3.12-slim'\n"
        "[tool.kitaru.image.environment]\nLOG_LEVEL = 'INFO'\n",
    )
    image = resolve_settings().image
    assert image is not None
    assert image["base_image"] == "python:3.12-slim"
    assert image["environment"] == {"LOG_LEVEL": "INFO"}


@pytest.mark.parametrize(
    ("body", "key"),
    [
        ("retries = -1", "retries"),
        ("retries = 'two'", "retries"),
        ("cache = 'yes'", "cache"),
        ("stack = 5", "stack"),
        ("image = 5", "image"),
        ("image = { nope = 1 }", "image"),
    ],
)
def test_pyproject_bad_values_name_file_and_key(body: str, key: str) -> None:
    path = _write_pyproject(Path.cwd(), f"[tool.kitaru]\n{body}\n")
    with pytest.raises(KitaruUsageError) as excinfo:
        resolve_settings()
    message = str(excinfo.value)
    assert str(path) in message
    assert f"'{key}'" in message


def test_pyproject_invalid_toml_names_file() -> None:
    path = Path.cwd() / "pyproject.toml"
    path.write_text("[tool.kitaru\nretries = ")
    with pytest.raises(KitaruUsageError, match="not valid TOML") as excinfo:
        resolve_settings()
    assert str(path) in str(excinfo.value)


def test_pyproject_tool_kitaru_must_be_a_table() -> None:
    path = Path.cwd() / "pyproject.toml"
    path.write_text("[tool]\nkitaru = 3\n")
    with pytest.raises(KitaruUsageError, match=r"\[tool.kitaru\].*must be a table"):
        resolve_settings()


def test_pyproject_unknown_keys_are_ignored_with_a_warning() -> None:
    _write_pyproject(Path.cwd(), "[tool.kitaru]\nlog_store = 'x'\nretries = 1\n")
    with pytest.warns(KitaruConfigWarning, match="Unknown key 'log_store'"):
        assert resolve_settings().retries == 1


def test_pyproject_rewrite_is_picked_up() -> None:
    _write_pyproject(Path.cwd(), "[tool.kitaru]\nretries = 1\n")
    assert resolve_settings().retries == 1
    # Same size, written immediately: must not be served from a stale cache.
    _write_pyproject(Path.cwd(), "[tool.kitaru]\nretries = 2\n")
    assert resolve_settings().retries == 2


# --------------------------------------------------------------------------------------
# Records
# --------------------------------------------------------------------------------------


def test_record_is_json_and_round_trips() -> None:
    create_stack("prod")
    resolved = resolve_settings(
        run={"stack": "prod", "retries": 2},
        decorator={"image": {"base_image": "b", "environment": {"API_KEY": "s3cr3t"}}},
    )
    record = json.loads(json.dumps(resolved.to_record()))
    assert record["stack"] == "prod"
    assert record["stack_id"] == get_stack("prod").id
    assert record["image"]["environment"] == {"API_KEY": "***"}
    assert "s3cr3t" not in json.dumps(record)
    assert ResolvedSettings.from_record(record) == resolved


def test_record_is_a_copy() -> None:
    resolved = resolve_settings(run={"image": "b"})
    record = resolved.to_record()
    record["image"]["base_image"] = "mutated"
    record["sources"]["image"] = "mutated"
    assert resolved.image is not None
    assert resolved.image["base_image"] == "b"
    assert resolved.sources["image"] == "run"


def test_from_record_rejects_malformed() -> None:
    with pytest.raises(KitaruUsageError, match="'retries'"):
        ResolvedSettings.from_record({"stack": "local", "cache": True})


# --------------------------------------------------------------------------------------
# Store location and scalar settings
# --------------------------------------------------------------------------------------


def test_store_url_default(isolated_config: Path) -> None:
    assert resolve_store_url() == f"sqlite:///{isolated_config / 'kitaru.db'}"
    assert resolve_artifacts_root() == str(isolated_config / "artifacts")


@pytest.mark.parametrize(
    ("resolver", "key", "env"),
    [
        (resolve_store_url, "store_url", "KITARU_STORE_URL"),
        (resolve_artifacts_root, "artifacts_root", "KITARU_ARTIFACTS_ROOT"),
    ],
)
def test_store_location_precedence(
    resolver: Callable[[], str], key: str, env: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write_pyproject(Path.cwd(), f"[tool.kitaru]\n{key} = '/from/pyproject'\n")
    assert resolver() == "/from/pyproject"
    monkeypatch.setenv(env, "/from/env")
    assert resolver() == "/from/env"
    configure_kwargs: dict[str, Any] = {key: "/from/configure"}
    configure(**configure_kwargs)
    assert resolver() == "/from/configure"
    configure_kwargs[key] = None
    configure(**configure_kwargs)
    assert resolver() == "/from/env"


def test_relative_artifacts_root_in_pyproject_is_relative_to_its_directory(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    root = Path.cwd()
    _write_pyproject(root, "[tool.kitaru]\nartifacts_root = 'data/artifacts'\n")
    (root / "sub").mkdir()
    monkeypatch.chdir(root / "sub")
    assert resolve_artifacts_root() == str(root / "data" / "artifacts")
    assert resolve_store_url().startswith("sqlite:///")


def test_remote_artifacts_root_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KITARU_ARTIFACTS_ROOT", "s3://bucket/prefix")
    assert resolve_artifacts_root() == "s3://bucket/prefix"


def test_llm_estimated_costs_resolution(monkeypatch: pytest.MonkeyPatch) -> None:
    assert resolve_llm_estimated_costs() == "auto"
    _write_pyproject(Path.cwd(), "[tool.kitaru]\nllm_estimated_costs = 'off'\n")
    assert resolve_llm_estimated_costs() == "off"
    monkeypatch.setenv("KITARU_LLM_ESTIMATED_COSTS", "auto")
    assert resolve_llm_estimated_costs() == "auto"
    configure(llm_estimated_costs="off")
    assert resolve_llm_estimated_costs() == "off"
    monkeypatch.setenv("KITARU_LLM_ESTIMATED_COSTS", "bogus")
    configure(llm_estimated_costs=None)
    with pytest.raises(KitaruUsageError, match="KITARU_LLM_ESTIMATED_COSTS"):
        resolve_llm_estimated_costs()


def test_config_dir_is_created_on_demand(isolated_config: Path) -> None:
    assert not isolated_config.exists()
    assert config_dir() == isolated_config
    assert isolated_config.is_dir()

"""Misconfiguration that used to pass silently or lock users out (API side).

* A store URL the user set whose directory does not exist (a typo) must fail
  clearly, not start a new empty store; only the default store is created freely.
* A store URL whose file does not exist is created by the first flow run, but
  reading it (the client) says it does not exist instead of creating it.
* An unparsable pyproject.toml warns once and is ignored for reading; a flow run
  fails on it. Unknown [tool.kitaru] keys warn with the closest valid key.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

import kitaru
from kitaru import KitaruClient, checkpoint, flow
from kitaru._backend import forget_backends
from kitaru._paths import config_dir
from kitaru._pyproject import KitaruConfigWarning
from kitaru.config import resolve_settings, resolve_store_url
from kitaru.errors import KitaruBackendError, KitaruUsageError


@checkpoint
def double(x: int) -> int:
    return 2 * x


@flow
def tiny_flow(x: int) -> int:
    return double(x)


@pytest.fixture(autouse=True)
def _fresh_backends() -> Iterator[None]:
    forget_backends()
    yield
    forget_backends()


def _config_warnings(action: object) -> list[str]:
    """Messages of the KitaruConfigWarnings ``action()`` gives (every one, no dedup)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        action()  # type: ignore[operator]
    return [str(w.message) for w in caught if issubclass(w.category, KitaruConfigWarning)]


# --- store URL: a directory that does not exist ------------------------------------------


@pytest.mark.parametrize("how", ["env", "configure", "pyproject"])
def test_a_store_url_into_a_missing_directory_fails_and_creates_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    typo = tmp_path / "typo" / "dir"
    url = f"sqlite:///{typo / 'store.db'}"
    source = {
        "env": "KITARU_STORE_URL",
        "configure": "kitaru.configure(store_url=...)",
        "pyproject": "[tool.kitaru]",
    }[how]
    if how == "env":
        monkeypatch.setenv("KITARU_STORE_URL", url)
    elif how == "configure":
        kitaru.configure(store_url=url)
    else:
        (Path.cwd() / "pyproject.toml").write_text(f'[tool.kitaru]\nstore_url = "{url}"\n')

    with pytest.raises(KitaruBackendError) as reading:
        KitaruClient().executions.list()
    message = str(reading.value)
    assert str(typo) in message
    assert "does not exist" in message
    assert source in message
    assert f"mkdir -p {typo}" in message

    with pytest.raises(KitaruBackendError, match="does not exist") as running:
        tiny_flow.run(1)
    assert str(typo) in str(running.value)
    assert not (tmp_path / "typo").exists()


def test_the_default_store_is_created_for_reading() -> None:
    assert KitaruClient().executions.list() == []
    assert (config_dir() / "kitaru.db").is_file()


# --- store URL: an existing directory, a file that does not exist ------------------------


def test_reading_a_store_file_that_does_not_exist_says_so_and_a_run_creates_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "project-store.db"
    monkeypatch.setenv("KITARU_STORE_URL", f"sqlite:///{path}")
    with pytest.raises(KitaruBackendError) as reading:
        KitaruClient()
    message = str(reading.value)
    assert str(path) in message
    assert "does not exist" in message
    assert "KITARU_STORE_URL" in message
    assert not path.exists()

    assert tiny_flow.run(4).wait(timeout=30) == 8  # the first run creates the store
    assert path.is_file()
    assert [e.flow_name for e in KitaruClient().executions.list()] == ["tiny_flow"]


# --- pyproject.toml that does not parse --------------------------------------------------


@pytest.mark.parametrize(
    "body", ["[tool.kitaru]\ncache = \n", "[tool]\nkitaru = 3\n"], ids=["toml", "not a table"]
)
def test_a_broken_pyproject_warns_once_and_reading_goes_on(body: str) -> None:
    path = Path.cwd() / "pyproject.toml"
    path.write_text(body)
    client_warnings = _config_warnings(lambda: KitaruClient().executions.list())
    assert len(client_warnings) == 1
    assert str(path) in client_warnings[0]
    assert "not valid TOML" in client_warnings[0] or "must be a table" in client_warnings[0]
    assert resolve_store_url().startswith("sqlite:///")
    # Once per process for that content: reading again does not repeat it.
    assert _config_warnings(lambda: KitaruClient().executions.list()) == []


def test_a_broken_pyproject_still_fails_a_run_clearly_and_writes_nothing() -> None:
    path = Path.cwd() / "pyproject.toml"
    path.write_text("[tool.kitaru]\nretries = \n")
    with pytest.raises(KitaruUsageError, match="not valid TOML") as running:
        tiny_flow.run(1)
    assert str(path) in str(running.value)
    assert "line 2" in str(running.value)  # the parse error itself
    with pytest.warns(KitaruConfigWarning):
        assert KitaruClient().executions.list() == []


# --- [tool.kitaru] keys Kitaru does not know ---------------------------------------------


def test_a_misspelled_key_warns_with_the_closest_valid_key() -> None:
    path = Path.cwd() / "pyproject.toml"
    path.write_text("[tool.kitaru]\ncahce = false\nretires = 2\nstack = 'local'\nfoo = 1\n")
    messages = _config_warnings(resolve_settings)
    assert len(messages) == 3
    by_key = {m.split("'")[1]: m for m in messages}
    assert "Did you mean 'cache'?" in by_key["cahce"]
    assert "Did you mean 'retries'?" in by_key["retires"]
    assert "Did you mean" not in by_key["foo"]
    assert all(str(path) in m for m in messages)
    settings = resolve_settings()  # the misspelled keys are ignored, the rest applies
    assert (settings.cache, settings.retries) == (True, 0)
    assert settings.sources["stack"].startswith("pyproject:")
    assert _config_warnings(resolve_settings) == []  # once per content

"""``kitaru log-store set|show|reset`` and ``kitaru analytics status|opt-in|opt-out``:
Kitaru 0.21's settings, kept in the user config, never echoing a key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests._cli import Invoke

DEFAULT = {
    "backend": "kitaru-store",
    "endpoint": None,
    "api_key": None,
    "source": "default",
    "is_default": True,
    "logs_kept_in": "the Kitaru store (kitaru executions logs)",
    "exports_logs": False,
}


def _item(cli: Invoke, *args: str) -> dict[str, object]:
    result = cli(*args, "-o", "json")
    assert result.exit_code == 0, result.stderr
    document = result.json()
    assert set(document) == {"command", "item"}
    assert document["command"] == ".".join([args[0], args[1].replace("-", "_")])
    return document["item"]  # type: ignore[no-any-return]


def _error(cli: Invoke, *args: str) -> dict[str, str]:
    result = cli(*args, "-o", "json")
    assert result.exit_code == 1
    assert result.stdout == ""
    return json.loads(result.stderr)["error"]  # type: ignore[no-any-return]


def test_set_show_reset_round_trip_and_the_key_is_never_printed(
    cli: Invoke, kitaru_home: Path
) -> None:
    assert _item(cli, "log-store", "show") == DEFAULT
    secret = "dd-secret-0123456789"
    args = ("log-store", "set", "DataDog", "--endpoint", "https://logs.example.com/", "--api-key")
    result = cli(*args, secret, "-o", "json")
    assert result.exit_code == 0, result.stderr
    assert secret not in result.stdout + result.stderr
    item = result.json()["item"]
    assert item["backend"] == "datadog"
    assert item["endpoint"] == "https://logs.example.com"
    assert item["api_key"] == "***"
    assert item["source"] == "global user config"
    assert item["is_default"] is False
    assert item["exports_logs"] is False

    text = cli("log-store", "show")
    assert text.exit_code == 0, text.stderr
    assert "datadog" in text.stdout
    assert "set (hidden)" in text.stdout
    assert secret not in text.stdout
    # Kept in the user config, which only its owner may read.
    config = kitaru_home / "config.json"
    assert json.loads(config.read_text())["log_store"]["backend"] == "datadog"
    assert config.stat().st_mode & 0o077 == 0

    assert _item(cli, "log-store", "reset") == DEFAULT
    assert "log_store" not in json.loads(config.read_text())
    assert _item(cli, "log-store", "show") == DEFAULT


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["Bad Name", "--endpoint", "https://x.example"], "not a valid name"),
        (["datadog", "--endpoint", "ftp://x.example"], "http:// or https://"),
        (["datadog", "--endpoint", "https://x.example", "--api-key", " "], "API key"),
        (["artifact-store", "--endpoint", "https://x.example"], "default log store already"),
        (["kitaru-store", "--endpoint", "https://x.example"], "default log store already"),
    ],
)
def test_bad_settings_are_usage_errors_that_leave_the_setting_alone(
    cli: Invoke, args: list[str], words: str
) -> None:
    _item(cli, "log-store", "set", "otel", "--endpoint", "https://otel.example")
    error = _error(cli, "log-store", "set", *args)
    assert error["type"] == "KitaruUsageError"
    assert words in error["message"]
    assert _item(cli, "log-store", "show")["backend"] == "otel"


def test_the_environment_wins_and_is_checked(cli: Invoke, monkeypatch: pytest.MonkeyPatch) -> None:
    _item(cli, "log-store", "set", "otel", "--endpoint", "https://otel.example")
    monkeypatch.setenv("KITARU_LOG_STORE_BACKEND", "datadog")
    monkeypatch.setenv("KITARU_LOG_STORE_ENDPOINT", "https://env.example")
    monkeypatch.setenv("KITARU_LOG_STORE_API_KEY", "k")
    shown = _item(cli, "log-store", "show")
    assert (shown["backend"], shown["endpoint"], shown["api_key"], shown["source"]) == (
        "datadog",
        "https://env.example",
        "***",
        "environment",
    )
    monkeypatch.setenv("KITARU_LOG_STORE_BACKEND", "artifact-store")  # 0.21's default
    assert "take" in _error(cli, "log-store", "show")["message"]  # no endpoint with it
    monkeypatch.delenv("KITARU_LOG_STORE_ENDPOINT")
    monkeypatch.delenv("KITARU_LOG_STORE_API_KEY")
    assert _item(cli, "log-store", "show") == {**DEFAULT, "source": "environment"}
    monkeypatch.delenv("KITARU_LOG_STORE_BACKEND")
    monkeypatch.setenv("KITARU_LOG_STORE_ENDPOINT", "https://env.example")
    error = _error(cli, "log-store", "show")
    assert error["type"] == "KitaruUsageError"
    assert "KITARU_LOG_STORE_BACKEND" in error["message"]


def test_a_damaged_setting_names_the_fix(cli: Invoke, kitaru_home: Path) -> None:
    kitaru_home.mkdir(parents=True, exist_ok=True)
    (kitaru_home / "config.json").write_text(json.dumps({"log_store": {"backend": "x"}}))
    error = _error(cli, "log-store", "show")
    assert "damaged" in error["message"]
    assert "kitaru log-store reset" in error["message"]
    assert _item(cli, "log-store", "reset") == DEFAULT


def test_analytics_records_the_choice_and_sends_nothing(cli: Invoke, kitaru_home: Path) -> None:
    assert _item(cli, "analytics", "status") == {
        "opted_in": False,
        "source": "default",
        "sends_data": False,
    }
    assert _item(cli, "analytics", "opt-in")["opted_in"] is True
    assert _item(cli, "analytics", "status") == {
        "opted_in": True,
        "source": "global user config",
        "sends_data": False,
    }
    assert _item(cli, "analytics", "opt-out")["opted_in"] is False
    assert json.loads((kitaru_home / "config.json").read_text())["analytics_opt_in"] is False
    text = cli("analytics", "status")
    assert text.exit_code == 0
    assert "opted out" in text.stdout
    assert "sends no usage data" in text.stdout

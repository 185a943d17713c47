"""Secrets: round trip on SQLite and PostgreSQL, encryption at rest, redaction, CLI."""

from __future__ import annotations

import contextlib
import json
import stat
from pathlib import Path

import pytest
import sqlalchemy as sa

import kitaru
from kitaru import KitaruStateError, KitaruUsageError
from tests._cli import in_process

VALUE = "sk-super-secret-value-0123456789"


def test_round_trip(any_store: str) -> None:
    created = kitaru.create_secret("openai", {"OPENAI_API_KEY": VALUE, "ORG": "acme"})
    assert created.keys == ["OPENAI_API_KEY", "ORG"]
    secret = kitaru.get_secret("openai")
    assert secret.values == {"OPENAI_API_KEY": VALUE, "ORG": "acme"}
    assert kitaru.get_secret(created.id).name == "openai"
    with pytest.raises(KitaruStateError, match="already exists"):
        kitaru.create_secret("openai", {"X": "y"})

    from kitaru.secrets import set_secret

    set_secret("openai", {"ORG": "other", "EXTRA": "1"})
    assert kitaru.get_secret("openai").values == {
        "OPENAI_API_KEY": VALUE,
        "ORG": "other",
        "EXTRA": "1",
    }
    (summary,) = kitaru.list_secrets()
    assert (summary.name, summary.keys) == ("openai", ["EXTRA", "OPENAI_API_KEY", "ORG"])
    assert VALUE not in repr(summary.to_dict())

    assert kitaru.delete_secret("openai").name == "openai"
    assert kitaru.list_secrets() == []
    with pytest.raises(KitaruStateError, match="No secret 'openai'"):
        kitaru.get_secret("openai")


def test_only_ciphertext_is_stored(any_store: str, kitaru_home: Path) -> None:
    kitaru.create_secret("db", {"PASSWORD": VALUE})
    engine = sa.create_engine(any_store)
    try:
        with engine.connect() as conn:
            rows = conn.exec_driver_sql("SELECT * FROM kitaru_secrets").all()
    finally:
        engine.dispose()
    assert len(rows) == 1
    assert "PASSWORD" in repr(rows[0])  # key names are kept in the clear
    assert VALUE not in repr(rows[0])
    if any_store.startswith("sqlite"):
        for path in kitaru_home.rglob("*"):
            if path.is_file():  # the database, its WAL, the config, the key file
                assert VALUE.encode() not in path.read_bytes(), path


def test_the_key_file_and_keys_from_the_environment(
    kitaru_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kitaru.create_secret("a", {"K": VALUE})
    key_file = kitaru_home / "secrets.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600

    from cryptography.fernet import Fernet

    monkeypatch.setenv("KITARU_SECRETS_KEY", Fernet.generate_key().decode())
    with pytest.raises(KitaruStateError, match="another key") as info:
        kitaru.get_secret("a")
    assert VALUE not in str(info.value)
    kitaru.create_secret("b", {"K": "v2"})
    assert kitaru.get_secret("b").values == {"K": "v2"}
    monkeypatch.delenv("KITARU_SECRETS_KEY")
    assert kitaru.get_secret("a").values == {"K": VALUE}

    monkeypatch.setenv("KITARU_SECRETS_KEY", "not-a-key")
    with pytest.raises(KitaruUsageError, match="not a valid Fernet key") as bad:
        kitaru.get_secret("a")
    assert "not-a-key" not in str(bad.value)


def test_values_never_show_by_accident() -> None:
    kitaru.create_secret("s", {"TOKEN": VALUE})
    secret = kitaru.get_secret("s")
    assert VALUE not in repr(secret)
    assert VALUE not in str(secret)
    with pytest.raises(KitaruUsageError) as info:
        kitaru.create_secret("t", {"TOKEN": 12345678})  # type: ignore[dict-item]
    assert "12345678" not in str(info.value)
    with pytest.raises(KitaruUsageError, match="not valid"):
        kitaru.create_secret("bad name!", {"K": "v"})


def test_cli(monkeypatch: pytest.MonkeyPatch) -> None:
    kitaru_cli = in_process()
    result = kitaru_cli("secrets", "set", "oai", f"--OPENAI_API_KEY={VALUE}", "--ORG", "acme")
    assert result.exit_code == 0, result.stderr
    assert VALUE not in result.stdout

    shown = kitaru_cli("secrets", "show", "oai")
    assert VALUE not in shown.stdout
    assert "***" in shown.stdout
    data = kitaru_cli("secrets", "show", "oai", "-o", "json").json()
    assert data["command"] == "secrets.show"
    assert data["item"]["values"] == {"OPENAI_API_KEY": "***", "ORG": "***"}
    revealed = kitaru_cli("secrets", "show", "oai", "--show-values", "-o", "json").json()
    assert revealed["item"]["values"]["OPENAI_API_KEY"] == VALUE

    listed = kitaru_cli("secrets", "list", "-o", "json").json()
    assert listed["count"] == 1
    assert listed["items"][0]["keys"] == ["OPENAI_API_KEY", "ORG"]
    assert VALUE not in json.dumps(listed)

    assert kitaru_cli("secrets", "set", "oai").exit_code == 1  # no values
    assert kitaru_cli("secrets", "set", "oai", "stray").exit_code == 1
    error = kitaru_cli("secrets", "show", "nope", "-o", "json").error_json()
    assert error["error"]["type"] == "KitaruStateError"
    deleted = kitaru_cli("secrets", "delete", "oai", "-o", "json").json()
    assert deleted["item"]["name"] == "oai"
    assert kitaru_cli("secrets", "list", "-o", "json").json()["count"] == 0


def test_cli_refuses_an_empty_value_like_a_missing_one() -> None:
    kitaru_cli = in_process()
    missing = kitaru_cli("secrets", "set", "a", "--KEY", "-o", "json").error_json()
    for args in (["--KEY="], ["--KEY", ""], ["--OTHER=x", "--KEY="]):
        result = kitaru_cli("secrets", "set", "a", *args, "-o", "json")
        assert result.exit_code == 1
        error = result.error_json()["error"]
        assert error["type"] == missing["error"]["type"]
        assert "--KEY" in error["message"]
        assert "needs a value" in error["message"]
    assert kitaru.list_secrets() == []  # nothing stored, not even the other key

    kitaru.create_secret("a", {"KEY": "old"})
    assert kitaru_cli("secrets", "set", "a", "--KEY=").exit_code == 1
    assert kitaru.get_secret("a").values == {"KEY": "old"}  # not blanked


def test_model_cli_and_frozen_config_hold_names_only() -> None:
    kitaru_cli = in_process()
    kitaru.create_secret("oai", {"OPENAI_API_KEY": VALUE})
    first = kitaru_cli(
        "model",
        "register",
        "fast",
        "--model",
        "openai/gpt-4o-mini",
        "--secret",
        "oai",
        "-o",
        "json",
    )
    assert first.json()["item"] == {
        "alias": "fast",
        "model": "openai/gpt-4o-mini",
        "secret": "oai",
        "is_default": True,  # the first alias is the default
    }
    kitaru_cli("model", "register", "big", "-m", "anthropic/claude-test", "--default")
    listed = kitaru_cli("model", "list", "-o", "json").json()
    assert [(i["alias"], i["is_default"]) for i in listed["items"]] == [
        ("big", True),
        ("fast", False),
    ]
    bad = kitaru_cli("model", "register", "x", "--model", "acme/m", "-o", "json").error_json()
    assert "Supported providers" in bad["error"]["message"]
    assert kitaru_cli("model", "remove", "nope").exit_code == 1

    @kitaru.flow
    def noop() -> int:
        return 1

    handle = noop.run()
    handle.wait()
    execution = kitaru.KitaruClient().executions.get(handle.exec_id)
    frozen = json.dumps(execution.to_dict(), default=str)
    assert '"fast"' in frozen  # the registry is frozen into the execution
    assert VALUE not in frozen
    removed = kitaru_cli("model", "remove", "big", "-o", "json").json()
    assert removed["item"]["alias"] == "big"
    assert [i["alias"] for i in kitaru_cli("model", "list", "-o", "json").json()["items"]] == [
        "fast"
    ]


def test_through_a_kitaru_server_the_server_sees_only_ciphertext(
    tmp_path: Path, kitaru_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kitaru._backend import forget_backends
    from tests.server.conftest import http_store

    kitaru_home.mkdir(parents=True, exist_ok=True)
    store_url = f"sqlite:///{kitaru_home / 'served.db'}"
    server = http_store(store_url, tmp_path)
    remote = next(server)
    try:
        monkeypatch.setenv("KITARU_STORE_URL", remote.url)
        monkeypatch.setenv("KITARU_AUTH_TOKEN", remote._session.connection.api_key)
        forget_backends()
        kitaru.create_secret("remote", {"API_KEY": VALUE})
        from kitaru.secrets import set_secret

        set_secret("remote", {"OTHER": "x"})
        assert kitaru.get_secret("remote").values == {"API_KEY": VALUE, "OTHER": "x"}
        assert [s.name for s in kitaru.list_secrets()] == ["remote"]
        assert VALUE.encode() not in (kitaru_home / "served.db").read_bytes()
        log = tmp_path / "server.log"
        assert not log.exists() or VALUE not in log.read_text(errors="replace")
        kitaru.delete_secret("remote")
        assert kitaru.list_secrets() == []
    finally:
        forget_backends()
        with contextlib.suppress(StopIteration):
            next(server)

"""Secrets: round trip on SQLite and PostgreSQL, encryption at rest, redaction, CLI."""

from __future__ import annotations

import contextlib
import json
import stat
from datetime import UTC, datetime
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


def test_a_missing_key_is_never_replaced_when_the_store_holds_secrets(
    any_store: str, kitaru_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A second config dir on the same store (or a key file moved away) gets no new key:
    secrets under two keys would each be unreadable to someone."""
    kitaru_cli = in_process()
    assert kitaru_cli("secrets", "set", "a", f"--TOKEN={VALUE}").exit_code == 0
    first_key = kitaru_home / "secrets.key"
    assert first_key.exists()
    other_home = tmp_path / "other-home"
    monkeypatch.setenv("KITARU_CONFIG_PATH", str(other_home))
    other_key = other_home / "secrets.key"

    # Reads never create a key; they say which key to provide and where.
    error = kitaru_cli("secrets", "show", "a", "-o", "json").error_json()["error"]
    assert error["type"] == "KitaruStateError"
    assert "KITARU_SECRETS_KEY" in error["message"]
    assert str(other_key) in error["message"]
    assert kitaru_cli("secrets", "list").exit_code == 0
    with pytest.raises(KitaruStateError, match="restore that key file"):
        kitaru.get_secret("a")
    assert not other_key.exists()

    # Writes (a new secret, or an update of one) are refused, and store nothing.
    for args in (["other", "--K=v"], ["a", "--K=v"]):
        refused = kitaru_cli("secrets", "set", *args, "-o", "json").error_json()["error"]
        assert refused["type"] == "KitaruStateError"
        assert "written with another key" in refused["message"]
        assert "KITARU_SECRETS_KEY" in refused["message"]
        assert str(other_key) in refused["message"]
    with pytest.raises(KitaruStateError, match="written with another key"):
        kitaru.create_secret("other", {"K": "v"})
    assert not other_key.exists()
    assert [(s.name, s.keys) for s in kitaru.list_secrets()] == [("a", ["TOKEN"])]

    # The key restored at that path: the same store works from here, one key for all.
    other_home.mkdir(parents=True, exist_ok=True)
    other_key.write_bytes(first_key.read_bytes())
    assert kitaru_cli("secrets", "set", "other", "--K=v").exit_code == 0
    monkeypatch.setenv("KITARU_CONFIG_PATH", str(kitaru_home))
    assert kitaru.get_secret("other").values == {"K": "v"}

    # A store without secrets (all deleted) may get a new key on its first write.
    kitaru.delete_secret("a")
    kitaru.delete_secret("other")
    third_home = tmp_path / "third-home"
    monkeypatch.setenv("KITARU_CONFIG_PATH", str(third_home))
    assert kitaru_cli("secrets", "set", "fresh", "--K=v").exit_code == 0
    assert stat.S_IMODE((third_home / "secrets.key").stat().st_mode) == 0o600
    assert kitaru.get_secret("fresh").values == {"K": "v"}


def test_an_alias_secret_lookup_creates_no_key(
    kitaru_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kitaru._llm._credentials import find_credential
    from kitaru._llm._providers import PROVIDERS
    from kitaru._llm._registry import ResolvedModel

    monkeypatch.setenv("KITARU_STORE_URL", f"sqlite:///{tmp_path / 'shared.db'}")
    kitaru.create_secret("oai", {"OPENAI_API_KEY": VALUE})
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    other_home = tmp_path / "other-home"
    monkeypatch.setenv("KITARU_CONFIG_PATH", str(other_home))
    model = ResolvedModel(
        spec="openai/gpt-4o-mini",
        provider="openai",
        name="gpt-4o-mini",
        alias="fast",
        secret="oai",
        source="model=",
    )
    with pytest.raises(KitaruStateError, match="cannot be read") as info:
        find_credential(PROVIDERS["openai"], model)
    assert "KITARU_SECRETS_KEY" in str(info.value)
    assert VALUE not in str(info.value)
    assert not (other_home / "secrets.key").exists()


def test_json_times_are_iso_8601(any_store: str) -> None:
    kitaru_cli = in_process()
    saved = kitaru_cli("secrets", "set", "s", "--K=v", "-o", "json").json()["item"]
    listed = kitaru_cli("secrets", "list", "-o", "json").json()["items"][0]
    deleted = kitaru_cli("secrets", "delete", "s", "-o", "json").json()["item"]
    for item in (saved, listed, deleted):
        for field in ("created_at", "updated_at"):
            assert isinstance(item[field], str), item
            when = datetime.fromisoformat(item[field])
            assert when.tzinfo is not None
            assert abs((datetime.now(tz=UTC) - when).total_seconds()) < 600


def test_keys_named_like_options_and_keys_given_twice() -> None:
    kitaru_cli = in_process()
    # --output=zz is the -o option: the error says how to give such a key.
    for args in (["--output=zz"], ["--output=json"], ["--help=1"], ["--private=x"]):
        result = kitaru_cli("secrets", "set", "s", *args)
        assert result.exit_code == 1, args
        assert "kitaru secrets set NAME -- --output=value" in result.stderr, result.stderr
    assert "-- --output=value" in kitaru_cli("secrets", "set", "--help").stdout
    # ... and after --, they are keys (options go before it).
    saved = kitaru_cli(
        "secrets", "set", "s", "-o", "json", "--", "--output=zz", "--help", "h", "--private=p"
    )
    assert saved.json()["item"]["keys"] == ["help", "output", "private"]
    assert kitaru.get_secret("s").values == {"help": "h", "output": "zz", "private": "p"}

    # A key given twice is refused, naming it; nothing is saved.
    for args in (["--K=v", "--K=w"], ["--K", "v", "--L=x", "--K=w"]):
        error = kitaru_cli("secrets", "set", "t", *args, "-o", "json").error_json()["error"]
        assert error["type"] == "UsageError"
        assert "--K is given twice" in error["message"]
    assert [s.name for s in kitaru.list_secrets()] == ["s"]

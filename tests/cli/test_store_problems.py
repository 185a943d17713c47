"""``kitaru status`` / ``kitaru info`` report an unusable store as ``executions list`` does.

Each scenario is a store the commands cannot use (a malformed URL, a directory, a file
that is not SQLite, a store written by a newer Kitaru, an in-memory SQLite URL, a
PostgreSQL database that is missing or not listening, a Kitaru server that is down).
``executions list`` fails with a clear error; ``status`` shows the same message as its
``store_problem`` and exits 0 (status is for looking at problems, as it does for bad
settings); nothing is created or migrated.
"""

from __future__ import annotations

import socket
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from kitaru._backend import forget_backends
from kitaru._paths import config_dir
from kitaru._store.revision import SCHEMA_REVISION
from tests.cli.conftest import Flows, Invoke


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _revision(path: Path) -> str:
    conn = sqlite3.connect(path)
    try:
        return str(conn.execute("SELECT version_num FROM kitaru_alembic_version").fetchone()[0])
    finally:
        conn.close()


def _set_revision(path: Path, revision: str) -> None:
    conn = sqlite3.connect(path)
    try:
        conn.execute("UPDATE kitaru_alembic_version SET version_num = ?", (revision,))
        conn.commit()
    finally:
        conn.close()


def _a_store(tmp_path: Path, flows: Flows) -> Path:
    """A real store file holding one execution, all connections closed."""
    path = tmp_path / "real.db"
    flows.run_in_subprocess("simple", 1, KITARU_STORE_URL=f"sqlite:///{path}")
    forget_backends()
    return path


def _garbage(tmp_path: Path, flows: Flows) -> str:
    return "garbage"


def _directory(tmp_path: Path, flows: Flows) -> str:
    (tmp_path / "a-directory").mkdir()
    return f"sqlite:///{tmp_path / 'a-directory'}"


def _not_sqlite(tmp_path: Path, flows: Flows) -> str:
    (tmp_path / "notes.txt").write_text("hello, not a database\n" * 50)
    return f"sqlite:///{tmp_path / 'notes.txt'}"


def _newer_schema(tmp_path: Path, flows: Flows) -> str:
    path = _a_store(tmp_path, flows)
    _set_revision(path, "9999")
    return f"sqlite:///{path}"


def _in_memory(tmp_path: Path, flows: Flows) -> str:
    return "sqlite://"


def _postgres_not_listening(tmp_path: Path, flows: Flows) -> str:
    return f"postgresql+psycopg://postgres@127.0.0.1:{_free_port()}/kitaru"


SCENARIOS: dict[str, tuple[Callable[[Path, Flows], str], str]] = {
    "garbage url": (_garbage, "Invalid store URL 'garbage'"),
    "a directory": (_directory, "is a directory, not a database file"),
    "not sqlite": (_not_sqlite, "is damaged"),
    "newer schema": (_newer_schema, "schema revision 9999, written by a newer Kitaru"),
    "in-memory sqlite": (_in_memory, "in-memory SQLite database"),
    "postgres not listening": (_postgres_not_listening, "Check that the database is reachable"),
}


def _assert_status_reports(cli: Invoke, expected: str) -> None:
    """``executions list`` fails with ``expected``; status/info show that same message."""
    listing = cli("executions", "list", "-o", "json")
    assert listing.exit_code == 1, listing
    message = listing.error_json()["error"]["message"]
    assert expected in message
    assert "bug in Kitaru" not in message

    status = cli("status", "-o", "json")
    assert status.exit_code == 0, status  # status shows problems and goes on
    assert _one_line(status.json()["item"]["store_problem"]) == message
    text = cli("status")
    assert text.exit_code == 0, text
    assert expected in " ".join(text.stdout.split())

    info = cli("info", "-o", "json")
    assert info.exit_code == 0, info
    assert _one_line(info.json()["item"]["connection"]["problem"]) == message


def _one_line(text: str) -> str:
    """As error documents carry messages: whitespace runs (a driver's newline) as one space."""
    return " ".join(text.split())


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_status_reports_what_executions_list_fails_on(
    scenario: str,
    cli: Invoke,
    flows: Flows,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    make, expected = SCENARIOS[scenario]
    place = tmp_path / "stores"
    place.mkdir()
    url = make(place, flows)
    before = sorted(p.name for p in place.iterdir())
    monkeypatch.setenv("KITARU_STORE_URL", url)
    _assert_status_reports(cli, expected)
    assert sorted(p.name for p in place.iterdir()) == before  # nothing created


def test_status_reports_a_missing_postgres_database(
    cli: Invoke, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sqlalchemy as sa

    missing = sa.make_url(postgres_url).set(database="kitaru_no_such_database")
    monkeypatch.setenv("KITARU_STORE_URL", missing.render_as_string(hide_password=False))
    _assert_status_reports(cli, 'database "kitaru_no_such_database" does not exist')


def test_status_reports_a_server_that_is_down(cli: Invoke) -> None:
    from kitaru.client._remote_config import save_credentials

    url = f"http://127.0.0.1:{_free_port()}"
    save_credentials(url, "kt_some_key")
    listing = cli("executions", "list", "-o", "json")
    assert listing.exit_code == 1, listing
    message = listing.error_json()["error"]["message"]
    assert f"Cannot reach the Kitaru server at {url}" in message

    item = cli("status", "-o", "json").json()["item"]
    assert item["store_problem"] == message
    assert item["connection"] == {"url": url, "source": "kitaru login", "problem": message}
    assert cli("info", "-o", "json").json()["item"]["connection"]["problem"] == message
    assert "Cannot reach the Kitaru server" in " ".join(cli("status").stdout.split())


def test_status_neither_creates_nor_migrates_a_store(
    cli: Invoke, flows: Flows, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    item = cli("status", "-o", "json").json()["item"]
    assert item["store_problem"] is None  # the default store is made by its first use
    assert not (config_dir() / "kitaru.db").exists()

    path = _a_store(tmp_path, flows)
    older = f"{int(SCHEMA_REVISION) - 1:04d}"
    _set_revision(path, older)  # an older store: the first real use migrates it
    monkeypatch.setenv("KITARU_STORE_URL", f"sqlite:///{path}")
    item = cli("status", "-o", "json").json()["item"]
    assert item["store_problem"] is None
    assert _revision(path) == older
    assert not Path(f"{path}-wal").exists()  # no reader's files left behind either

    monkeypatch.setenv("KITARU_STORE_URL", f"sqlite:///{tmp_path / 'typo.db'}")
    item = cli("status", "-o", "json").json()["item"]
    assert "typo.db" in item["store_problem"]
    assert "does not exist" in item["store_problem"]
    assert not (tmp_path / "typo.db").exists()


def test_a_usable_store_has_no_problem(cli: Invoke, any_store: str) -> None:
    item = cli("status", "-o", "json").json()["item"]
    assert item["store_problem"] is None
    assert cli("info", "-o", "json").json()["item"]["connection"]["problem"] is None

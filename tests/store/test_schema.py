"""Opening a store: Alembic migrations, schema agreement, SQLite pragmas, URL errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import alembic.op
import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

from kitaru._store import Store, schema, sqlite_head
from kitaru._store import engine as store_engine
from kitaru.errors import KitaruBackendError, KitaruUsageError

from ._support import Records, finish, release_together

Spawn = Callable[..., subprocess.Popen[str]]

KITARU_TABLES = {
    "kitaru_executions",
    "kitaru_checkpoint_calls",
    "kitaru_checkpoint_attempts",
    "kitaru_artifacts",
    "kitaru_waits",
    "kitaru_logs",
    "kitaru_events",
    "kitaru_service_accounts",
    "kitaru_api_keys",
    "kitaru_secrets",
    "kitaru_suspensions",
    "kitaru_schedules",
    "kitaru_schedule_fires",
}
VERSION_TABLE = "kitaru_alembic_version"


def _raw_engine(url: str) -> sa.Engine:
    """A plain engine on the same database, bypassing Kitaru's migration on open."""
    return sa.create_engine(url, poolclass=sa.pool.NullPool)


def _table_names(url: str) -> set[str]:
    database = sa.make_url(url).database
    if url.startswith("sqlite") and database and not Path(database).exists():
        return set()  # not created yet (and not created by looking)
    engine = _raw_engine(url)
    try:
        return set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()


def _version_rows(url: str) -> list[str]:
    engine = _raw_engine(url)
    try:
        with engine.connect() as conn:
            return [
                row[0] for row in conn.exec_driver_sql(f"SELECT version_num FROM {VERSION_TABLE}")
            ]
    finally:
        engine.dispose()


def _compare_type(
    context: MigrationContext,
    inspected_column: object,
    metadata_column: object,
    inspected_type: sa.types.TypeEngine[object],
    metadata_type: sa.types.TypeEngine[object],
) -> bool | None:
    """Types differ as Alembic says, except a VARCHAR's length on SQLite: SQLite does not
    enforce it, and migration 0012 widens ids only on PostgreSQL (altering a column on
    SQLite rebuilds the table). A ``JSONText`` column reads back from SQLite by its
    declared name ``JSON_TEXT``, which reflection sees as text."""
    if (
        context.dialect.name == "sqlite"
        and isinstance(inspected_type, sa.String)
        and isinstance(metadata_type, sa.String)
    ):
        return False
    if context.dialect.name == "sqlite" and isinstance(metadata_type, schema.JSONText):
        return not isinstance(inspected_type, sa.Text)
    return None


def _compare(conn: sa.Connection, target: sa.MetaData) -> list[object]:
    context = MigrationContext.configure(
        conn,
        opts={
            "version_table": VERSION_TABLE,
            "compare_type": _compare_type,
            "compare_server_default": True,
        },
    )
    return list(compare_metadata(context, target))


@pytest.fixture
def sqlite_url(kitaru_home: Path) -> str:
    (kitaru_home / "sqlite-only").mkdir(parents=True)
    return f"sqlite:///{kitaru_home / 'sqlite-only' / 'store.db'}"


# -- migrations ---------------------------------------------------------------------


def test_schema_revision_is_the_alembic_head() -> None:
    config = Config()
    config.set_main_option(
        "script_location", str(Path(store_engine.__file__).parent / "migrations")
    )
    heads = ScriptDirectory.from_config(config).get_heads()
    assert heads == [schema.SCHEMA_REVISION]


def test_opening_a_new_database_creates_the_schema(store_url: str) -> None:
    assert _table_names(store_url) == set()

    store = Store(store_url)
    try:
        assert _table_names(store_url) == KITARU_TABLES | {VERSION_TABLE}
        assert _version_rows(store_url) == [schema.SCHEMA_REVISION]
        assert store.get_execution("nothing-yet") is None
    finally:
        store.dispose()


def test_opening_again_is_a_no_op(
    store_url: str, records: Records, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = Store(store_url)
    execution = records.execution()
    first.create_execution(execution)
    first.dispose()

    def must_not_migrate(_conn: sa.Connection, _shown_url: str) -> None:
        raise AssertionError("a store at head must not run Alembic again")

    monkeypatch.setattr(store_engine, "_run_alembic_upgrade", must_not_migrate)
    second = Store(store_url)
    try:
        assert second.get_execution(execution.id) == execution
        assert _version_rows(store_url) == [schema.SCHEMA_REVISION]
    finally:
        second.dispose()


def test_a_store_of_a_newer_kitaru_is_refused_untouched(
    store_url: str, records: Records, tmp_path: Path
) -> None:
    """A revision this version has no migration for came from a newer Kitaru: its rows
    may be in a form this one would misread, so it is refused, with the fix named."""
    store = Store(store_url)
    execution = records.execution()
    store.create_execution(execution)
    store.dispose()
    engine = _raw_engine(store_url)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql(f"UPDATE {VERSION_TABLE} SET version_num = '0099'")
    finally:
        engine.dispose()

    with pytest.raises(
        KitaruBackendError, match=r"revision 0099, written by a newer Kitaru"
    ) as info:
        Store(store_url)
    assert "Upgrade Kitaru" in str(info.value)
    assert _version_rows(store_url) == ["0099"]

    # The command line says the same, as JSON, without a traceback.
    cli = subprocess.run(
        [sys.executable, "-m", "kitaru.cli", "executions", "list", "-o", "json"],
        env={**os.environ, "KITARU_STORE_URL": store_url, "KITARU_CONFIG_PATH": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert cli.returncode == 1
    assert cli.stdout == ""
    error = json.loads(cli.stderr)["error"]
    assert error["type"] == "KitaruBackendError"
    assert "newer Kitaru" in error["message"]
    assert _version_rows(store_url) == ["0099"]


def test_a_failed_migration_leaves_no_partial_schema(
    store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Migrations are transactional: a failure halfway must not leave a store that cannot open."""
    create_index = alembic.op.create_index

    def failing_create_index(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "ix_kitaru_logs_exec":  # the last statement of the last migration
            raise RuntimeError("simulated crash during migration")
        return create_index(name, *args, **kwargs)

    monkeypatch.setattr(alembic.op, "create_index", failing_create_index)
    # A new SQLite store gets the head schema without Alembic (test_direct_open.py checks
    # that path's own transaction); with the dump behind, as after a new migration, it
    # goes through Alembic like PostgreSQL.
    monkeypatch.setattr(sqlite_head, "REVISION", "behind")
    with pytest.raises(RuntimeError, match="simulated crash"):
        Store(store_url)
    assert _table_names(store_url) == set()

    monkeypatch.setattr(alembic.op, "create_index", create_index)
    store = Store(store_url)
    try:
        assert _table_names(store_url) == KITARU_TABLES | {VERSION_TABLE}
    finally:
        store.dispose()


def test_alembic_schema_matches_schema_py(store: Store) -> None:
    """Autogenerate finds nothing to do: the migrations build exactly ``schema.metadata``.

    Types and server defaults are compared too; no type-equivalence noise needs ignoring.
    """
    with store.engine.connect() as conn:
        assert _compare(conn, schema.metadata) == []


def test_schema_comparison_detects_a_drift(store: Store) -> None:
    """The comparison above is not vacuous: a column missing from the database is reported."""
    drifted = sa.MetaData()
    for table in schema.metadata.sorted_tables:
        table.to_metadata(drifted)
    drifted.tables["kitaru_executions"].append_column(sa.Column("extra", sa.Integer))
    with store.engine.connect() as conn:
        diffs = _compare(conn, drifted)
    assert len(diffs) == 1
    assert diffs[0][0] == "add_column"  # type: ignore[index]
    assert diffs[0][3].name == "extra"  # type: ignore[index]


_OPEN_CHILD = """
import sys
import alembic.command, alembic.config  # imported up front so the children race on the open
from kitaru._store import Store
print("ready", flush=True)
sys.stdin.readline()
store = Store(sys.argv[1])
print(store.get_status("nope"), flush=True)
store.dispose()
"""


def test_processes_opening_a_new_sqlite_file_at_once_all_succeed(
    sqlite_url: str, spawn: Spawn
) -> None:
    children = [spawn(_OPEN_CHILD, sqlite_url) for _ in range(3)]
    release_together(children)
    for child in children:
        assert finish(child) == "None\n"
    assert _table_names(sqlite_url) == KITARU_TABLES | {VERSION_TABLE}
    assert _version_rows(sqlite_url) == [schema.SCHEMA_REVISION]


# -- SQLite pragmas -----------------------------------------------------------------


def _pragma(store: Store, name: str) -> object:
    with store.engine.connect() as conn:
        return conn.exec_driver_sql(f"PRAGMA {name}").scalar()


def test_sqlite_defaults_to_wal_and_synchronous_full(sqlite_url: str) -> None:
    store = Store(sqlite_url)
    try:
        assert _pragma(store, "journal_mode") == "wal"
        assert _pragma(store, "synchronous") == 2  # FULL
        busy_timeout = _pragma(store, "busy_timeout")
        assert isinstance(busy_timeout, int)
        assert busy_timeout >= 1000
        # The connection a write transaction runs on is configured the same way.
        with store.write() as conn:
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2
    finally:
        store.dispose()


@pytest.mark.parametrize(
    ("value", "expected"), [("normal", 1), (" NORMAL ", 1), ("full", 2), ("extra", 3)]
)
def test_sqlite_synchronous_from_environment(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch, value: str, expected: int
) -> None:
    monkeypatch.setenv("KITARU_SQLITE_SYNCHRONOUS", value)
    store = Store(sqlite_url)
    try:
        assert _pragma(store, "synchronous") == expected
        assert _pragma(store, "journal_mode") == "wal"
    finally:
        store.dispose()


@pytest.mark.parametrize("value", ["off", "0", "fast"])
def test_sqlite_invalid_synchronous_is_a_usage_error(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("KITARU_SQLITE_SYNCHRONOUS", value)
    with pytest.raises(KitaruUsageError, match="KITARU_SQLITE_SYNCHRONOUS") as info:
        Store(sqlite_url)
    assert repr(value) in str(info.value)


# -- URLs -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "not a url",
        "://missing-scheme",
        "mysql+pymysql://user@localhost/kitaru",
        "redis://localhost:6379/0",
    ],
)
def test_bad_or_unsupported_url_is_a_usage_error_naming_it(url: str) -> None:
    with pytest.raises(KitaruUsageError) as info:
        Store(url)
    assert url in str(info.value)
    assert isinstance(info.value, ValueError)


def test_postgres_url_aliases_select_psycopg(postgres_url: str, records: Records) -> None:
    _scheme, rest = postgres_url.split("://", 1)
    canonical = Store(postgres_url)
    aliased = [Store(f"{scheme}://{rest}") for scheme in ("postgres", "postgresql")]
    try:
        execution = records.execution()
        canonical.create_execution(execution)
        for store in aliased:
            assert store.url.startswith("postgresql+psycopg://")
            assert store.engine.dialect.driver == "psycopg"
            assert store.get_execution(execution.id) == execution
    finally:
        for store in [canonical, *aliased]:
            store.dispose()

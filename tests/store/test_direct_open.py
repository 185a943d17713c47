"""Opening a current SQLite store on the driver alone, and the SQL written without SQLAlchemy.

A script that runs flows on a current SQLite store never imports SQLAlchemy
(``kitaru/_lazy.py``); these tests check that the plain column lists and SQL it
uses instead agree with the schema, and that everything else still finds its engine.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import sqlite as sqlite_dialect

from kitaru._lazy import LazyModule
from kitaru._store import Store, _columns, _sqlite_new, schema, sqlite_head
from kitaru._store import engine as store_engine
from kitaru._store._statements import _SQLiteStatements
from kitaru._store.revision import SCHEMA_REVISION
from kitaru.errors import KitaruBackendError
from tests._env import process_env

from ._support import Records, full_execution, new_id


def _names(table: sa.Table, skip: tuple[str, ...] = ()) -> tuple[str, ...]:
    return tuple(c.name for c in table.columns if c.name not in skip)


@pytest.mark.parametrize(
    ("table", "columns", "skip"),
    [
        (schema.executions, _columns.EXECUTION_COLUMNS, ()),
        (schema.checkpoint_calls, (*_columns.CALL_COLUMNS, *_columns.OUTPUT_COLUMNS), ()),
        (schema.artifacts, _columns.ARTIFACT_COLUMNS, ()),
        (schema.checkpoint_attempts, _columns.ATTEMPT_COLUMNS, ("id",)),
    ],
)
def test_plain_column_lists_match_the_schema(
    table: sa.Table, columns: tuple[str, ...], skip: tuple[str, ...]
) -> None:
    assert columns == _names(table, skip), f"_columns.py is out of date for {table.name}"
    json_columns = {c.name for c in table.columns if isinstance(c.type, sa.JSON)}
    assert _columns.JSON_COLUMNS[table.name] == json_columns


def _widths(table: sa.Table) -> dict[str, int]:
    """Lengths of the table's sized text columns."""
    return {
        c.name: c.type.length
        for c in table.columns
        if isinstance(c.type, sa.String) and c.type.length is not None
    }


def test_log_columns_match_the_schema() -> None:
    assert _names(schema.logs, ("id",)) == _columns.LOG_COLUMNS
    assert _widths(schema.logs) == _columns.LOG_WIDTHS
    assert schema.logs.name == _columns.LOGS


def test_event_widths_match_the_schema() -> None:
    assert _widths(schema.events) == _columns.EVENT_WIDTHS
    assert schema.events.name == _columns.EVENTS


def test_direct_inserts_are_the_ones_sqlalchemy_compiles() -> None:
    """Same SQL, same parameter order as the Core statements they replace."""
    dialect = sqlite_dialect.dialect()
    fast = _SQLiteStatements()
    calls = schema.checkpoint_calls
    upsert = sqlite_dialect.insert(calls)
    expected = {
        "artifact": sqlite_dialect.insert(schema.artifacts).on_conflict_do_nothing(
            index_elements=["id"]
        ),
        "call": upsert.on_conflict_do_update(
            index_elements=["exec_id", "call_id"],
            set_={
                c.name: upsert.excluded[c.name]
                for c in calls.columns
                if c.name not in ("exec_id", "call_id")
            },
        ),
        "attempt": schema.checkpoint_attempts.insert().values(
            {name: sa.bindparam(name) for name in _columns.ATTEMPT_COLUMNS}
        ),
        "execution": schema.executions.insert(),
    }
    for name, statement in expected.items():
        compiled = statement.compile(dialect=dialect)
        ours = getattr(fast, name)
        assert ours.sql == str(compiled), name
        assert ours.names == list(compiled.positiontup or ()), name


def test_plain_sqlite_paths() -> None:
    assert store_engine.plain_sqlite_path("sqlite:////tmp/k.db") == Path("/tmp/k.db")
    assert store_engine.plain_sqlite_path("sqlite:///rel/k.db") == Path("rel/k.db")
    # Anything SQLAlchemy would decode or treat specially is left to it.
    for url in (
        "sqlite://",
        "sqlite:///:memory:",
        "sqlite:////tmp/a%20b.db",
        "sqlite:////tmp/k.db?mode=ro",
        "sqlite+pysqlite:////tmp/k.db",
        "postgresql+psycopg://u@h/db",
    ):
        assert store_engine.plain_sqlite_path(url) is None, url


def test_a_current_store_opens_without_an_engine(tmp_path: Path, records: Records) -> None:
    url = f"sqlite:///{tmp_path / 'k.db'}"
    Store(url).dispose()  # creates it
    store = Store(url)
    try:
        assert store._engine is None
        execution = records.execution()
        store.create_execution(execution)
        output = records.artifact(execution.id, "step")
        call = records.call(execution.id, "step", artifact=output)
        store.record_call(call, artifact=output, fence=execution.fence)
        assert store._engine is None  # the hot path ran on the driver
        # Anything else makes the engine on first use, on the same file.
        assert [e.id for e in store.list_executions()] == [execution.id]
        assert store._engine is not None
        assert [c.call_id for c in store.calls(execution.id)] == [call.call_id]
    finally:
        store.dispose()


def test_an_execution_reads_the_same_without_and_with_an_engine(
    tmp_path: Path, records: Records
) -> None:
    """``get_execution`` on the driver (no engine yet) decodes every column as the
    SQLAlchemy query does: JSON columns, NULLs, floats, the status."""
    url = f"sqlite:///{tmp_path / 'k.db'}"
    Store(url).dispose()
    store = Store(url)
    try:
        plain = records.execution()
        full = full_execution(records)  # every field set
        for execution in (plain, full):
            store.create_execution(execution)
        direct = [store.get_execution(e.id) for e in (plain, full)]
        assert store._engine is None  # read on the driver
        assert direct == [plain, full]
        assert store.get_execution(new_id()) is None

        assert store.list_executions()  # now there is an engine: reads go through it
        assert store._engine is not None
        assert [store.get_execution(e.id) for e in (plain, full)] == direct
    finally:
        store.dispose()


def test_a_store_behind_the_schema_is_migrated_on_open(tmp_path: Path) -> None:
    from alembic import command
    from alembic.config import Config

    url = f"sqlite:///{tmp_path / 'k.db'}"
    older = store_engine._sqlite_engine(sa.make_url(url))
    try:
        with store_engine._migration_lock(older) as connection:  # an older release's store
            config = Config()
            config.set_main_option("script_location", str(store_engine._MIGRATIONS_DIR))
            config.attributes["connection"] = connection
            command.upgrade(config, "0009")
    finally:
        older.dispose()
    store = Store(url)
    try:
        assert store._engine is not None  # it went through Alembic
        assert store_engine.current_revision(store.engine) == SCHEMA_REVISION
    finally:
        store.dispose()


def test_a_damaged_file_is_reported_on_direct_open(tmp_path: Path) -> None:
    path = tmp_path / "k.db"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(KitaruBackendError, match="is damaged"):
        Store(f"sqlite:///{path}")


def test_a_missing_directory_is_refused_on_direct_open(tmp_path: Path) -> None:
    with pytest.raises(KitaruBackendError, match="does not exist"):
        Store(f"sqlite:///{tmp_path / 'nope' / 'k.db'}")
    assert not (tmp_path / "nope").exists()


_SCRIPT = textwrap.dedent(
    """
    import sys
    import time
    import kitaru
    import kitaru._runtime.logcapture
    from kitaru import checkpoint, flow

    failures = []

    # What a run does besides its checkpoints' commits needs no SQLAlchemy either:
    @checkpoint(cache=False, retries=1)
    def step(x: int) -> int:
        print("line from the step")
        if not failures:  # a failed attempt recorded, then the retry
            failures.append(x)
            raise ValueError("first attempt fails")
        # stored by the events writer now, not with the run's end
        kitaru.events.publish("note", {"x": x}, flush=True)
        # meanwhile the lease (0.6 s) is renewed and the call marked running (after 0.2 s)
        time.sleep(0.5)
        return x + 1

    @flow
    def one(x: int) -> int:
        return step(x)

    @flow(retries=0)
    def broken() -> None:
        raise RuntimeError("the flow fails")

    handle = one.run(1)
    assert handle.wait() == 2
    try:  # the failure is read back from the store
        broken.run().wait()
    except kitaru.errors.KitaruExecutionError as exc:
        assert "the flow fails" in str(exc), exc
    else:
        raise AssertionError("the failed flow's wait() returned")
    kitaru._runtime.logcapture.flush()
    heavy = ("sqlalchemy", "alembic", "pydantic", "httpx", "kitaru._store.schema")
    # Nor what only other stores or other features need (start-up cost of every script).
    heavy += ("kitaru._store._pg_direct", "concurrent.futures", "pickle", "runpy")
    # Nor sqlite3's dbapi2 wrapper, which imports datetime for adapters never used.
    heavy += ("sqlite3.dbapi2", "datetime")
    print(sorted(m for m in heavy if m in sys.modules))
    logs = kitaru.KitaruClient().executions.logs(handle.exec_id)
    print([entry.message for entry in logs])
    events = kitaru.KitaruClient().executions.events(handle.exec_id)
    print([event.kind for event in events if event.kind == "note"])
    """
)


def test_a_flow_on_a_current_sqlite_store_imports_no_sqlalchemy(kitaru_home: Path) -> None:
    env = process_env(kitaru_home, KITARU_LEASE_SECONDS="0.6", KITARU_RUNNING_MARK_AFTER="0.2")

    def run() -> str:
        child = subprocess.run(
            [sys.executable, "-c", _SCRIPT], env=env, capture_output=True, text=True, timeout=120
        )
        assert child.returncode == 0, child.stderr
        return child.stdout.strip()

    run()  # a new store
    # The lines the step printed and its event were stored (read through the client,
    # which loads SQLAlchemy: after the check).
    assert run().splitlines() == [
        "line from the step",
        "line from the step",
        "[]",
        "['line from the step', 'line from the step']",
        "['note']",
    ]


# -- a new store: the head schema without Alembic ---------------------------------------


def test_the_head_dump_is_what_the_migrations_create() -> None:
    assert _sqlite_new.migrated_schema(sqlite_head.REVISION) == sqlite_head.DDL


def test_the_head_dump_is_at_the_schema_revision() -> None:
    # A new migration: new stores fall back to Alembic (slower) until this is regenerated.
    assert sqlite_head.REVISION == SCHEMA_REVISION, (
        "src/kitaru/_store/sqlite_head.py is behind the migrations: regenerate it with "
        "`python -m kitaru._store._sqlite_new` and `ruff format src/kitaru/_store`."
    )


def test_a_new_store_gets_the_migrated_schema_without_alembic(tmp_path: Path) -> None:
    path = tmp_path / "k.db"
    store = Store(f"sqlite:///{path}")
    try:
        assert store._engine is None  # neither SQLAlchemy's engine nor Alembic ran
        conn = sqlite3.connect(path)
        try:
            assert _sqlite_new.dump_schema(conn) == _sqlite_new.migrated_schema()
            assert conn.execute("SELECT * FROM kitaru_alembic_version").fetchall() == [
                (SCHEMA_REVISION,)
            ]
            assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        finally:
            conn.close()
        # And SQLAlchemy agrees it is current (no migration when the engine is made).
        assert store_engine.current_revision(store.engine) == SCHEMA_REVISION
    finally:
        store.dispose()
    assert oct(path.stat().st_mode & 0o777) == oct(0o600)


def test_a_file_with_other_tables_is_left_to_alembic(tmp_path: Path) -> None:
    path = tmp_path / "k.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE someone_elses (x)")
    conn.commit()
    conn.close()
    store = Store(f"sqlite:///{path}")
    try:
        assert store._engine is not None  # migrated through Alembic, as before
        assert store_engine.current_revision(store.engine) == SCHEMA_REVISION
    finally:
        store.dispose()


def test_a_new_store_that_fails_halfway_is_left_empty(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The head schema goes in as one transaction: a failure leaves no partial schema."""
    path = tmp_path / "k.db"
    # The last statement fails (its table exists already by then).
    ddl = sqlite_head.DDL
    monkeypatch.setattr(sqlite_head, "DDL", (*ddl, ddl[1]))
    with pytest.raises(KitaruBackendError, match="already exists"):
        Store(f"sqlite:///{path}")
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("SELECT count(*) FROM sqlite_master").fetchone() == (0,)
    finally:
        conn.close()
    monkeypatch.setattr(sqlite_head, "DDL", ddl)
    Store(f"sqlite:///{path}").dispose()  # and it opens normally afterwards


def test_a_lazy_module_reads_and_writes_the_module_itself() -> None:
    import json

    lazy = LazyModule("json")
    assert lazy.dumps([1]) == "[1]"
    original = json.dumps
    try:
        json.dumps = lambda value: "patched"  # as a test's monkeypatch would
        assert lazy.dumps([1]) == "patched"
    finally:
        json.dumps = original

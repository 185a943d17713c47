"""Stores written by an older Kitaru open with this one: every migration upgrades them."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config

import kitaru
from kitaru._store import Store, cache_keys, engine
from kitaru._store.schema import SCHEMA_REVISION
from tests._env import process_env


def _alembic(conn: sa.Connection) -> Config:
    config = Config()
    config.set_main_option("script_location", str(Path(engine.__file__).parent / "migrations"))
    config.attributes["connection"] = conn
    return config


def _at_revision(url: str, revision: str) -> None:
    """A store whose schema stops at ``revision`` (as an older Kitaru left it).

    On a plain SQLAlchemy engine: Kitaru's own (``engine.create_engine``) would first
    bring the new store to head.
    """
    eng = sa.create_engine(url)
    try:
        with eng.begin() as conn:
            command.upgrade(_alembic(conn), revision)
    finally:
        eng.dispose()


def _insert_execution(conn: sa.Connection, now: float) -> None:
    """Execution ``e1``, completed, with the columns every revision has."""
    conn.execute(
        sa.text(
            "INSERT INTO kitaru_executions (id, flow_name, flow_ref, status, stack, config, "
            "metadata, created_at, run_count, fence) VALUES ('e1', 'f', '{}', 'completed', "
            "'local', '{}', '{}', :now, 1, 1)"
        ),
        {"now": now},
    )


def test_a_0006_store_keeps_its_attempts_and_cache_after_the_upgrade(store_url: str) -> None:
    _at_revision(store_url, "0006")
    eng = sa.create_engine(store_url)
    now = time.time()
    with eng.begin() as conn:
        _insert_execution(conn, now)
        conn.execute(
            sa.text(
                "INSERT INTO kitaru_checkpoint_calls (exec_id, call_id, seq, name, runtime, "
                "status, cache_key, attempts, metadata, started_at, ended_at, concurrent) "
                "VALUES ('e1', 'step', 0, 'step', 'inline', 'completed', 'k1', 1, '{}', "
                ":now, :now, false)"
            ),
            {"now": now},
        )
        conn.execute(
            sa.text(
                "INSERT INTO kitaru_checkpoint_attempts (exec_id, call_id, attempt, run, status, "
                "started_at, ended_at) VALUES ('e1', 'step', 1, 1, 'completed', :now, :now)"
            ),
            {"now": now},
        )
    eng.dispose()

    store = Store(store_url)  # opening migrates
    try:
        assert engine.current_revision(store.engine) == SCHEMA_REVISION
        (attempt,) = store.attempts("e1")
        assert (attempt.call_id, attempt.attempt, attempt.run) == ("step", 1, 1)
        assert store.calls("e1")[0].run is None
        # Calls recorded before 0011 have no stored inputs, and read as such.
        assert store.calls("e1")[0].inputs is None
        with store.read() as conn:
            plan = " ".join(
                str(r)
                for r in conn.exec_driver_sql(
                    "EXPLAIN QUERY PLAN SELECT * FROM kitaru_checkpoint_calls "
                    "WHERE cache_key = 'k1'"
                    if store.dialect == "sqlite"
                    else "EXPLAIN SELECT * FROM kitaru_checkpoint_calls WHERE cache_key = 'k1'"
                )
            )
        # The partial index still serves the cache lookup.
        if store.dialect == "sqlite":
            assert "ix_kitaru_checkpoint_calls_cache_key" in plan
    finally:
        store.dispose()


_LONG_KEY = "0123456789abcdef" * 2 + ":" + "fedcba9876543210" * 4


def _as_0013(key: str) -> str:
    """What migration 0013 stored for a runtime cache key (24 bytes of SHA-256, base64)."""
    import base64
    import hashlib

    return base64.urlsafe_b64encode(hashlib.sha256(key.encode()).digest()[:24]).decode("ascii")


@pytest.mark.parametrize(
    ("revision", "stored"),
    [("0012", _LONG_KEY), ("0014", _as_0013(_LONG_KEY))],
    ids=["0012: the runtime's key", "0014: 32 characters"],
)
def test_an_older_store_keeps_its_cache_hits_with_keys_stored_short(
    store_url: str, revision: str, stored: str
) -> None:
    """Migration 0013 stores the cache keys written before it in their short form (in SQL
    on PostgreSQL, in Python on SQLite), and 0015 cuts those 32 characters to the 21 the
    runtime looks up now: both must give what the runtime looks up."""
    _at_revision(store_url, revision)
    eng = sa.create_engine(store_url)
    now = time.time()
    with eng.begin() as conn:
        _insert_execution(conn, now)
        for call_id, key in (("step", stored), ("other", "k1"), ("none", None)):
            conn.execute(
                sa.text(
                    "INSERT INTO kitaru_checkpoint_calls (exec_id, call_id, seq, name, runtime, "
                    "status, cache_key, attempts, metadata, started_at, ended_at, concurrent, "
                    "output_serializer, output_data) VALUES ('e1', :call_id, 0, 'step', "
                    "'inline', 'completed', :key, 1, '{}', :now, :now, false, 'json', :data)"
                ),
                {"call_id": call_id, "key": key, "now": now, "data": b"7"},
            )
    eng.dispose()

    store = Store(store_url)  # opening migrates
    try:
        keys = {call.call_id: call.cache_key for call in store.calls("e1")}
        assert keys == {"step": cache_keys.stored(_LONG_KEY), "other": "k1", "none": None}
        assert keys["step"] == _as_0013(_LONG_KEY)[: cache_keys.SHORT_LENGTH]
        hit = store.cached_output(_LONG_KEY, exclude_exec_id="someone-else")
        assert hit is not None
        assert hit.call_id == "step"
    finally:
        store.dispose()


def test_downgrading_0007_turns_first_attempts_back_into_rows(
    store_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KITARU_STORE_URL", store_url)
    monkeypatch.setenv("KITARU_ARTIFACTS_ROOT", str(tmp_path / "artifacts"))
    from kitaru._backend import forget_backends

    forget_backends()

    @kitaru.checkpoint
    def step() -> int:
        return 1

    @kitaru.flow(cache=False)
    def one() -> int:
        return step()

    handle = one.run()
    assert handle.wait() == 1
    exec_id = handle.exec_id
    before = Store(store_url)
    try:
        expected = [(a.call_id, a.attempt, a.run) for a in before.attempts(exec_id)]
        with before.read() as conn:
            rows = conn.exec_driver_sql("SELECT count(*) FROM kitaru_checkpoint_attempts").scalar()
    finally:
        before.dispose()
    assert expected == [("step", 1, 1)]
    assert rows == 0
    forget_backends()

    eng = engine.create_engine(store_url)
    try:
        with eng.begin() as conn:
            command.downgrade(_alembic(conn), "0006")
        with eng.connect() as conn:
            stored = conn.exec_driver_sql(
                "SELECT call_id, attempt, run FROM kitaru_checkpoint_attempts "
                f"WHERE exec_id = '{exec_id}'"
            ).all()
    finally:
        eng.dispose()
    assert [tuple(r) for r in stored] == expected


def test_a_0013_store_reads_the_same_events_after_the_upgrade(store_url: str) -> None:
    """Migration 0014 moves SQLite's events into their key's B-tree; the stream reads as
    before (plain, compact and pair rows), and new events go on after it."""
    _at_revision(store_url, "0013")
    eng = sa.create_engine(store_url)
    now = time.time()
    rows = [
        # exec_id, seq, kind, call_id, checkpoint, correlation_id, idx, payload, ts
        ("e1", 1, "note", None, None, None, None, '{"text": "hi"}', now),
        ("e1", 3, "~p40", "step", "step", "ab12", 0, "", now + 1),  # stands for 2 and 3
        ("e1", 4, "~s", "step:2", "step", "cd34", 0, "", now + 2),
        ("e2", 1, "note", None, None, None, None, '{"text": "other"}', now),
    ]
    with eng.begin() as conn:
        _insert_execution(conn, now)
        conn.execute(
            sa.text(
                "INSERT INTO kitaru_events (exec_id, seq, kind, call_id, checkpoint, "
                "correlation_id, idx, payload, ts) VALUES (:e, :s, :k, :c, :n, :r, :i, :p, :t)"
            ),
            [
                dict(zip(("e", "s", "k", "c", "n", "r", "i", "p", "t"), row, strict=True))
                for row in rows
            ],
        )
    eng.dispose()

    store = Store(store_url)  # opening migrates
    try:
        assert engine.current_revision(store.engine) == SCHEMA_REVISION
        events = store.events("e1")
        assert [(e.seq, e.kind, e.call_id, e.correlation_id) for e in events] == [
            (1, "note", None, None),
            (2, "kitaru.checkpoint.started", "step", "kitaru.checkpoint:step:ab12"),
            (3, "kitaru.checkpoint.returned", "step", "kitaru.checkpoint:step:ab12"),
            (4, "kitaru.checkpoint.started", "step:2", "kitaru.checkpoint:step:cd34"),
        ]
        assert events[0].payload == {"text": "hi"}
        assert [e.payload for e in store.events("e2")] == [{"text": "other"}]
        if store.dialect == "sqlite":
            with store.read() as conn:
                created = conn.exec_driver_sql(
                    "SELECT sql FROM sqlite_master WHERE name = 'kitaru_events'"
                ).scalar()
                indexes = conn.exec_driver_sql(
                    "SELECT count(*) FROM sqlite_master WHERE tbl_name = 'kitaru_events' "
                    "AND type = 'index'"
                ).scalar()
            assert str(created).endswith("WITHOUT ROWID")
            assert indexes == 0  # the key is the table: no second copy of it
        # Positions taken are refused as before; new events go on after the last.
        with pytest.raises(sa.exc.IntegrityError), store.write() as conn:
            conn.exec_driver_sql(
                "INSERT INTO kitaru_events (exec_id, seq, kind, payload, ts) "
                "VALUES ('e1', 4, 'dup', '{}', 0)"
            )
        from kitaru._store._events import EventRow

        store.insert_events([EventRow(exec_id="e1", kind="later", payload="{}", ts=now + 3)])
        assert [(e.seq, e.kind) for e in store.events("e1", after=4)] == [(5, "later")]
    finally:
        store.dispose()


def test_downgrading_0014_gives_the_events_their_rowid_table_back(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    _at_revision(url, "0014")
    eng = sa.create_engine(url)
    try:
        with eng.begin() as conn:
            conn.exec_driver_sql(
                "INSERT INTO kitaru_events (exec_id, seq, kind, payload, ts) "
                "VALUES ('e1', 1, 'note', '{}', 0), ('e1', 2, 'note', '{}', 1)"
            )
            command.downgrade(_alembic(conn), "0013")
        with eng.connect() as conn:
            created = conn.exec_driver_sql(
                "SELECT sql FROM sqlite_master WHERE name = 'kitaru_events'"
            ).scalar()
            kept = conn.exec_driver_sql("SELECT exec_id, seq FROM kitaru_events").all()
    finally:
        eng.dispose()
    assert "WITHOUT ROWID" not in str(created)
    assert [tuple(r) for r in kept] == [("e1", 1), ("e1", 2)]


def test_upgrading_an_existing_store_says_so_on_stderr_step_by_step(
    store_url: str, tmp_path: Path
) -> None:
    """A user whose store is upgraded sees it happen (a step may rebuild a big table),
    and from which revision: an older Kitaru cannot open the store afterwards."""
    _at_revision(store_url, "0012")
    script = (
        "import sys; from kitaru._store import Store\n"
        "store = Store(sys.argv[1]); store.dispose(); print('opened')\n"
    )
    env = process_env(tmp_path / "home")

    def open_store() -> subprocess.CompletedProcess[str]:
        child = subprocess.run(
            [sys.executable, "-c", script, store_url],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert child.returncode == 0, child.stderr
        assert child.stdout == "opened\n"  # the report never goes to stdout
        return child

    lines = open_store().stderr.splitlines()
    assert lines[0].startswith("Upgrading the Kitaru store at ")
    assert f"from schema revision 0012 to {SCHEMA_REVISION}" in lines[0]
    assert "Older Kitaru versions cannot open it afterwards" in lines[0]
    applied = [line.split()[1] for line in lines[1:-1]]
    assert applied == [f"{n:04d}" for n in range(13, int(SCHEMA_REVISION) + 1)]
    assert all(" applied in " in line for line in lines[1:-1])
    assert lines[-1].startswith(f"Kitaru store upgraded to schema revision {SCHEMA_REVISION} (")
    # At head, opening says nothing.
    assert open_store().stderr == ""


def test_processes_racing_to_upgrade_a_store_report_it_once(store_url: str, tmp_path: Path) -> None:
    """Each opens an old store at once: one upgrades it; the others, waiting on the
    migration lock meanwhile, find it at head and say nothing (not 'from 0015 to 0015')."""
    _at_revision(store_url, "0012")
    script = (
        "import sys, time; from kitaru._store import Store\n"
        "time.sleep(max(0.0, float(sys.argv[2]) - time.time()))\n"
        "Store(sys.argv[1]).dispose()\n"
    )
    env = process_env(tmp_path / "home")
    start = f"{time.time() + 2.0:.3f}"  # all begin together, after their imports
    children = [
        subprocess.Popen(
            [sys.executable, "-c", script, store_url, start],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    reports = []
    for child in children:
        _, stderr = child.communicate(timeout=120)
        assert child.returncode == 0, stderr
        reports.append(stderr)
    upgrading = [r for r in reports if "Upgrading the Kitaru store" in r]
    assert len(upgrading) == 1, reports
    assert f"from schema revision 0012 to {SCHEMA_REVISION}" in upgrading[0]


def test_a_0016_store_keeps_its_wait_answers_and_its_flow_retries_start_at_0(
    store_url: str,
) -> None:
    # 0016 added executions.flow_retries (0 for existing rows); 0017 rebuilt the waits
    # table on SQLite so a bare number is kept as written. Existing answers are copied.
    _at_revision(store_url, "0015")
    eng = sa.create_engine(store_url)
    now = time.time()
    with eng.begin() as conn:
        _insert_execution(conn, now)
        for wait_id, value in [("w1", '{"ok": true}'), ("w2", '"text"'), ("w3", "7")]:
            conn.execute(
                sa.text(
                    "INSERT INTO kitaru_waits (exec_id, wait_id, name, metadata, status, "
                    "value, created_at) VALUES ('e1', :w, :w, '{}', 'answered', :v, :now)"
                ),
                {"w": wait_id, "v": value, "now": now},
            )
    eng.dispose()

    store = Store(store_url)
    try:
        assert store.require_execution("e1").flow_retries == 0
        answers = {w.wait_id: w.value for w in store.waits("e1")}
        assert answers == {"w1": {"ok": True}, "w2": "text", "w3": 7}
    finally:
        store.dispose()

"""A new SQLite store gets its schema at head in one transaction, without Alembic.

Running every migration on a new file means importing SQLAlchemy and Alembic and
replaying ten revisions: most of a first ``python script.py``. Instead the
schema that the migrations produce (``sqlite_master``'s SQL, dumped from a store
migrated by Alembic into ``sqlite_head.py``) is executed as is, and the version
row written, in the same transaction. ``tests/store/test_direct_open.py`` checks
that the dump is what the migrations produce. When a new migration makes the
dump lag behind ``SCHEMA_REVISION``, new stores go through Alembic until it is
regenerated: ``python -m kitaru._store._sqlite_new`` (then ``ruff format``).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from kitaru._store import sqlite_head
from kitaru._store._driver import sqlite3
from kitaru._store.revision import SCHEMA_REVISION

_VERSION_TABLE = "kitaru_alembic_version"


def create_at_head(conn: sqlite3.Connection, path: Path) -> str | None:
    """Give the empty store ``path`` (open on ``conn``) the head schema.

    Returns the store's revision afterwards: ``SCHEMA_REVISION``, or what another
    process that created it meanwhile left, or None when this is left to Alembic
    (the dump is behind, or the file holds something that is not a Kitaru store).
    """
    from kitaru._store.engine import _sqlite_revision, migration_file_lock

    if sqlite_head.REVISION != SCHEMA_REVISION:
        return None
    # The same lock as a migration: processes opening a new store at once create it once.
    with migration_file_lock(path):
        conn.execute("BEGIN IMMEDIATE")
        try:
            revision = _sqlite_revision(conn)
            if revision is None:
                if conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:
                    conn.execute("ROLLBACK")
                    return None  # not empty: Alembic decides what to do with it
                for statement in sqlite_head.DDL:
                    conn.execute(statement)
                conn.execute(
                    f"INSERT INTO {_VERSION_TABLE} (version_num) VALUES (?)", (SCHEMA_REVISION,)
                )
                revision = SCHEMA_REVISION
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
    return revision


def dump_schema(conn: sqlite3.Connection) -> tuple[str, ...]:
    """``sqlite_master``'s SQL in creation order (indexes SQLite makes itself have none)."""
    rows = conn.execute("SELECT sql FROM sqlite_master WHERE sql IS NOT NULL ORDER BY rowid")
    return tuple(str(sql) for (sql,) in rows)


def migrated_schema(revision: str = "head") -> tuple[str, ...]:
    """The schema of a new store migrated by Alembic to ``revision``."""
    import sqlalchemy as sa
    from alembic import command
    from alembic.config import Config

    from kitaru._store import engine

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "kitaru.db"
        sa_engine = engine._sqlite_engine(sa.make_url(f"sqlite:///{path}"))
        try:
            with engine._migration_lock(sa_engine) as connection:
                config = Config()
                config.set_main_option("script_location", str(engine._MIGRATIONS_DIR))
                config.attributes["connection"] = connection
                command.upgrade(config, revision)
        finally:
            sa_engine.dispose()
        conn = sqlite3.connect(path)
        try:
            return dump_schema(conn)
        finally:
            conn.close()


def _write_head() -> None:
    """Regenerate ``sqlite_head.py`` from the migrations (after adding one)."""
    ddl = migrated_schema()
    lines = [
        "# ruff: noqa: E501",
        '"""The SQLite schema at ``REVISION`` as the migrations create it (generated: do not',
        'edit; regenerate with ``python -m kitaru._store._sqlite_new``, see ``_sqlite_new``)."""',
        "",
        f"REVISION = {SCHEMA_REVISION!r}",
        "",
        "DDL: tuple[str, ...] = (",
        *[f"    {statement!r}," for statement in ddl],
        ")",
        "",
    ]
    target = Path(__file__).with_name("sqlite_head.py")
    target.write_text("\n".join(lines))
    print(
        f"wrote {target} ({len(ddl)} statements, revision {SCHEMA_REVISION}); "
        "now run ruff format on it",
        file=sys.stderr,
    )


if __name__ == "__main__":
    _write_head()

"""Engines and migrations for the two supported databases.

SQLite (the embedded default) runs in WAL mode with ``synchronous=FULL`` so a
committed checkpoint survives a power loss; ``KITARU_SQLITE_SYNCHRONOUS=normal``
is the opt-in relaxed mode (survives a process crash, may lose the last
commits on power loss). Writers take the lock up front (``BEGIN IMMEDIATE``)
so concurrent writers queue on ``busy_timeout`` instead of failing halfway.

A new SQLite store file is created 0600 before SQLite opens it: SQLite gives the
``-wal`` and ``-shm`` files it creates the database file's mode, so all three stay
private to the user whatever the umask.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kitaru import _environ
from kitaru._lazy import LazyModule
from kitaru._paths import PRIVATE_FILE_MODE
from kitaru._store._driver import sqlite3
from kitaru._store.revision import SCHEMA_REVISION
from kitaru.errors import KitaruBackendError, KitaruUsageError

if TYPE_CHECKING:
    import sqlalchemy as sa
else:  # imported on first use: a current SQLite store opens without it (open_direct)
    sa = LazyModule("sqlalchemy")

_SQLITE_BUSY_TIMEOUT_MS = 30_000
_MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def normalize_url(url: str) -> str:
    """Accept ``postgresql://`` and ``postgres://`` and pick the psycopg 3 driver."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def sqlite_path(url: sa.URL) -> Path | None:
    database = url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database)


_URL_FORMS = "sqlite:////absolute/path/kitaru.db or postgresql://user@host:5432/dbname"


def _parse_store_url(url: str) -> sa.URL:
    """The store URL parsed; a malformed, unsupported or in-memory one is a usage error."""
    try:
        parsed = sa.make_url(normalize_url(url))
    except sa.exc.ArgumentError as exc:
        raise KitaruUsageError(f"Invalid store URL {url!r}: {exc}. Use {_URL_FORMS}.") from exc
    backend = parsed.get_backend_name()
    if backend not in ("sqlite", "postgresql"):
        raise KitaruUsageError(
            f"Unsupported store URL {url!r}: Kitaru stores metadata in SQLite or PostgreSQL "
            "(sqlite:///... or postgresql://...)."
        )
    if backend == "sqlite" and _in_memory(parsed):
        # Runners, workers and every later command are other connections (often other
        # processes): none of them would see an in-memory database's rows.
        raise KitaruUsageError(
            f"The store URL {url!r} names an in-memory SQLite database, which no other "
            "connection or process can see, so it cannot hold Kitaru's executions. Name a "
            "store file (sqlite:////absolute/path/kitaru.db), a PostgreSQL database "
            "(postgresql://user@host:5432/dbname), or unset KITARU_STORE_URL for the default "
            "store."
        )
    return parsed


def _in_memory(url: sa.URL) -> bool:
    database = url.database or ""
    return not database or ":memory:" in database or url.query.get("mode") == "memory"


def create_engine(url: str) -> sa.Engine:
    """An engine configured for Kitaru's access pattern; the schema is migrated to head."""
    parsed = _parse_store_url(url)
    if parsed.get_backend_name() == "sqlite":
        engine = _sqlite_engine(parsed)
    else:
        engine = _postgres_engine(parsed)
    migrate(engine)
    return engine


def check_store(url: str, source: str | None) -> None:
    """Raise the error that using this store would raise, changing nothing.

    For ``kitaru status``: a malformed URL; a store file that is missing (one the user
    named: ``source``), a directory, damaged or written by a newer Kitaru; a database
    that cannot be reached. A store that does not exist yet is not created, and an
    older schema is not migrated (the first real use does both).
    """
    parsed = _parse_store_url(url)
    if parsed.get_backend_name() == "postgresql":
        _check_postgres(parsed)
        return
    path = sqlite_path(parsed)
    if path is None:
        return  # a ``file:`` URI: opened as SQLite is told
    if not path.exists():
        if source is not None:
            require_existing_store(url, source)
        elif not path.parent.is_dir():
            raise missing_directory_error(path)
        return  # the default store: its first use creates it
    _refuse_directory(path)
    _check_revision(_sqlite_file_revision(path), f"sqlite:///{path}")


def _sqlite_file_revision(path: Path) -> str | None:
    """The schema revision of an existing SQLite file, read without creating anything."""
    conn: sqlite3.Connection | None = None
    try:
        # mode=rw: never creates the file; read-write (not ro) so that closing the
        # connection removes the -wal/-shm files a WAL store's reader creates.
        conn = sqlite3.connect(f"{path.as_uri()}?mode=rw", uri=True, timeout=5)
        return _sqlite_revision(conn)
    except sqlite3.Error as exc:
        damaged = damaged_store_error(path, exc)
        if damaged is not None:
            raise damaged from exc
        raise KitaruBackendError(
            f"Cannot open the Kitaru store at sqlite:///{path}: {exc}. Check that the "
            "database is reachable (KITARU_STORE_URL)."
        ) from exc
    finally:
        if conn is not None:
            conn.close()


def _check_postgres(url: sa.URL) -> None:
    _require_psycopg()
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            revision = _revision_of(conn)
    except sa.exc.OperationalError as exc:
        raise unreachable_store_error(engine, exc) from exc
    finally:
        engine.dispose()
    _check_revision(revision, url.render_as_string(hide_password=True))


def _check_revision(revision: str | None, shown_url: str) -> None:
    """A store at a revision this Kitaru does not know is refused (see ``migrate``)."""
    if revision is not None and revision != SCHEMA_REVISION and not _known_revision(revision):
        raise newer_store_error(shown_url, revision)


def newer_store_error(shown_url: str, revision: str) -> KitaruBackendError:
    return KitaruBackendError(
        f"The Kitaru store at {shown_url} is at schema revision {revision}, written by a "
        f"newer Kitaru than this one (which knows revisions up to {SCHEMA_REVISION}). "
        "Upgrade Kitaru where this runs (install the newer version from its "
        "repository or wheel) to use this store; nothing in it was changed."
    )


def unreachable_store_error(engine: sa.Engine, exc: sa.exc.DBAPIError) -> KitaruBackendError:
    return KitaruBackendError(
        f"Cannot open the Kitaru store at {engine.url.render_as_string(hide_password=True)}: "
        f"{exc.orig}. Check that the database is reachable (KITARU_STORE_URL)."
    )


def plain_sqlite_path(url: str) -> Path | None:
    """The file of a ``sqlite:///path`` URL whose path needs no decoding; else None.

    Read without SQLAlchemy's URL parser. Anything unusual (a query string, a
    percent escape, ``:memory:``, a driver name) is left to SQLAlchemy: None.
    """
    prefix = "sqlite:///"
    if not url.startswith(prefix):
        return None
    rest = url[len(prefix) :]
    if not rest or any(ch in rest for ch in "?#%@:"):
        return None
    return Path(rest)


def prepare_sqlite_file(path: Path) -> None:
    """Refuse a missing directory; create the store file 0600 if it does not exist."""
    if not path.parent.is_dir():
        # Never create directories for a store: a typo in a store URL would otherwise
        # silently start a new, empty store. The default store's directory (the config
        # directory) is created by kitaru._paths.config_dir() before it gets here.
        raise missing_directory_error(path)
    _refuse_directory(path)
    _create_private_file(path)


def _refuse_directory(path: Path) -> None:
    if path.is_dir():  # SQLite would only say "unable to open database file"
        raise KitaruBackendError(
            f"The SQLite store path {path} is a directory, not a database file. Point the "
            f"store URL at a file (e.g. sqlite:///{path / 'kitaru.db'}) in KITARU_STORE_URL, "
            "kitaru.configure(store_url=...) or store_url in [tool.kitaru] of pyproject.toml."
        )


def sqlite_synchronous() -> str:
    """``PRAGMA synchronous`` for store connections (``KITARU_SQLITE_SYNCHRONOUS``)."""
    synchronous = _environ.get("KITARU_SQLITE_SYNCHRONOUS", "full").strip().upper()
    if synchronous not in {"FULL", "NORMAL", "EXTRA"}:
        raise KitaruUsageError(
            f"KITARU_SQLITE_SYNCHRONOUS={synchronous.lower()!r} is not supported; use 'full' "
            "(default, survives power loss), 'extra' or 'normal' (relaxed: survives a crash only)."
        )
    return synchronous


def configure_sqlite(dbapi_connection: sqlite3.Connection, synchronous: str) -> None:
    """Every store connection's settings, whoever opened it (the pool or ``connect_sqlite``)."""
    # Autocommit at the driver level: Kitaru issues BEGIN IMMEDIATE itself for writes.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    _enable_wal(cursor)
    cursor.execute(f"PRAGMA synchronous={synchronous}")
    cursor.execute(f"PRAGMA busy_timeout={_SQLITE_BUSY_TIMEOUT_MS}")
    cursor.close()


def connect_sqlite(path: Path, synchronous: str) -> sqlite3.Connection:
    """A ``sqlite3`` connection to the store file, set up like the engine's."""
    conn = sqlite3.connect(path, check_same_thread=False, timeout=_SQLITE_BUSY_TIMEOUT_MS / 1000)
    try:
        configure_sqlite(conn, synchronous)
    except BaseException:
        conn.close()
        raise
    return conn


def open_direct(path: Path) -> tuple[sqlite3.Connection | None, str]:
    """Open the SQLite store file without SQLAlchemy: its connection if its schema is
    current (None: it needs migrating, through the engine), and the synchronous mode.
    An empty file gets the head schema here (``_sqlite_new``), without Alembic.

    The same checks and errors as ``create_engine`` + ``migrate`` for this file.
    """
    prepare_sqlite_file(path)
    synchronous = sqlite_synchronous()
    conn: sqlite3.Connection | None = None
    try:
        conn = connect_sqlite(path, synchronous)
        revision = _sqlite_revision(conn)
        if revision is None:  # a new store: its schema at head, in one transaction
            from kitaru._store import _sqlite_new

            revision = _sqlite_new.create_at_head(conn, path)
    except sqlite3.Error as exc:
        if conn is not None:
            conn.close()
        damaged = damaged_store_error(path, exc)
        if damaged is not None:
            raise damaged from exc
        if not isinstance(exc, sqlite3.OperationalError):
            raise
        raise KitaruBackendError(
            f"Cannot open the Kitaru store at sqlite:///{path}: {exc}. Check that the "
            "database is reachable (KITARU_STORE_URL)."
        ) from exc
    except BaseException:
        if conn is not None:
            conn.close()
        raise
    if revision != SCHEMA_REVISION:
        conn.close()
        return None, synchronous
    return conn, synchronous


def _sqlite_revision(conn: sqlite3.Connection) -> str | None:
    """The store's schema revision; None if it has none yet (a new file)."""
    try:
        row = conn.execute("SELECT version_num FROM kitaru_alembic_version").fetchone()
    except sqlite3.OperationalError as exc:
        if "no such table" not in str(exc):
            raise
        return None
    return None if row is None else str(row[0])


def _sqlite_engine(url: sa.URL) -> sa.Engine:
    path = sqlite_path(url)
    if path is not None:
        prepare_sqlite_file(path)
    synchronous = sqlite_synchronous()
    engine = sa.create_engine(
        url,
        connect_args={"check_same_thread": False, "timeout": _SQLITE_BUSY_TIMEOUT_MS / 1000},
        pool_size=8,
        max_overflow=64,
    )

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        configure_sqlite(dbapi_connection, synchronous)

    return engine


def _create_private_file(path: Path) -> None:
    """Create ``path`` as an empty 0600 file unless it exists (its directory does).

    An existing file keeps its mode: it may be shared on purpose.
    """
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE)
    except FileExistsError:
        return
    except OSError as exc:
        raise KitaruBackendError(
            f"Cannot create the SQLite store file {path}: {exc}. Check that its directory "
            "is writable, or point KITARU_STORE_URL elsewhere."
        ) from exc
    try:
        os.fchmod(fd, PRIVATE_FILE_MODE)  # the umask may have taken owner bits away
    finally:
        os.close(fd)


_STORE_URL_SETTINGS = (
    "KITARU_STORE_URL, kitaru.configure(store_url=...) or store_url in [tool.kitaru] of "
    "pyproject.toml"
)


def missing_directory_error(path: Path, source: str | None = None) -> KitaruBackendError:
    """The directory of a SQLite store file does not exist (usually a typo in the URL)."""
    where = source or _STORE_URL_SETTINGS
    return KitaruBackendError(
        f"Cannot open the SQLite store {path}: its directory {path.parent} does not exist. "
        f"Kitaru creates only its default store (in the config directory); check the store "
        f"URL you set ({where}) for a typo, or create the directory first "
        f"(mkdir -p {path.parent})."
    )


def require_existing_store(url: str, source: str) -> None:
    """For reading: a SQLite store named by a URL the user set (``source``) must exist.

    Reading an empty store that was just created would only hide a typo in the
    path ("No executions"); the first flow run creates a new store file instead.
    """
    try:
        parsed = sa.make_url(normalize_url(url))
    except sa.exc.ArgumentError:
        return  # create_engine reports a malformed URL
    if parsed.get_backend_name() != "sqlite":
        return
    path = sqlite_path(parsed)
    if path is None or path.exists():
        return
    if not path.parent.is_dir():
        raise missing_directory_error(path, source)
    raise KitaruBackendError(
        f"The SQLite store {path} (set by {source}) does not exist. Check the path for a "
        f"typo; a new store file is created by the first flow run, not by reading commands."
    )


# SQLite's primary result codes for "this file is not (or no longer) a valid database".
_DAMAGED_CODES = frozenset({sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB})


def damaged_store_error(
    where: sa.URL | Path | None, exc: BaseException
) -> KitaruBackendError | None:
    """A clear error if ``exc`` says the SQLite store file is damaged, else None.

    ``where``: the store's engine URL, or its file (None: not a file).
    """
    # A driver error as is, or SQLAlchemy's wrapper of one (its ``orig``).
    orig = exc if isinstance(exc, sqlite3.Error) else getattr(exc, "orig", None)
    if not isinstance(orig, sqlite3.DatabaseError):
        return None
    code = getattr(orig, "sqlite_errorcode", None)
    if code is None or code & 0xFF not in _DAMAGED_CODES:
        return None
    path = where if where is None or isinstance(where, Path) else sqlite_path(where)
    if path is None:
        return KitaruBackendError(f"The Kitaru SQLite store is damaged ({orig}).")
    recovered = path.with_name(f"{path.stem}-recovered{path.suffix or '.db'}")
    return KitaruBackendError(
        f"The Kitaru store file {path} is damaged: SQLite cannot read it ({orig}). "
        f"Restore it from a backup, or salvage what SQLite can still read into a new file: "
        f'sqlite3 {path} ".recover" | sqlite3 {recovered} ; then check the new file and '
        f"move it in place of the damaged one (keep the damaged file until you have checked). "
        f"To start over with an empty store, move the damaged file away."
    )


def _enable_wal(cursor: Any) -> None:
    """``PRAGMA journal_mode=WAL``, retried while the database is locked.

    When several processes open a new database file at once, their switches to
    WAL race, and SQLite answers the loser with SQLITE_BUSY at once instead of
    waiting on the busy timeout; so wait here, up to that same timeout.
    """
    deadline = time.monotonic() + _SQLITE_BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
        time.sleep(0.01)


def _require_psycopg() -> None:
    try:
        import psycopg  # noqa: F401
    except ImportError as exc:
        raise KitaruBackendError(
            "The store URL points at PostgreSQL but its driver (psycopg 3) is not installed: "
            "install Kitaru with its postgres extra from its repository or wheel "
            "(pip install '/path/to/kitaru[postgres]'), or pip install 'psycopg[binary]'."
        ) from exc


def _postgres_engine(url: sa.URL) -> sa.Engine:
    _require_psycopg()
    # No pre-ping: it would add a round trip to every checkpoint. A connection the
    # server ended (a restart, a failover, pg_terminate_backend, an idle timeout) is
    # told apart without one at checkout (``server_closed``) and replaced; connections
    # are also recycled hourly.
    engine = sa.create_engine(url, pool_size=8, max_overflow=64, pool_recycle=3600)

    @sa.event.listens_for(engine, "checkout")
    def _replace_ended(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
        if server_closed(dbapi_connection):
            raise sa.exc.DisconnectionError("the server ended this connection")  # a new one

    @sa.event.listens_for(engine, "connect")
    def _bound_stuck_transactions(dbapi_connection: Any, _record: Any) -> None:
        # Kitaru's transactions are a few statements long. One left open by a process
        # that stopped mid-way (SIGSTOP, a VM freeze) would hold its locks for as long
        # as it is stopped, and block the runner that took its execution over; the
        # server ends such a session instead. Once per pooled connection, not per query.
        with dbapi_connection.cursor() as cursor:
            cursor.execute(f"SET idle_in_transaction_session_timeout = {_STUCK_TRANSACTION_MS}")
        dbapi_connection.commit()

    return engine


def server_closed(connection: Any) -> bool:
    """Whether the server ended this idle PostgreSQL connection (a syscall, no round trip).

    An idle connection has nothing to read; when the server ends a session it sends a
    FATAL message and closes its end, so the socket turns readable. (A notice could too:
    that connection is then replaced, harmlessly.)
    """
    import select

    try:
        if connection.closed:
            return True
        readable, _, _ = select.select([connection.fileno()], [], [], 0)
    except (OSError, ValueError):
        return True  # no usable socket
    return bool(readable)


#: How long a PostgreSQL transaction of ours may sit idle before the server ends it.
_STUCK_TRANSACTION_MS = 10_000


def current_revision(engine: sa.Engine) -> str | None:
    with engine.connect() as conn:
        return _revision_of(conn)


def _revision_of(conn: sa.Connection) -> str | None:
    """The store's schema revision; None for a store with no tables yet."""
    if not sa.inspect(conn).has_table("kitaru_alembic_version"):
        return None
    row = conn.exec_driver_sql("SELECT version_num FROM kitaru_alembic_version").first()
    return None if row is None else str(row[0])


def migrate(engine: sa.Engine) -> None:
    """Bring the schema to head; cheap (one query) when it already is.

    A store at a revision this Kitaru does not know (written by a newer one) is
    refused untouched: its rows may be in a form this version would misread.
    """
    try:
        revision = current_revision(engine)
        if revision == SCHEMA_REVISION:
            return
        if revision is not None and not _known_revision(revision):
            raise newer_store_error(engine.url.render_as_string(hide_password=True), revision)
        with _migration_lock(engine) as conn:
            _run_alembic_upgrade(conn, engine.url.render_as_string(hide_password=True))
    except sa.exc.DBAPIError as exc:
        damaged = damaged_store_error(engine.url, exc)
        if damaged is not None:
            raise damaged from exc
        if not isinstance(exc, sa.exc.OperationalError):
            raise
        raise unreachable_store_error(engine, exc) from exc


@contextlib.contextmanager
def _migration_lock(engine: sa.Engine) -> Iterator[sa.Connection]:
    """Serialise migrations between processes that open a new store at the same time."""
    if engine.dialect.name == "postgresql":
        with engine.begin() as conn:
            conn.exec_driver_sql("SELECT pg_advisory_xact_lock(724117)")
            yield conn
        return
    path = sqlite_path(engine.url)
    if path is None:
        with engine.begin() as conn:
            # The driver is in autocommit mode (see _sqlite_engine): without an explicit
            # BEGIN every DDL statement would commit on its own, and a migration that
            # fails halfway would leave tables behind that make the next open fail.
            conn.exec_driver_sql("BEGIN IMMEDIATE")
            yield conn
        return
    with migration_file_lock(path), engine.begin() as conn:
        conn.exec_driver_sql("BEGIN IMMEDIATE")  # one transaction, as above
        yield conn


@contextlib.contextmanager
def migration_file_lock(path: Path) -> Iterator[None]:
    """The lock file that serialises creating or migrating the SQLite store ``path``."""
    fd = os.open(f"{path}.migrate.lock", os.O_RDWR | os.O_CREAT, PRIVATE_FILE_MODE)
    with open(fd, "a+b") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock_file, fcntl.LOCK_UN)


def _known_revision(revision: str) -> bool:
    """Whether ``revision`` is one of this version's migrations (``NNNN_*.py``)."""
    return any(
        path.name.startswith(f"{revision}_")
        for path in (_MIGRATIONS_DIR / "versions").glob("[0-9][0-9][0-9][0-9]_*.py")
    )


def _run_alembic_upgrade(conn: sa.Connection, shown_url: str) -> None:
    # Imported here: Alembic is only needed when the schema is behind.
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS_DIR))
    config.attributes["connection"] = conn
    # Read again under the lock: another process may have upgraded the store meanwhile.
    revision = _revision_of(conn)
    if revision is None:  # a new store: its tables are created, nothing to report
        command.upgrade(config, "head")
        return
    if revision == SCHEMA_REVISION:  # another process upgraded it while this one waited
        return
    progress = _UpgradeProgress(shown_url, revision)
    config.attributes["on_version_apply"] = progress.applied
    command.upgrade(config, "head")
    progress.done()


class _UpgradeProgress:
    """Says on stderr (the ``kitaru.store`` logger) that an existing store is being
    upgraded, each step as it is applied, and when it is done.

    A step may rebuild a table (0014 copies every event: ~2 s per million here), and
    an upgraded store can no longer be opened by the older Kitaru: both are worth
    knowing while it happens rather than from a silent pause.
    """

    def __init__(self, shown_url: str, revision: str) -> None:
        self.started = self.step_started = time.monotonic()
        self.steps = 0
        _migration_log.warning(
            "Upgrading the Kitaru store at %s from schema revision %s to %s. A large store "
            "may take a while: let it finish. Older Kitaru versions cannot open it afterwards.",
            shown_url,
            revision,
            SCHEMA_REVISION,
        )

    def applied(self, *, step: Any, **_: Any) -> None:
        now = time.monotonic()
        took, self.step_started = now - self.step_started, now
        self.steps += 1
        doc = (getattr(step.up_revision, "doc", None) or "").replace("``", "").split("\n")
        _migration_log.warning(
            "  revision %s applied in %.1f s%s",
            step.up_revision_id,
            took,
            f": {doc[0].strip()}" if doc[0].strip() else "",
        )

    def done(self) -> None:
        _migration_log.warning(
            "Kitaru store upgraded to schema revision %s (%d step(s), %.1f s).",
            SCHEMA_REVISION,
            self.steps,
            time.monotonic() - self.started,
        )


_migration_log = logging.getLogger("kitaru.store")

"""Shared fixtures: every test gets its own KITARU_CONFIG_PATH and a clean process state.

PostgreSQL tests use the server named by KITARU_TEST_POSTGRES_URL (``./dev test``
sets it when a server answers on 127.0.0.1:5432; ``.ci/run`` always does). Each
test gets a fresh schema there, dropped afterwards.
"""

from __future__ import annotations

import os
import signal
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

# Nothing the tests do, collection included, may touch the user's own Kitaru
# config and default store: until a test's own fixture sets one, use a scratch dir.
os.environ["KITARU_CONFIG_PATH"] = tempfile.mkdtemp(prefix="kitaru-tests-config-")

from kitaru._backend import forget_backends, get_backend
from kitaru.config import reset_configuration
from tests.fakes.llm_server import llm_server  # noqa: F401  (the fake LLM provider fixture)


def pytest_configure(config: pytest.Config) -> None:
    # A suite started in the background by a non-interactive shell (`./dev test &`,
    # nohup) inherits SIGINT ignored, and so would every process the tests start: the
    # Ctrl-C tests would press a key nobody hears. Tests run as in a terminal.
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


POSTGRES_URL_ENV = "KITARU_TEST_POSTGRES_URL"
POSTGRES_SKIP_REASON = (
    "PostgreSQL tests need a server: set KITARU_TEST_POSTGRES_URL="
    "postgresql+psycopg://postgres@127.0.0.1:5432/test (./dev test does this when a "
    "server answers on 127.0.0.1:5432)"
)


@pytest.fixture(autouse=True)
def kitaru_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An isolated config dir (and so embedded store + artifacts) per test."""
    home = tmp_path / "kitaru-home"
    for name in list(os.environ):
        if name.startswith("KITARU_") and name != POSTGRES_URL_ENV:
            monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("KITARU_CONFIG_PATH", str(home))
    # Tests that exercise retries should not sleep for real backoff periods.
    monkeypatch.setenv("KITARU_RETRY_BACKOFF", "0.01")
    workdir = tmp_path / "work"
    workdir.mkdir()
    monkeypatch.chdir(workdir)
    reset_configuration()
    forget_backends()
    yield home
    reset_configuration()
    forget_backends()


def _postgres_base_url() -> str | None:
    url = os.environ.get(POSTGRES_URL_ENV)
    if not url:
        if os.environ.get("KITARU_TEST_POSTGRES_REQUIRED"):
            pytest.fail(f"KITARU_TEST_POSTGRES_REQUIRED is set but {POSTGRES_URL_ENV} is not")
        return None
    return url


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A URL to a fresh, empty schema on the test PostgreSQL server."""
    base = _postgres_base_url()
    if base is None:
        pytest.skip(POSTGRES_SKIP_REASON)
    import sqlalchemy as sa

    schema = f"kt_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(base, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    except sa.exc.OperationalError as exc:
        admin.dispose()
        if os.environ.get("KITARU_TEST_POSTGRES_REQUIRED"):
            pytest.fail(f"PostgreSQL at {base} is required but unreachable: {exc}")
        pytest.skip(f"{POSTGRES_SKIP_REASON} (unreachable: {exc.orig})")
    separator = "&" if "?" in base else "?"
    yield f"{base}{separator}options=-csearch_path%3D{schema}"
    forget_backends()
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
    admin.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, kitaru_home: Path) -> str:
    """Each test using this runs once on SQLite and once on PostgreSQL."""
    if request.param == "sqlite":
        kitaru_home.mkdir(parents=True, exist_ok=True)  # Kitaru creates no directory for it
        return f"sqlite:///{kitaru_home / 'store.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def any_store(store_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Point Kitaru itself (flows, client) at the parametrized store (existing, empty)."""
    monkeypatch.setenv("KITARU_STORE_URL", store_url)
    forget_backends()
    # A store URL the user sets must name an existing store for the client to read
    # it (a flow run creates a new one); open it once, as a first run would.
    get_backend()
    return store_url


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Make ``--dist loadgroup`` honour ``xdist_group`` on pytest >= 9.2.

    pytest-xdist (3.8) groups tests by suffixing their node id with ``@GROUP``
    through ``item._nodeid``, an attribute pytest 9.2 replaced by ``item._id``;
    without this every xdist worker would start its own Ray cluster. Does what
    xdist does, first, so xdist's own (older pytest) suffixing sees it done.
    """
    option = config.option
    if not (getattr(option, "loadgroup", False) or getattr(option, "dist", None) == "loadgroup"):
        return  # not distributing by group (e.g. no -n): nothing to do
    for item in items:
        groups = {
            str(m.args[0] if m.args else m.kwargs.get("name", "default"))
            for m in item.iter_markers("xdist_group")
        }
        if not groups or "@" in item.nodeid:
            continue
        nodeid = f"{item.nodeid}@{'_'.join(sorted(groups))}"
        if hasattr(item, "_id"):
            from _pytest.nodeid import coerce_node_id

            item._id = coerce_node_id(nodeid)
        else:  # pragma: no cover - pytest < 9.2, where xdist does it itself
            item._nodeid = nodeid

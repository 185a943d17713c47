"""One real Kitaru server (uvicorn, ``kitaru server start``) and one headless Chromium
per test module, over a SQLite store that the test process writes executions into.

The browser is Debian's ``/usr/bin/chromium`` driven by Playwright (never a downloaded
build). Without it the tests skip, saying how to install it; with ``CI=true`` they fail.
Screenshots of each page go to ``test-artifacts/screenshots/`` (git-ignored).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"


def _require(what: str, how: str) -> None:
    message = f"dashboard browser tests need {what}: {how}"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


try:
    from playwright.sync_api import sync_playwright
except ImportError:  # the browser fixture skips (or fails in CI) saying how to get it
    sync_playwright = None  # type: ignore[assignment]

from kitaru._backend import forget_backends, get_backend  # noqa: E402
from kitaru.server._accounts import create_account, create_key  # noqa: E402
from tests.server.conftest import start_server, stop  # noqa: E402


def _check_browser() -> None:
    if sync_playwright is None:
        _require("Playwright for Python", "pip install -e '.[dev]' (never `playwright install`)")
    if not Path(CHROMIUM).exists():
        _require("Chromium at /usr/bin/chromium", "apt-get install -y chromium")


@dataclass
class Dash:
    url: str
    store_url: str
    home: Path
    admin_key: str
    read_key: str


@pytest.fixture(scope="module")
def dash_env() -> Iterator[tuple[Path, str]]:
    home = Path(tempfile.mkdtemp(prefix="kitaru-dash-"))
    yield home, f"sqlite:///{home / 'store.db'}"
    forget_backends()
    shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(autouse=True)
def _point_at_dash_store(
    dash_env: tuple[Path, str], kitaru_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The per-test home of tests/conftest.py, but the module's shared store."""
    home, store_url = dash_env
    monkeypatch.setenv("KITARU_CONFIG_PATH", str(home))
    monkeypatch.setenv("KITARU_STORE_URL", store_url)
    forget_backends()


@pytest.fixture(scope="module")
def dash(dash_env: tuple[Path, str]) -> Iterator[Dash]:
    _check_browser()  # before starting a server for nothing
    home, store_url = dash_env
    saved = {k: os.environ.get(k) for k in ("KITARU_CONFIG_PATH", "KITARU_STORE_URL")}
    os.environ["KITARU_CONFIG_PATH"] = str(home)
    os.environ["KITARU_STORE_URL"] = store_url
    forget_backends()
    try:
        store = get_backend().store  # creates and migrates the store
        create_account(store, "team")
        _a, admin_key = create_key(store, "team", "admin", "write")
        _r, read_key = create_key(store, "team", "viewer", "read")
        forget_backends()
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    url, process = start_server(home, store_url, home / "server.log")
    try:
        yield Dash(url, store_url, home, admin_key, read_key)
    finally:
        stop(process)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    _check_browser()
    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    tab.set_default_timeout(15_000)
    try:
        yield tab
    finally:
        context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def login(page: Page, dash: Dash, key: str | None = None, hash_: str = "#/executions") -> None:
    page.goto(f"{dash.url}/{hash_}")
    page.get_by_label("API key").fill(key or dash.admin_key)
    page.get_by_role("button", name="Log in").click()
    page.locator("#logout").wait_for()


def shot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def wait_status(exec_id: str, status: str, timeout: float = 30) -> Any:
    import time

    from kitaru.client import KitaruClient

    deadline = time.monotonic() + timeout
    while True:
        execution = KitaruClient().executions.get(exec_id)
        if execution.status.value == status:
            return execution
        if time.monotonic() > deadline:
            raise AssertionError(f"{exec_id} is {execution.status.value}, not {status}")
        time.sleep(0.05)

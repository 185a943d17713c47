"""A real Kitaru server (uvicorn in a child process) on a free loopback port.

``server`` runs once over SQLite and once over PostgreSQL (``store_url``). The
test process itself points Kitaru at the same store, so flows run here and the
server sees them. Keys are made directly in the store: an admin (read-write)
key and a read-only one.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

if os.environ.get("CI") == "true":
    import fastapi  # noqa: F401  (mandatory in CI: fail, do not skip)
    import httpx
else:
    pytest.importorskip(
        "fastapi", reason="server tests need the 'server' extra (pip install -e '.[server]')"
    )
    httpx = pytest.importorskip("httpx")

from kitaru._backend import forget_backends, get_backend
from kitaru.server._accounts import create_account, create_key
from tests._cli import in_process
from tests._env import process_env

REPO_ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Server:
    url: str
    admin_key: str
    read_key: str
    store_url: str
    process: subprocess.Popen[bytes]
    log: Path
    runner_key: str = ""

    @property
    def api(self) -> str:
        return f"{self.url}/api/v1"

    def client(self, key: str | None = None) -> httpx.Client:
        headers = {} if key is None else {"Authorization": f"Bearer {key}"}
        return httpx.Client(base_url=self.api, headers=headers, timeout=30)

    @property
    def admin(self) -> httpx.Client:
        return self.client(self.admin_key)

    @property
    def reader(self) -> httpx.Client:
        return self.client(self.read_key)


#: A runner script: ``.format(flow=..., args=...)``; prints EXEC <id>, then RESULT <value>.
RUN_FLOW = """
from tests.server import _flows
handle = _flows.{flow}.run({args})
# One write per line: the flow's steps print from another thread meanwhile.
print("EXEC " + handle.exec_id + "\\n", end="", flush=True)
print("RESULT " + str(handle.wait(timeout=60)) + "\\n", end="", flush=True)
"""


def server_env(home: Path, store_url: str, **extra: str) -> dict[str, str]:
    return process_env(home, KITARU_STORE_URL=store_url, **extra)


#: How ``start_server`` runs the ``kitaru`` command (a test may run it patched).
CLI = ("-m", "kitaru.cli")


def start_server(
    home: Path,
    store_url: str,
    log: Path,
    *args: str,
    cli: Sequence[str] = CLI,
    port: int | None = None,
    **env: str,
) -> tuple[str, subprocess.Popen[bytes]]:
    port = port or free_port()
    url = f"http://127.0.0.1:{port}"
    with open(log, "ab") as out:
        process = subprocess.Popen(
            [sys.executable, *cli, "server", "start", "--port", str(port), *args],
            env=server_env(home, store_url, **env),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 60
    while True:
        if process.poll() is not None:
            pytest.fail(f"server exited ({process.returncode}):\n{log.read_text()}")
        try:
            if httpx.get(f"{url}/api/v1/health", timeout=1).status_code == 200:
                return url, process
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"server did not answer:\n{log.read_text()}")
        time.sleep(0.1)


def stop(process: subprocess.Popen[Any]) -> None:
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@pytest.fixture
def server(
    store_url: str, kitaru_home: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[Server]:
    yield from serve(store_url, kitaru_home, monkeypatch, tmp_path)


def serve(
    store_url: str,
    kitaru_home: Path,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    cli: Sequence[str] = CLI,
) -> Iterator[Server]:
    """A server over ``store_url`` with admin, read and runner keys (see ``server``)."""
    monkeypatch.setenv("KITARU_STORE_URL", store_url)
    forget_backends()
    store = get_backend().store  # creates and migrates the store
    create_account(store, "ci")
    _admin, admin_key = create_key(store, "ci", "admin", "write")
    _reader, read_key = create_key(store, "ci", "reader", "read")
    _runner, runner_key = create_key(store, "ci", "runner", "runner")
    log = tmp_path / "server.log"
    url, process = start_server(kitaru_home, store_url, log, cli=cli)
    try:
        yield Server(url, admin_key, read_key, store_url, process, log, runner_key)
    finally:
        stop(process)


@pytest.fixture
def cli() -> Any:
    """Run ``kitaru ARGS`` in this process."""
    return in_process()


def http_store(store_url: str, tmp_path: Path) -> Iterator[Any]:
    """The HTTP-backed store of a server process over ``store_url`` (for the contract tests)."""
    from kitaru._store import Store
    from kitaru.client._remote_store import HttpStore

    direct = Store(store_url)  # creates and migrates the store
    create_account(direct, "contract")
    _key, raw = create_key(direct, "contract", "runner", "runner")
    direct.dispose()
    home = tmp_path / "server-home"
    home.mkdir(exist_ok=True)
    url, process = start_server(home, store_url, tmp_path / "server.log")
    previous = os.environ.get("KITARU_AUTH_TOKEN")
    os.environ["KITARU_AUTH_TOKEN"] = raw
    try:
        store = HttpStore(f"kitaru+{url}")
    finally:
        if previous is None:
            os.environ.pop("KITARU_AUTH_TOKEN", None)
        else:
            os.environ["KITARU_AUTH_TOKEN"] = previous
    try:
        yield store
    finally:
        store.dispose()
        stop(process)

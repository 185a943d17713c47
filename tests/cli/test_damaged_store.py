"""A damaged SQLite store file: a typed error that names the file and the way out.

The store file is really damaged on disk (garbage over its header, cut short, or
garbage over the executions table's pages), then read through the client and the
CLI as a user would. The file itself must not change.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from kitaru._backend import forget_backends
from kitaru._paths import config_dir
from kitaru.client import KitaruClient
from kitaru.errors import KitaruBackendError
from tests.cli.conftest import Flows, Invoke


def _settle(path: Path) -> None:
    """Close every connection and fold the WAL into the main file, so damage sticks."""
    forget_backends()
    conn = sqlite3.connect(path)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
    for suffix in ("-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


def _garbage_header(path: Path) -> None:
    with path.open("r+b") as handle:
        handle.write(b"this is not a database at all, sorry!" * 3)


def _cut_short(path: Path) -> None:
    os.truncate(path, path.stat().st_size // 3)


def _garbage_executions_table(path: Path) -> None:
    """Garbage over the pages of the executions table only: the store opens, reads fail."""
    conn = sqlite3.connect(path)
    try:
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        (root,) = conn.execute(
            "SELECT rootpage FROM sqlite_master WHERE name = 'kitaru_executions'"
        ).fetchone()
    finally:
        conn.close()
    with path.open("r+b") as handle:
        handle.seek((root - 1) * page_size)
        handle.write(bytes(range(256)) * (page_size // 256))


DAMAGE: dict[str, Callable[[Path], None]] = {
    "garbage header": _garbage_header,
    "cut short": _cut_short,
    "garbage table pages": _garbage_executions_table,
}


@pytest.fixture(params=list(DAMAGE))
def damaged(request: pytest.FixtureRequest, flows: Flows) -> tuple[Path, str, bytes]:
    """The default store holding one execution, then damaged; (path, exec id, bytes)."""
    handle = flows.module.simple.run(1)
    handle.wait()
    path = config_dir() / "kitaru.db"
    _settle(path)
    DAMAGE[request.param](path)
    return path, str(handle.exec_id), path.read_bytes()


def _assert_names_the_damage(message: str, path: Path) -> None:
    assert "damaged" in message
    assert str(path) in message
    assert ".recover" in message  # how to salvage it
    assert "backup" in message


def test_the_client_raises_a_backend_error_naming_the_file(
    damaged: tuple[Path, str, bytes], flows: Flows
) -> None:
    path, exec_id, before = damaged
    with pytest.raises(KitaruBackendError) as listing:
        KitaruClient().executions.list()
    _assert_names_the_damage(str(listing.value), path)
    with pytest.raises(KitaruBackendError) as getting:
        KitaruClient().executions.get(exec_id)
    _assert_names_the_damage(str(getting.value), path)
    with pytest.raises(KitaruBackendError) as running:
        flows.module.simple.run(2).wait()
    _assert_names_the_damage(str(running.value), path)
    forget_backends()
    assert path.read_bytes() == before  # nothing tried to "repair" it


def test_the_cli_says_the_store_is_damaged_without_a_traceback(
    damaged: tuple[Path, str, bytes], kitaru_proc: Invoke
) -> None:
    path, exec_id, before = damaged
    for args in (("executions", "list"), ("executions", "get", exec_id)):
        text = kitaru_proc(*args)
        assert text.exit_code == 1, text
        assert text.stdout == ""
        assert "Traceback" not in text.stderr
        lines = text.stderr.strip().splitlines()
        assert len(lines) == 1, text.stderr
        assert lines[0].startswith("Error: ")
        assert "bug in Kitaru" not in lines[0]
        _assert_names_the_damage(lines[0], path)

        as_json = kitaru_proc(*args, "-o", "json")
        assert as_json.exit_code == 1
        assert as_json.stdout == ""
        assert "Traceback" not in as_json.stderr
        document = json.loads(as_json.stderr)
        assert document["command"] == ".".join(args[:2])
        assert document["error"]["type"] == "KitaruBackendError"
        _assert_names_the_damage(document["error"]["message"], path)
    assert path.read_bytes() == before

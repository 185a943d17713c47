"""`kitaru executions input` through a server (needs the cli/_executions.py change)."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

import kitaru
from kitaru._backend import get_backend
from kitaru.client._remote_config import set_connection
from tests.server import _hardening_flows as flows
from tests.server.conftest import Server


def test_cli_input_through_a_server_waits_for_a_worker_and_echoes_the_stored_answer(
    server: Server, cli: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kitaru.client import _remote_client
    from kitaru.worker import run_worker

    handle = flows.reviewed.run(1)
    deadline = time.monotonic() + 30
    while True:
        record = get_backend().store.require_execution(handle.exec_id)
        if record.status.value == "waiting" and record.lease_owner is None:
            break
        assert time.monotonic() < deadline
        time.sleep(0.05)
    monkeypatch.setattr(_remote_client, "NO_WORKER_HINT_AFTER", 0.3)
    kitaru.connect(server.url, api_key=server.admin_key)
    later = threading.Timer(2.0, lambda: run_worker(once=True, schedules=False))
    later.start()
    try:
        answered = cli("executions", "input", handle.exec_id, "--value", '{"score": "7"}')
    finally:
        later.join(timeout=60)
        set_connection(None)
    assert answered.exit_code == 0, answered.stderr
    assert answered.stderr.count("none has taken it yet") == 1, answered.stderr
    assert '{"score": 7, "comment": "ok"}' in answered.stdout  # as recorded, not as typed
    assert "Status: completed" in answered.stdout, answered.stdout

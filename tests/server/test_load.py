"""Many clients reading while flows run: every request answers, none fails."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from tests.server import _flows
from tests.server.conftest import Server

CLIENTS = 50
REQUESTS = 12
FLOWS = 10


@pytest.mark.slow
def test_fifty_clients_read_while_ten_flows_run(server: Server) -> None:
    seed = _flows.adder.run(0)
    seed.wait()
    statuses: list[int] = []
    failures: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(CLIENTS + 1)

    def client(index: int) -> None:
        own: list[int] = []
        try:
            with server.client(server.read_key) as http:
                start.wait()
                for i in range(REQUESTS):
                    if (index + i) % 2:
                        response = http.get("/executions", params={"limit": 20})
                    else:
                        response = http.get(f"/executions/{seed.exec_id}")
                    own.append(response.status_code)
        except Exception as exc:  # a refused or dropped connection counts as a failure
            with lock:
                failures.append(f"{type(exc).__name__}: {exc}")
        with lock:
            statuses.extend(own)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)]
    for thread in threads:
        thread.start()
    start.wait()
    handles: list[Any] = [_flows.adder.run(i) for i in range(FLOWS)]
    results = [h.wait(timeout=120) for h in handles]
    for thread in threads:
        thread.join(timeout=300)
    assert results == [i + 1 for i in range(FLOWS)]
    assert failures == []
    assert len(statuses) == CLIENTS * REQUESTS
    assert set(statuses) == {200}

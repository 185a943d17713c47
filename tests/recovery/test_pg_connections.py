"""A PostgreSQL server that ends Kitaru's connections (a restart, a failover,
``pg_terminate_backend``, an idle timeout) costs a run nothing.

Kitaru keeps connections open between checkpoints. The server may end any of them
while they sit idle; the next checkpoint must take a new one instead of failing the
run on the dead one (it used to: the checkpoint's write failed, and so did recording
that failure, leaving the execution running with nobody behind it).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

import kitaru
from kitaru import KitaruClient
from kitaru._backend import forget_backends, get_backend
from tests.waits.conftest import wait_until_released

_gates: dict[str, threading.Event] = {}


@kitaru.checkpoint(cache=False)
def _step(i: int) -> int:
    kitaru.save(f"note-{i}", {"i": i})  # the checked-transaction path too
    kitaru.log(i=i)
    return i


@kitaru.flow(cache=False)
def _steps_around_a_gap() -> list[int]:
    done = [_step(0), _step(1)]
    _gates["reached"].set()
    _gates["release"].wait(60)
    return [*done, _step(2), _step(3)]


@kitaru.flow(cache=False)
def _waits_for_a_number() -> int:
    first = _step(0)
    return first + kitaru.wait(schema=int, name="n", timeout=0)


@pytest.fixture
def named_store(postgres_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The test's PostgreSQL store, its connections named so only they are ended."""
    name = f"kt_{uuid.uuid4().hex[:12]}"
    monkeypatch.setenv("KITARU_STORE_URL", f"{postgres_url}&application_name={name}")
    forget_backends()
    get_backend()
    yield name
    forget_backends()


def _end_connections(postgres_url: str, name: str) -> int:
    """End every session of this test's store, as a server restart would."""
    admin = sa.create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            # The sessions first, then each ended: a WHERE that ended them could be
            # evaluated before its name filter, on every session of the server.
            pids = list(
                conn.execute(
                    sa.text("SELECT pid FROM pg_stat_activity WHERE application_name = :name"),
                    {"name": name},
                ).scalars()
            )
            for pid in pids:
                conn.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
            for _ in range(500):  # until those sessions are gone (they end asynchronously)
                left = conn.execute(
                    sa.text("SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(:pids)"),
                    {"pids": list(pids)},
                ).scalar()
                if not left:
                    break
                time.sleep(0.01)
    finally:
        admin.dispose()
    return len(pids)


def test_a_run_goes_on_after_the_server_ended_its_connections(
    postgres_url: str, named_store: str
) -> None:
    _gates.update(reached=threading.Event(), release=threading.Event())
    handle = _steps_around_a_gap.run()
    assert _gates["reached"].wait(30)
    assert _end_connections(postgres_url, named_store) > 0
    _gates["release"].set()
    assert handle.wait(timeout=60) == [0, 1, 2, 3]
    execution = KitaruClient().executions.get(handle.exec_id)
    assert [c.metadata for c in execution.checkpoints] == [{"i": i} for i in range(4)]


def test_a_waiting_execution_is_answered_after_the_server_ended_its_connections(
    postgres_url: str, named_store: str
) -> None:
    client = KitaruClient()
    handle = _waits_for_a_number.run()
    wait_until_released(client, handle.exec_id)
    assert _end_connections(postgres_url, named_store) > 0
    client.executions.input(handle.exec_id, wait="n", value=41)
    assert handle.wait(timeout=60) == 41

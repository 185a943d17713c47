"""Small checkpoint outputs kept in their call row (``_store.call_outputs``), on every store.

What a user sees must not change: the output is an artifact with an id that loads,
lists, survives the cache, replays, a resume and the deletion of the execution
that produced it, and a damaged value is refused rather than returned.
"""

from __future__ import annotations

import uuid

import pytest
import sqlalchemy as sa

from kitaru import KitaruBackendError, KitaruClient, checkpoint, flow
from kitaru._backend import forget_backends, get_backend
from kitaru._store import schema
from kitaru.client import CallStatus

BIG = "z" * 100_000  # beyond the inline limit: an artifact row and a blob, as before


@checkpoint
def small(n: int) -> dict[str, int]:
    return {"n": n}


@checkpoint
def large(n: int) -> str:
    return f"{n}:{BIG}"


@flow
def produce(n: int) -> int:
    return small(n)["n"] + len(large(n))


@flow(cache=False)
def produce_uncached(n: int) -> int:
    return small(n)["n"] + len(large(n))


def _output_rows(exec_id: str) -> list[tuple[str, int]]:
    """(kind, count) of the execution's artifact rows."""
    a = schema.artifacts.c
    with get_backend().store.read() as conn:
        return [
            (kind, count)
            for kind, count in conn.execute(
                sa.select(a.kind, sa.func.count())
                .where(a.exec_id == exec_id)
                .group_by(a.kind)
                .order_by(a.kind)
            )
        ]


def test_a_small_output_lives_in_its_call_row_and_reads_as_an_artifact(any_store: str) -> None:
    handle = produce_uncached.run(3)
    assert handle.wait(timeout=20) == 3 + len(f"3:{BIG}")
    client = KitaruClient()
    execution = client.executions.get(handle.exec_id)
    first, second = execution.checkpoints
    (out,) = first.artifacts
    small_call, _ = get_backend().store.calls(handle.exec_id)
    assert out.artifact_id == f"{handle.exec_id}:out:{small_call.seq}"
    assert (out.name, out.save_type, out.producing_call) == ("small", "step_output", "small")
    assert out.load() == {"n": 3}
    assert out.size == len(b'{"n":3}')
    assert len(out.sha256) == 64
    assert client.artifacts.get(out.artifact_id).load() == {"n": 3}
    # The row stores the output once: no artifact id beside it (the id is the row's).
    c = schema.checkpoint_calls.c
    with get_backend().store.read() as conn:
        stored_ids = conn.execute(
            sa.select(c.call_id, c.artifact_id).where(c.exec_id == handle.exec_id).order_by(c.seq)
        ).all()
    assert [tuple(r) for r in stored_ids] == [
        ("small", None),
        ("large", big_id := second.artifacts[0].artifact_id),
    ]
    assert big_id is not None
    # Only the large output (and the flow's inputs and result) are artifact rows.
    assert dict(_output_rows(handle.exec_id)) == {"flow_inputs": 1, "flow_result": 1, "output": 1}
    (big,) = second.artifacts
    assert big.uri is not None
    assert big.load() == f"3:{BIG}"
    # Listing an execution's artifacts includes it, in the order they were made.
    listed = [a.artifact_id for a in client.artifacts.list(handle.exec_id)]
    assert out.artifact_id in listed
    assert big.artifact_id in listed
    assert [a.artifact_id for a in client.artifacts.list(handle.exec_id, name="small")] == [
        out.artifact_id
    ]
    store = get_backend().store
    assert [r.id for r in store.list_artifacts(exec_id=handle.exec_id, kind="output")] == [
        out.artifact_id,
        big.artifact_id,
    ]
    assert store.list_artifacts(exec_id=handle.exec_id, kind="saved") == []
    # Ids that look like one but name nothing are unknown, not errors.
    for unknown in (f"{handle.exec_id}:out:99", f"{handle.exec_id}:out:x", "nope:out:1"):
        assert store.get_artifact(unknown) is None
        with pytest.raises(KitaruBackendError):
            client.artifacts.get(unknown)


def test_a_cache_hit_takes_the_output_by_id_and_a_retry_reads_it(any_store: str) -> None:
    source = produce.run(5)
    source.wait(timeout=20)
    taker = produce.run(5)
    assert taker.wait(timeout=20) == 5 + len(f"5:{BIG}")
    client = KitaruClient()
    produced = client.executions.get(source.exec_id).checkpoints[0].artifacts[0]
    took = client.executions.get(taker.exec_id).checkpoints[0]
    assert took.call_status is CallStatus.CACHED
    assert [a.artifact_id for a in took.artifacts] == [produced.artifact_id]
    assert took.artifacts[0].load() == {"n": 5}
    # A replay of the taker from its second call reuses the first: its output still loads
    # (read from the source's row when the replayed run resumes the body).
    replay = client.executions.replay(taker.exec_id, at="large", wait=True)
    replayed = client.executions.get(replay.results[0].replay_exec_id)
    assert replayed.status.value == "completed"
    assert replayed.checkpoints[0].call_status is CallStatus.REUSED
    assert replayed.checkpoints[0].artifacts[0].artifact_id == produced.artifact_id
    assert replayed.checkpoints[0].artifacts[0].load() == {"n": 5}


def test_deleting_the_producer_keeps_what_others_took(any_store: str) -> None:
    _delete_the_producer()


def test_deleting_the_producer_keeps_what_others_took_under_a_natural_collation(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The ids an execution's outputs go by are found by prefix, whatever the database's
    collation (ICU's en-US orders ':' and ';' as punctuation, not by code point)."""
    base = sa.make_url(postgres_url.split("?", 1)[0])
    database = f"kt_icu_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(base, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            try:
                conn.exec_driver_sql(
                    f"CREATE DATABASE {database} TEMPLATE template0 "
                    "LOCALE_PROVIDER icu ICU_LOCALE 'en-US' LOCALE 'C.UTF-8'"
                )
            except sa.exc.DBAPIError as exc:
                pytest.skip(f"this PostgreSQL server cannot create an ICU database: {exc.orig}")
        monkeypatch.setenv("KITARU_STORE_URL", base.set(database=database).render_as_string(False))
        forget_backends()
        get_backend()
        try:
            _delete_the_producer()
        finally:
            forget_backends()
            with admin.connect() as conn:
                conn.exec_driver_sql(f"DROP DATABASE {database} WITH (FORCE)")
    finally:
        admin.dispose()


def _delete_the_producer() -> None:
    source = produce.run(7)
    source.wait(timeout=20)
    taker = produce.run(7)
    taker.wait(timeout=20)
    client = KitaruClient()
    store = get_backend().store
    shared = client.executions.get(source.exec_id).checkpoints[0].artifacts[0].artifact_id
    before = client.executions.get(taker.exec_id)

    client.executions.delete(source.exec_id)
    # The output moved to an artifact row under the same id: the taker reads it as before.
    assert store.get_artifact(shared) is not None
    assert client.artifacts.get(shared).load() == {"n": 7}
    after = client.executions.get(taker.exec_id)
    assert after == before
    assert after.checkpoints[0].artifacts[0].load() == {"n": 7}

    # Once nothing uses it, it goes with the last execution that did.
    client.executions.delete(taker.exec_id)
    assert store.get_artifact(shared) is None


def test_a_damaged_output_in_a_call_row_is_refused_not_returned(any_store: str) -> None:
    handle = produce_uncached.run(4)
    handle.wait(timeout=20)
    store = get_backend().store
    calls = schema.checkpoint_calls
    with store.write() as conn:
        conn.execute(
            calls.update()
            .where(calls.c.exec_id == handle.exec_id, calls.c.call_id == "small")
            .values(output_data=b'{"n":5}')
        )
    client = KitaruClient()
    out = client.executions.get(handle.exec_id).checkpoints[0].artifacts[0]
    with pytest.raises(KitaruBackendError, match="corrupted"):
        out.load()
    with pytest.raises(KitaruBackendError, match="corrupted"):
        client.artifacts.get(out.artifact_id).load()

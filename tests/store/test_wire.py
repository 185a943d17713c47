"""The store contract's HTTP encoding: records round-trip; nothing is trusted that should not be."""

from __future__ import annotations

from kitaru._store import _wire
from kitaru._store._events import EventRow
from kitaru._store.records import CallRecord, CallStatus


def test_records_round_trip() -> None:
    call = CallRecord(
        exec_id="e",
        call_id="c",
        seq=1,
        name="c",
        runtime="inline",
        status=CallStatus.COMPLETED,
        metadata={"k": [1, 2]},
        run=2,
    )
    assert _wire.decode(_wire.encode(call)) == call


def test_an_event_row_from_a_client_is_escaped_by_the_store_again() -> None:
    sent = EventRow(exec_id="e", kind="k\x00", payload="{}", ts=1.0, prepared=True)
    received = _wire.decode(_wire.encode(sent))
    assert isinstance(received, EventRow)
    assert received.prepared is False
    assert received.kind == "k\x00"

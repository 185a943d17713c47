"""How the two lifecycle events of every checkpoint are stored short, and read back whole.

Each live checkpoint run publishes ``kitaru.checkpoint.started`` and then
``kitaru.checkpoint.returned``. Without fields, every value of their documents is in
the row's columns, so they are stored without a payload (``""``, which no other event
has) and with:

- the kind as a code: ``~s`` / ``~r``;
- the automatic correlation id ``kitaru.checkpoint:<checkpoint>:<hex>`` as its
  ``<hex>`` (the rest is in the ``checkpoint`` column);
- a started event directly followed by its run's returned event (nothing published
  in between, written in one batch; the runtime joins the two before it queues the
  returned one, ``EventRow.returned_ts``) as **one pair row** ``~p<µs>``: it sits at the
  returned event's position ``seq`` and stands for ``seq - 1`` too (that position
  has no row of its own), with the started event's ``ts`` and ``idx``; ``<µs>`` is the
  time from started to returned. A checkpoint then adds one event row, not two.

Only rows with an empty payload are read this way, so older rows and user events
named like a code read as they were written.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

STARTED = "kitaru.checkpoint.started"
RETURNED = "kitaru.checkpoint.returned"

#: The kind a compact row's code stands for, and the status its document names.
CODES = {STARTED: "~s", RETURNED: "~r"}
FROM_CODE = {code: kind for kind, code in CODES.items()}
STATUS = {STARTED: "started", RETURNED: "returned"}
#: A pair row's kind: this prefix, then the microseconds from started to returned.
PAIR = "~p"
_CORRELATION_PREFIX = "kitaru.checkpoint:"


def short_correlation(correlation_id: str | None, checkpoint: str | None) -> str | None:
    """The ``<hex>`` of an automatic correlation id of ``checkpoint``, else it unchanged."""
    if correlation_id is None or checkpoint is None:
        return correlation_id
    name, suffix = split_correlation(correlation_id)
    return suffix if name == checkpoint and suffix is not None else correlation_id


def split_correlation(correlation_id: str) -> tuple[str | None, str | None]:
    """``(checkpoint, hex)`` of an automatic correlation id; ``(None, None)`` otherwise."""
    if not correlation_id.startswith(_CORRELATION_PREFIX):
        return None, None
    name, colon, suffix = correlation_id[len(_CORRELATION_PREFIX) :].rpartition(":")
    if not colon or not suffix or ":" in suffix:
        return None, None
    return name, suffix


def pair_kind(started_ts: float, returned_ts: float) -> str:
    return f"{PAIR}{round((returned_ts - started_ts) * 1e6)}"


def pair_micros(kind: str) -> int | None:
    """The microseconds a pair row's kind holds; None for any other kind."""
    if not kind.startswith(PAIR):
        return None
    try:
        return int(kind[len(PAIR) :])
    except ValueError:
        return None


def expand(row: Mapping[Any, Any]) -> Iterator[dict[str, Any]]:
    """The event(s) a stored row stands for, as row-like mappings with full values.

    A compact row gives its full kind, correlation id and a ``status``; a pair row
    gives two such; any other row is given as it is (``status`` None).
    """
    if row["payload"] != "":
        yield {**row, "status": None}
        return
    micros = pair_micros(row["kind"])
    if micros is not None:
        correlation_id = _whole(row["correlation_id"], row["checkpoint"])
        index = row["idx"]
        yield {
            **row,
            "seq": row["seq"] - 1,
            "kind": STARTED,
            "correlation_id": correlation_id,
            "status": STATUS[STARTED],
        }
        yield {
            **row,
            "kind": RETURNED,
            "ts": row["ts"] + micros / 1e6,
            "idx": None if index is None else index + 1,
            "correlation_id": correlation_id,
            "status": STATUS[RETURNED],
        }
        return
    kind = FROM_CODE.get(row["kind"], row["kind"])
    status = STATUS.get(kind)
    correlation_id = row["correlation_id"]
    if status is not None:
        correlation_id = _whole(correlation_id, row["checkpoint"])
    yield {**row, "kind": kind, "correlation_id": correlation_id, "status": status}


def _whole(correlation_id: str | None, checkpoint: str | None) -> str | None:
    """The automatic correlation id a stored ``<hex>`` stands for."""
    if correlation_id is None or checkpoint is None or ":" in correlation_id:
        return correlation_id
    return f"{_CORRELATION_PREFIX}{checkpoint}:{correlation_id}"

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

**Event runs.** Consecutive pairs of one batch (a flow running quick checkpoints one
after another) go further: one row of kind ``~P`` (``RUN``) stands for all of them.
It sits at the last position of the run, covers the two positions of each pair before
and including it, and has the first started event's ``ts``. Its payload lists the
pairs (``RUN_FIELD`` between fields, ``RUN_SEPARATOR`` between pairs): call id, checkpoint
(empty when ``checkpoint_of`` the call id gives it), the correlation id's suffix,
the started event's index (empty for 0), and the started time and duration in
microseconds (from the row's ``ts``). The correlation id is not stored: a runtime
lane's is ``kitaru.checkpoint:<checkpoint>:<call_token(call id)><suffix>``
(``lane_correlation``), rebuilt from those. A pair whose values could not be rebuilt
so is stored as a pair row. The runs take ~25 bytes a checkpoint instead of ~125.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator, Mapping
from typing import Any

from kitaru import _digest

STARTED = "kitaru.checkpoint.started"
RETURNED = "kitaru.checkpoint.returned"

#: The kind a compact row's code stands for, and the status its document names.
CODES = {STARTED: "~s", RETURNED: "~r"}
FROM_CODE = {code: kind for kind, code in CODES.items()}
STATUS = {STARTED: "started", RETURNED: "returned"}
#: A pair row's kind: this prefix, then the microseconds from started to returned.
PAIR = "~p"
#: An event run's kind (a row standing for consecutive pairs; see the module docstring).
RUN = "~P"
#: Between two pairs of a run's payload, and between the fields of one pair.
RUN_SEPARATOR, RUN_FIELD = "\x1e", "\x1f"
#: Most pairs one run row holds: ~800 bytes, under the ~1 KB a row of a WITHOUT ROWID
#: table keeps on its page (a longer one spills to an overflow page left half empty).
RUN_MAX = 32
_CORRELATION_PREFIX = "kitaru.checkpoint:"
#: Hex digits of ``call_token``, and the most characters a correlation suffix may have.
_TOKEN_HEX, _SUFFIX_MAX = 16, 24


@functools.lru_cache(maxsize=1024)  # a lane's id is made, then checked when stored
def call_token(call_id: str) -> str:
    """The call's part of its lanes' correlation ids: 64 bits of its id's SHA-256."""
    return _digest.sha256(call_id.encode("utf-8", "surrogatepass")).hexdigest()[:_TOKEN_HEX]


def lane_correlation(checkpoint: str, call_id: str, suffix: str) -> str:
    """The correlation id of a checkpoint run: unique per call id and ``suffix`` (the
    runtime's is ``<run>.<attempt>``), and rebuilt from them when read."""
    return f"{_CORRELATION_PREFIX}{checkpoint}:{call_token(call_id)}{suffix}"


def checkpoint_of(call_id: str) -> str:
    """The checkpoint an automatic call id names: ``step`` for ``step`` and ``step:3``."""
    head, colon, tail = call_id.rpartition(":")
    return head if colon and head and tail.isdigit() else call_id


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


def micros(ts: float) -> int:
    """A time in whole microseconds. Pair and run rows store times so (the first one as
    ``micros / 1e6``, the others as differences): each event reads back as the
    microsecond it was published in, which differences of unrounded times would miss by
    one about half the time. Rounded as ``datetime.fromtimestamp`` rounds (the fraction
    of the second, half to even): ``ts * 1e6`` would be off near 1.8e9 s, where a float
    holds a time to about a quarter of a microsecond."""
    fraction, whole = math.modf(ts)
    return int(whole) * 1_000_000 + round(fraction * 1e6)


def pair_kind(started_ts: float, returned_ts: float) -> str:
    return f"{PAIR}{micros(returned_ts) - micros(started_ts)}"


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
        if row["kind"] == RUN:
            pairs = _run_pairs(row)
            if pairs is not None:
                yield from pairs
                return
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


def run_entry(
    call_id: str, checkpoint: str, suffix: str, index: int, started_us: int, micros: int
) -> str:
    """One pair of a run's payload (``started_us``: from the run row's ``ts``)."""
    shown = "" if checkpoint_of(call_id) == checkpoint else checkpoint
    fields = (call_id, shown, suffix, str(index) if index else "", str(started_us), str(micros))
    return RUN_FIELD.join(fields)


def run_suffix(
    correlation_id: str | None, checkpoint: str | None, call_id: str | None
) -> str | None:
    """The suffix a pair's correlation id is rebuilt from in a run, or None when it is
    not a lane correlation of this call (or a value holds a run's separators)."""
    if correlation_id is None or checkpoint is None or not call_id:
        return None
    if not checkpoint or _has_separator(call_id) or _has_separator(checkpoint):
        return None
    name, token = split_correlation(correlation_id)
    if name != checkpoint or token is None:
        return None
    head, suffix = token[:_TOKEN_HEX], token[_TOKEN_HEX:]
    if len(suffix) > _SUFFIX_MAX or _has_separator(suffix) or head != call_token(call_id):
        return None
    return suffix


def _has_separator(text: str) -> bool:
    return RUN_SEPARATOR in text or RUN_FIELD in text


def _run_pairs(row: Mapping[Any, Any]) -> list[dict[str, Any]] | None:
    """The events of a run row, oldest first; None if its payload is not a run's."""
    entries = row["payload"].split(RUN_SEPARATOR)
    base = row["seq"] - 2 * len(entries)
    first_ts = row["ts"]
    events: list[dict[str, Any]] = []
    try:
        for number, entry in enumerate(entries):
            call_id, shown, suffix, index_text, started_text, micros_text = entry.split(RUN_FIELD)
            checkpoint = shown or checkpoint_of(call_id)
            correlation_id = lane_correlation(checkpoint, call_id, suffix)
            index = int(index_text) if index_text else 0
            started = first_ts + int(started_text) / 1e6
            common = {
                **row,
                "call_id": call_id,
                "checkpoint": checkpoint,
                "correlation_id": correlation_id,
                "payload": "",
            }
            seq = base + 2 * number + 1
            events.append(
                {
                    **common,
                    "seq": seq,
                    "kind": STARTED,
                    "idx": index,
                    "ts": started,
                    "status": STATUS[STARTED],
                }
            )
            events.append(
                {
                    **common,
                    "seq": seq + 1,
                    "kind": RETURNED,
                    "idx": index + 1,
                    "ts": started + int(micros_text) / 1e6,
                    "status": STATUS[RETURNED],
                }
            )
    except ValueError:  # not a run's payload (a user event of that kind, say)
        return None
    return events

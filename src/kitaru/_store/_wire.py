"""The store contract's values as JSON, for the HTTP-backed store (``kitaru+http://``).

Records, enums, bytes and tuples are tagged; only the types listed here can be
decoded, so a request can never make the other side build anything else (no
pickle, no imports by name).
"""

from __future__ import annotations

import base64
import dataclasses
from typing import Any

from kitaru._store._events import EventRecord, EventRow
from kitaru._store.records import (
    ArtifactRecord,
    AttemptRecord,
    CallRecord,
    CallStatus,
    ExecutionRecord,
    ExecutionStatus,
    LogRecord,
    ScheduleFireRecord,
    ScheduleRecord,
    SuspensionRecord,
    SuspensionStatus,
    WaitRecord,
    WaitStatus,
)
from kitaru.errors import KitaruUsageError

#: The form of the store contract over HTTP. Bump it with any change that a server or a
#: runner of the previous form would misread (a new record field, a changed argument):
#: each side then refuses the other at once with one clear error, instead of failing
#: on the first request the other cannot decode. A server that reports none speaks 1.
PROTOCOL = 3
#: The request header a client states its protocol in (``POST /store/{method}``).
PROTOCOL_HEADER = "X-Kitaru-Store-Protocol"


_SAME_VERSION = (
    "a runner and the server it records through must run the same Kitaru version. Upgrade "
    "the older of the two (install both from the same checkout or wheel)."
)


def server_speaks_other(server_url: str, server: object, server_version: object) -> str:
    """What a runner says of a server whose ``/version`` names another protocol."""
    from kitaru._version import __version__

    return (
        f"The Kitaru server at {server_url} (Kitaru {server_version}) speaks store protocol "
        f"{server!r}, and this Kitaru ({__version__}) speaks protocol {PROTOCOL}: " + _SAME_VERSION
    )


def request_states_other(stated: str) -> str:
    """What a server says of a store call whose header states another protocol."""
    from kitaru._version import __version__

    return (
        f"This Kitaru server (Kitaru {__version__}) speaks store protocol {PROTOCOL}, and the "
        f"request states protocol {stated[:20]!a} in {PROTOCOL_HEADER}: " + _SAME_VERSION
    )


_RECORDS: dict[str, type[Any]] = {
    cls.__name__: cls
    for cls in (
        ArtifactRecord,
        AttemptRecord,
        CallRecord,
        ExecutionRecord,
        LogRecord,
        WaitRecord,
        EventRow,
        EventRecord,
        SuspensionRecord,
        ScheduleRecord,
        ScheduleFireRecord,
    )
}
_ENUMS: dict[str, type[Any]] = {
    cls.__name__: cls for cls in (ExecutionStatus, CallStatus, WaitStatus, SuspensionStatus)
}
_TAG = "$k"


def encode(value: Any) -> Any:
    """JSON-able form of a store argument or result."""
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        for name, cls in _ENUMS.items():
            if isinstance(value, cls):
                return {_TAG: "enum", "t": name, "v": value.value}
        return value
    if isinstance(value, bytes | bytearray | memoryview):
        return {_TAG: "bytes", "v": base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, tuple):
        return {_TAG: "tuple", "v": [encode(v) for v in value]}
    if isinstance(value, list):
        return [encode(v) for v in value]
    if isinstance(value, dict):
        if all(isinstance(k, str) for k in value) and _TAG not in value:
            return {k: encode(v) for k, v in value.items()}
        return {_TAG: "map", "v": [[encode(k), encode(v)] for k, v in value.items()]}
    if type(value).__name__ in _RECORDS and type(value) is _RECORDS[type(value).__name__]:
        fields = {f.name: encode(getattr(value, f.name)) for f in dataclasses.fields(value)}
        return {_TAG: "record", "t": type(value).__name__, "v": fields}
    if isinstance(value, BaseException):
        return {_TAG: "error", "t": type(value).__name__, "v": str(value)}
    raise KitaruUsageError(f"Cannot send a {type(value).__name__} to the store over HTTP.")


def decode(value: Any) -> Any:
    if isinstance(value, list):
        return [decode(v) for v in value]
    if not isinstance(value, dict):
        return value
    tag = value.get(_TAG)
    if tag is None:
        return {k: decode(v) for k, v in value.items()}
    if tag == "enum":
        return _ENUMS[_known(_ENUMS, value["t"])](value["v"])
    if tag == "bytes":
        return base64.b64decode(value["v"])
    if tag == "tuple":
        return tuple(decode(v) for v in value["v"])
    if tag == "map":
        return {decode(k): decode(v) for k, v in value["v"]}
    if tag == "record":
        cls = _RECORDS[_known(_RECORDS, value["t"])]
        fields = {k: decode(v) for k, v in value["v"].items()}
        if cls is EventRow:
            # A sender's word that its text is already escaped is not taken: the
            # store escapes what arrives over HTTP itself.
            fields["prepared"] = False
        return cls(**fields)
    if tag == "error":
        from kitaru.errors import KitaruBackendError

        return KitaruBackendError(f"{value['t']}: {value['v']}")
    raise KitaruUsageError(f"Unknown value tag {tag!r} in a store request.")


def _known(table: dict[str, type[Any]], name: Any) -> str:
    if not isinstance(name, str) or name not in table:
        raise KitaruUsageError(f"{name!r} is not a type the store exchanges over HTTP.")
    return name


#: The store methods callable over HTTP: the store contract (no SQL, no engine).
METHODS = frozenset(
    {
        "create_execution",
        "get_execution",
        "require_execution",
        "get_status",
        "list_executions",
        "start_run",
        "note_flow_retry",
        "finish_execution",
        "claim",
        "renew_leases",
        "orphaned",
        "leased_running",
        "insert_calls",
        "delete_execution",
        "set_status",
        "record_call",
        "mark_running",
        "record_attempt",
        "calls",
        "calls_of",
        "recorded_calls",
        "attempts",
        "attempts_of",
        "cached_output",
        "take_cached",
        "saved_artifacts",
        "merge_execution_metadata",
        "insert_logs",
        "logs",
        "insert_events",
        "events",
        "get_artifact",
        "list_artifacts",
        "waits",
        "waits_of",
        "pending_waits",
        "open_wait",
        "get_wait",
        "answer_wait",
        "continue_after_wait",
        "release_waiting",
        # Secrets: ciphertext only (kitaru.secrets encrypts and decrypts on the client).
        "secret_row",
        "secret_rows",
        "save_secret",
        "delete_secret_row",
        # durable time (_store/_time.py)
        "open_suspension",
        "end_suspension",
        "release_suspended",
        "suspensions",
        "suspensions_of",
        "next_wake_at",
        "create_execution_once",
        "children",
        "create_schedule",
        "get_schedule",
        "list_schedules",
        "set_schedule_paused",
        "delete_schedule",
        "claim_slot",
        "mark_slot_started",
        "stranded_slots",
        "advance_schedule",
        "schedule_fires",
    }
)

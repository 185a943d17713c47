"""A checkpoint call's inputs, packed into its call row (``kitaru_checkpoint_calls.inputs``).

Inputs are for people ("what did this step get?"); recovery never needs them (a
recorded output is reused by call id, and the cache key already hashes the
inputs). So recording them is best effort and never costs a call its run:

* Values are stored without pickle (JSON, bytes, Pydantic models, dataclasses,
  tuples of those). A value that would need cloudpickle is *described* (its type
  and a short ``repr``), not stored: pickling arbitrary arguments (clients,
  connections, models) could be slow, fail, or capture secrets they hold.
* They live in the call row, not in artifact rows: a checkpoint still writes one
  row, and a call without arguments stores nothing (NULL).
* A value larger than the store's inline limit goes to the blob store, like an output.
* ``KITARU_RECORD_INPUTS=0`` (where the flow runs) records none, for arguments that
  carry secrets.

The packed form is JSON text: a list with one entry per argument, in call order::

    [name, value]                                            a JSON value, as is
    [name, serializer, type_path, base64]                    another serializer's bytes
    [name, serializer, type_path, null, uri, sha256, size]   bytes in the blob store
    [name, null, type_path, description]                     described, not stored

Readers get each argument as an artifact record of kind ``input`` whose id names
the call by execution and call sequence number: ``<exec_id>:in:<seq>:<index>``.
"""

from __future__ import annotations

import base64
import functools
import inspect
import json
from collections.abc import Callable, Mapping
from typing import Any

from kitaru import _digest, _environ
from kitaru._blobs.serializers import JSON, NOT_STORED, serialize
from kitaru._store.records import ArtifactRecord, CallRecord

#: Set to 0 to record no checkpoint inputs.
ENV_RECORD = "KITARU_RECORD_INPUTS"
#: The ``kind`` of an input's artifact record.
INPUT_KIND = "input"
#: Longest ``repr`` kept for a value that is described rather than stored.
_MAX_DESCRIPTION = 500
_ID_MARK = ":in:"
_COMPACT = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)

PutBlob = Callable[[bytes], tuple[str, str]]


@functools.lru_cache(maxsize=4096)
def _parameters(func: Callable[..., Any]) -> tuple[tuple[str, ...], str | None]:
    """Names of ``func``'s positional parameters, and of its ``*args`` (if any)."""
    try:
        parameters = inspect.signature(func).parameters.values()
    except (TypeError, ValueError):  # builtins and some C callables have none
        return (), None
    positional = tuple(
        p.name
        for p in parameters
        if p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    )
    star = next((p.name for p in parameters if p.kind is inspect.Parameter.VAR_POSITIONAL), None)
    return positional, star


def named_arguments(
    func: Callable[..., Any], args: tuple[Any, ...], kwargs: Mapping[str, Any]
) -> list[tuple[str, Any]]:
    """``(parameter name, value)`` for each argument of a call, in call order."""
    try:
        positional, star = _parameters(func)
    except TypeError:  # an unhashable callable: name positions only
        positional, star = (), None
    named: list[tuple[str, Any]] = []
    for index, value in enumerate(args):
        if index < len(positional):
            name = positional[index]
        else:
            name = f"{star or 'args'}[{index - len(positional)}]"
        named.append((name, value))
    named.extend(kwargs.items())
    return named


def recording() -> bool:
    """``KITARU_RECORD_INPUTS=0`` turns recording off (arguments that hold secrets)."""
    return _environ.get(ENV_RECORD, "1").strip().lower() not in ("0", "false", "no", "off")


def pack(arguments: list[tuple[str, Any]], put_blob: PutBlob, inline_limit: int) -> str | None:
    """The packed inputs of a call (None without arguments); never raises for a value."""
    if not arguments:
        return None
    return (
        "["
        + ",".join(_entry(name, value, put_blob, inline_limit) for name, value in arguments)
        + "]"
    )


def _entry(name: str, value: Any, put_blob: PutBlob, inline_limit: int) -> str:
    try:
        serialized = serialize(value, pickle=False)
        data = serialized.data
        if len(data) > inline_limit:
            uri, sha = put_blob(data)
            entry: list[Any] = [name, serialized.serializer, serialized.type_path, None]
            return _COMPACT.encode([*entry, uri, sha, len(data)])
        if serialized.serializer == JSON:
            return f"[{_COMPACT.encode(name)},{data.decode('utf-8')}]"
        encoded = base64.b64encode(data).decode("ascii")
        return _COMPACT.encode([name, serialized.serializer, serialized.type_path, encoded])
    except Exception as exc:  # needs pickle, cannot be encoded, the blob store failed, ...
        return _COMPACT.encode([name, None, _type_path(value), _describe(value, exc)])


def _type_path(value: Any) -> str:
    tp = type(value)
    return f"{tp.__module__}:{tp.__qualname__}"


def _describe(value: Any, why: Exception) -> str:
    try:
        shown = repr(value)
    except Exception as exc:  # a broken __repr__ must not fail the call
        shown = f"<repr failed: {type(exc).__name__}>"
    if len(shown) > _MAX_DESCRIPTION:
        shown = shown[:_MAX_DESCRIPTION] + "…"
    return f"{why}; its repr: {shown}"


# -- reading ------------------------------------------------------------------------------


def input_id(exec_id: str, seq: int, index: int) -> str:
    return f"{exec_id}{_ID_MARK}{seq}:{index}"


def parse_input_id(artifact_id: str) -> tuple[str, int, int] | None:
    """``(exec_id, call seq, argument index)`` of an input's id; None for other ids."""
    exec_id, mark, rest = artifact_id.partition(_ID_MARK)
    seq, _, index = rest.partition(":")
    if not mark or not exec_id or not seq.isdigit() or not index.isdigit():
        return None
    return exec_id, int(seq), int(index)


def input_records(call: CallRecord) -> list[ArtifactRecord]:
    """The call's arguments as artifact records (kind ``input``), in call order."""
    if not call.inputs:
        return []
    try:
        entries = json.loads(call.inputs)
        if not isinstance(entries, list):
            raise ValueError("not a list")
        return [_record(call, index, entry) for index, entry in enumerate(entries)]
    except Exception as exc:  # damaged text: say so rather than fail the whole read
        note = f"The stored inputs of this call are damaged ({type(exc).__name__}: {exc})."
        return [_described(call, 0, "inputs", None, note)]


def blob_uris(inputs: str | None) -> set[str]:
    """The blob store URIs packed ``inputs`` refer to (arguments too large for the row)."""
    if not inputs:
        return set()
    try:
        entries = json.loads(inputs)
    except ValueError:  # damaged text: nothing to find in it
        return set()
    if not isinstance(entries, list):
        return set()
    return {
        str(entry[4])
        for entry in entries
        if isinstance(entry, list) and len(entry) == 7 and entry[1] is not None and entry[3] is None
    }


def uri_pattern(uri: str) -> str:
    """A ``LIKE ... ESCAPE '\\'`` pattern matching packed inputs that refer to ``uri``."""
    quoted = _COMPACT.encode(uri)  # as it appears in the packed text
    escaped = quoted.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _record(call: CallRecord, index: int, entry: list[Any]) -> ArtifactRecord:
    name = str(entry[0])
    if len(entry) == 2:
        data = _COMPACT.encode(entry[1]).encode("utf-8")
        return _stored(call, index, name, JSON, None, data)
    _, serializer, type_path, payload, *blob = entry
    if serializer is None:
        return _described(call, index, name, type_path, str(payload))
    if payload is not None:
        return _stored(call, index, name, serializer, type_path, base64.b64decode(payload))
    uri, sha, size = blob
    record = _stored(call, index, name, serializer, type_path, b"")
    record.inline_data, record.uri, record.sha256, record.size = None, str(uri), str(sha), int(size)
    return record


def _stored(
    call: CallRecord, index: int, name: str, serializer: str, type_path: str | None, data: bytes
) -> ArtifactRecord:
    return ArtifactRecord(
        id=input_id(call.exec_id, call.seq, index),
        exec_id=call.exec_id,
        call_id=call.call_id,
        name=name,
        kind=INPUT_KIND,
        serializer=serializer,
        type_path=type_path,
        size=len(data),
        sha256=_digest.sha256(data).hexdigest(),
        inline_data=data,
        created_at=call.started_at or 0.0,
    )


def _described(
    call: CallRecord, index: int, name: str, type_path: str | None, note: str
) -> ArtifactRecord:
    record = _stored(call, index, name, NOT_STORED, type_path, note.encode("utf-8"))
    record.size = 0  # nothing of the value itself is stored
    return record


__all__ = [
    "INPUT_KIND",
    "input_id",
    "input_records",
    "named_arguments",
    "pack",
    "parse_input_id",
]

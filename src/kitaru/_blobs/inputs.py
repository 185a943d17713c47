"""The stored form of a flow's inputs: each argument serialized on its own, packed raw.

Storing ``(args, kwargs)`` as one value would go through the tuple serializer,
which embeds every non-JSON item base64-encoded inside JSON, once per nesting
level: a 100 MB ``bytes`` argument became ~180 MB of text built through
several intermediate copies. Here each argument gets its own serializer (bytes
stay bytes, plain data stays JSON, no pickle for a dict of bytes) and the
parts are concatenated after a small JSON header, so packing costs one copy
of the serialized arguments and nothing else.

Layout: an 8-byte big-endian header length, the header (UTF-8 JSON)::

    {"args": [[serializer, type_path, size], ...],
     "kwargs": [[name, serializer, type_path, size], ...]}

then the parts' bytes, in header order.
"""

from __future__ import annotations

import json
import struct
from typing import Any

from kitaru._blobs.serializers import Serialized, deserialize, serialize
from kitaru.errors import KitaruBackendError

#: The serializer name recorded for artifacts in this format.
INPUTS = "flow_inputs"

_LENGTH = struct.Struct(">Q")


class PackedInputs:
    """Serialized flow inputs, not yet joined: what they weigh, and how to get the bytes.

    A plain class: building a dataclass costs ~1 ms at import.
    """

    __slots__ = ("header", "names", "parts")

    def __init__(self, header: bytes, parts: tuple[Serialized, ...], names: tuple[str, ...]):
        self.header, self.parts, self.names = header, parts, names

    @property
    def size(self) -> int:
        return _LENGTH.size + len(self.header) + sum(len(p.data) for p in self.parts)

    def sizes(self) -> list[tuple[str, int]]:
        """``(input name, serialized size)`` for each argument."""
        return [(name, len(part.data)) for name, part in zip(self.names, self.parts, strict=True)]

    def serialized(self) -> Serialized:
        """The stored bytes: the one copy of the arguments' serialized data."""
        chunks = [_LENGTH.pack(len(self.header)), self.header, *(p.data for p in self.parts)]
        return Serialized(INPUTS, None, b"".join(chunks))


def pack(
    args: tuple[Any, ...], kwargs: dict[str, Any], *, arg_names: tuple[str, ...] = ()
) -> PackedInputs:
    """Serialize each argument; ``arg_names`` name the positional ones in size reports.

    Raises ``SerializationError`` (naming nothing stored) if an argument cannot
    be serialized.
    """
    parts: list[Serialized] = []
    names: list[str] = []
    header_args: list[list[Any]] = []
    header_kwargs: list[list[Any]] = []
    for index, value in enumerate(args):
        part = serialize(value)
        parts.append(part)
        names.append(arg_names[index] if index < len(arg_names) else f"args[{index}]")
        header_args.append([part.serializer, part.type_path, len(part.data)])
    for name, value in kwargs.items():
        part = serialize(value)
        parts.append(part)
        names.append(name)
        header_kwargs.append([name, part.serializer, part.type_path, len(part.data)])
    header = json.dumps(
        {"args": header_args, "kwargs": header_kwargs}, separators=(",", ":")
    ).encode("utf-8")
    return PackedInputs(header, tuple(parts), tuple(names))


def unpack(data: bytes) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """The ``(args, kwargs)`` packed in ``data``; damaged data raises KitaruBackendError."""
    try:
        (header_size,) = _LENGTH.unpack_from(data, 0)
        start = _LENGTH.size + header_size
        header = json.loads(data[_LENGTH.size : start])
        entries: list[tuple[str | None, str, str | None, int]] = [
            (None, serializer, type_path, int(size))
            for serializer, type_path, size in header["args"]
        ]
        entries += [
            (str(name), serializer, type_path, int(size))
            for name, serializer, type_path, size in header["kwargs"]
        ]
        if start + sum(entry[3] for entry in entries) != len(data):
            raise ValueError("the parts do not add up to the stored size")
    except KitaruBackendError:
        raise
    except Exception as exc:
        raise KitaruBackendError(
            f"Cannot load stored flow inputs: {type(exc).__name__}: {exc}. The stored data is "
            "damaged."
        ) from exc
    args: list[Any] = []
    kwargs: dict[str, Any] = {}
    view = memoryview(data)
    for name, serializer, type_path, size in entries:
        # One copy per argument; the deserializers want bytes, not a view.
        value = deserialize(Serialized(serializer, type_path, bytes(view[start : start + size])))
        start += size
        if name is None:
            args.append(value)
        else:
            kwargs[name] = value
    return tuple(args), kwargs


__all__ = ["INPUTS", "PackedInputs", "pack", "unpack"]

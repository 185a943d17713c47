"""Artifact bytes and JSON previews, without loading any value's class or pickle.

JSON, Pydantic and dataclass values are stored as JSON text: the preview is
that JSON, decoded as plain data (no class is imported). Pickled values and
flow inputs are never decoded here; the preview says why.
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import TYPE_CHECKING, Any

from kitaru._blobs import BlobIntegrityError
from kitaru.errors import KitaruBackendError

if TYPE_CHECKING:
    from kitaru._backend import Backend
    from kitaru._store import ArtifactRecord

_JSON_TEXT = ("json", "pydantic", "dataclass")
#: Previews larger than this are refused (download the bytes instead).
MAX_PREVIEW_BYTES = 1024 * 1024


def artifact_bytes(backend: Backend, artifact: ArtifactRecord) -> bytes:
    """The stored bytes, checked against their recorded hash."""
    if artifact.inline_data is not None:
        data = bytes(artifact.inline_data)
        if hashlib.sha256(data).hexdigest() != artifact.sha256:
            raise BlobIntegrityError(
                f"Artifact {artifact.id} ({artifact.name!r}) is corrupted: its stored bytes do "
                "not match their recorded hash."
            )
        return data
    if artifact.uri is not None:
        return backend.blobs.get(artifact.uri, artifact.sha256)
    raise KitaruBackendError(
        f"Artifact {artifact.id} ({artifact.name!r}) has neither inline data nor a URI."
    )


def preview(backend: Backend, artifact: ArtifactRecord) -> tuple[bool, Any, str | None]:
    """(previewable, value, reason when not)."""
    serializer = artifact.serializer
    if serializer == "pickle":
        return (
            False,
            None,
            (
                "This value was stored with cloudpickle; the server never unpickles. Load it "
                "with ArtifactRef.load() where the flow's code runs."
            ),
        )
    if serializer == "not_stored":
        # A checkpoint input that would need pickle: its description is the data.
        return False, None, artifact_bytes(backend, artifact).decode("utf-8", "replace")
    if serializer == "flow_inputs":
        return (
            False,
            None,
            (
                "Flow inputs are stored per argument and may hold pickled values; load them "
                "where the flow's code runs."
            ),
        )
    if artifact.size > MAX_PREVIEW_BYTES:
        return (
            False,
            None,
            (
                f"The value is {artifact.size} bytes, more than a preview shows "
                f"({MAX_PREVIEW_BYTES}); download it instead."
            ),
        )
    if serializer in _JSON_TEXT:
        return True, json.loads(artifact_bytes(backend, artifact)), None
    if serializer == "bytes":
        data = artifact_bytes(backend, artifact)
        return True, {"base64": base64.b64encode(data).decode("ascii")}, None
    if serializer == "tuple":
        items = json.loads(artifact_bytes(backend, artifact))
        out: list[Any] = []
        for item in items:
            if item.get("serializer") == "json":
                out.append(item.get("data"))
            elif item.get("serializer") in _JSON_TEXT:
                out.append(json.loads(base64.b64decode(item.get("data", ""))))
            else:
                return (
                    False,
                    None,
                    (
                        f"A tuple item was stored with {item.get('serializer')!r}, which the "
                        "server does not decode."
                    ),
                )
        return True, out, None
    return False, None, f"No preview for values stored with serializer {serializer!r}."

"""The pair every layer above storage talks to: metadata store + artifact bytes.

A :class:`Backend` turns Python values into artifact records (small ones inline
in the metadata row, large ones as content-addressed blobs) and back.
"""

from __future__ import annotations

import json
import json.scanner
import threading
import time
from typing import TYPE_CHECKING, Any, cast

from kitaru import _digest
from kitaru._blobs import BlobIntegrityError, BlobStore, Serialized, deserialize, serialize
from kitaru._blobs.inputs import INPUTS
from kitaru._blobs.inputs import unpack as unpack_inputs
from kitaru._blobs.serializers import JSON
from kitaru._ids import uuid4
from kitaru._store import ArtifactRecord, RecordedCall, call_outputs
from kitaru.errors import KitaruBackendError

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from kitaru._store import Store

#: Values up to this size live in the metadata row: one write, no file.
INLINE_LIMIT = 64 * 1024

#: json.loads' scanner: (text, index) -> (value, end index). typeshed types its argument
#: oddly; a JSONDecoder is what json.decoder passes it too.
_scan_json: Callable[[str, int], tuple[Any, int]] = json.scanner.make_scanner(
    json.JSONDecoder()  # type: ignore[arg-type]
)


class Backend:
    def __init__(self, store_url: str, artifacts_root: str) -> None:
        if store_url.startswith(("kitaru+http://", "kitaru+https://")):
            # Recording through a Kitaru server (see kitaru.client._remote_store).
            from kitaru.client._remote_store import HttpStore

            self.store = cast("Store", HttpStore(store_url))
        else:
            from kitaru._store.store import get_store  # SQLAlchemy loads on first use

            self.store = get_store(store_url)
        self.artifacts_root = artifacts_root
        self._blobs: BlobStore | None = None

    @property
    def blobs(self) -> BlobStore:
        if self._blobs is None:
            if self.artifacts_root.startswith(("kitaru+http://", "kitaru+https://")):
                # No shared root: artifact bytes go through the Kitaru server's API.
                from kitaru.client._remote_blobs import ServerBlobs

                self._blobs = cast("BlobStore", ServerBlobs(self.artifacts_root))
            else:
                self._blobs = BlobStore(self.artifacts_root)
        return self._blobs

    def make_artifact(
        self,
        value: object,
        *,
        exec_id: str | None,
        call_id: str | None,
        name: str,
        kind: str,
        type: str | None = None,
        tags: Sequence[str] | None = None,
        in_row_id: str | None = None,
    ) -> ArtifactRecord:
        """Serialize ``value``; large values are written (durably) to the blob store now.

        Raises ``SerializationError`` when the value cannot be serialized; nothing
        is written in that case.
        """
        return self.store_serialized(
            serialize(value),
            exec_id=exec_id,
            call_id=call_id,
            name=name,
            kind=kind,
            type=type,
            tags=tags,
            in_row_id=in_row_id,
        )

    def store_serialized(
        self,
        serialized: Serialized,
        *,
        exec_id: str | None,
        call_id: str | None,
        name: str,
        kind: str,
        type: str | None = None,
        tags: Sequence[str] | None = None,
        in_row_id: str | None = None,
    ) -> ArtifactRecord:
        """An artifact record for already serialized bytes (blobs written now).

        ``in_row_id``: the id a checkpoint's output takes when it is small enough to
        be kept in its call row (``kitaru._store.call_outputs``).
        """
        data = serialized.data
        id = None
        if len(data) <= INLINE_LIMIT:
            id = in_row_id
            sha = _digest.sha256(data).hexdigest()
            inline: bytes | None = data
            uri = None
        else:
            uri, sha = self.blobs.put(data)
            inline = None
        return ArtifactRecord(
            id=id or uuid4(),
            exec_id=exec_id,
            call_id=call_id,
            name=name,
            kind=kind,
            type=type,
            serializer=serialized.serializer,
            type_path=serialized.type_path,
            size=len(data),
            sha256=sha,
            inline_data=inline,
            uri=uri,
            tags=list(tags or ()),
            created_at=time.time(),
        )

    def load_value(self, artifact: ArtifactRecord, *, from_script: bool = False) -> Any:
        """The stored value; a missing or corrupted artifact raises KitaruBackendError.

        ``from_script`` (user-facing loads): a class defined in the flow's script is taken
        from the script the execution recorded, else the value is returned as plain data
        with a warning (see kitaru._runtime.script_classes).
        """
        data = self._bytes(
            artifact.id, artifact.name, artifact.sha256, artifact.inline_data, artifact.uri
        )
        if from_script:
            from kitaru._runtime.script_classes import from_flow_script

            with from_flow_script(self, artifact.exec_id):
                return self._decode(artifact.serializer, artifact.type_path, data)
        return self._decode(artifact.serializer, artifact.type_path, data)

    def load_recorded(self, call: RecordedCall) -> Any:
        """The output of a recorded call (``load_value`` for a ``RecordedCall``)."""
        if call.artifact_id is None or call.serializer is None:
            raise KitaruBackendError(
                f"Checkpoint call {call.call_id!r} ({call.name}) is recorded as "
                f"{call.status} but its output artifact is missing from the store."
            )
        data = self._bytes(
            call.artifact_id,
            call.artifact_name,
            call.sha256,
            call.inline_data,
            call.uri,
            call.crc32,
        )
        return self._decode(call.serializer, call.type_path, data)

    def _bytes(
        self,
        id: str,
        name: str | None,
        sha256: str | None,
        inline: bytes | None,
        uri: str | None,
        crc32: int | None = None,
    ) -> bytes:
        """An artifact's bytes, checked against their recorded hash (an output kept in its
        call row has a CRC-32 instead: ``kitaru._store.call_outputs``)."""
        if inline is not None:
            if sha256 is None:
                intact, what = call_outputs.intact(inline, crc32), "checksum"
            else:
                intact, what = _digest.sha256(inline).hexdigest() == sha256, "hash"
            if not intact:
                raise BlobIntegrityError(
                    f"Artifact {id} ({name!r}) is corrupted: its stored bytes do not match "
                    f"their recorded {what}. Re-run the checkpoint that produced it."
                )
            return inline
        if uri is not None:
            return self.blobs.get(uri, sha256 or "")
        raise KitaruBackendError(f"Artifact {id} ({name!r}) has neither inline data nor a URI.")

    def _decode(self, serializer: str, type_path: str | None, data: bytes) -> Any:
        if serializer == JSON:
            # json.loads' own scanner without its layers (encoding detection, whitespace
            # regexes), most of the cost of a small value; resuming loads thousands.
            # Kitaru writes JSON as UTF-8 without surrounding whitespace; anything
            # else (or a damaged value) takes the usual way, which says what is wrong.
            try:
                text = data.decode("utf-8")
                value, end = _scan_json(text, 0)
                if end == len(text):
                    return value
            except (ValueError, StopIteration):
                pass
        if serializer == INPUTS:
            return unpack_inputs(data)
        return deserialize(Serialized(serializer, type_path, data))

    def load_artifact(self, artifact_id: str, *, from_script: bool = False) -> Any:
        record = self.store.get_artifact(artifact_id)
        if record is None:
            raise KitaruBackendError(f"Artifact {artifact_id} is not in the store {self.store!r}.")
        return self.load_value(record, from_script=from_script)


_backends: dict[tuple[str, str], Backend] = {}
_lock = threading.Lock()


def get_backend() -> Backend:
    """The backend named by the current configuration (see ``kitaru.config``)."""
    from kitaru.config import resolve_artifacts_root, resolve_store_url

    store_url = resolve_store_url()
    key = (store_url, resolve_artifacts_root(store_url))
    backend = _backends.get(key)
    if backend is None:
        with _lock:
            backend = _backends.get(key)
            if backend is None:
                backend = Backend(*key)
                _backends[key] = backend
    return backend


def forget_backends() -> None:
    """Drop cached backends and stores (tests switch KITARU_CONFIG_PATH between cases)."""
    from kitaru._store import forget_stores

    with _lock:
        _backends.clear()
    forget_stores()

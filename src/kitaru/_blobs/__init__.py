"""Bytes for Kitaru: serializers for checkpoint values and the content-addressed blob store."""

from kitaru._blobs.serializers import (
    SerializationError,
    Serialized,
    deserialize,
    fingerprint,
    serialize,
)
from kitaru._blobs.store import BlobStore

__all__ = [
    "BlobStore",
    "SerializationError",
    "Serialized",
    "deserialize",
    "fingerprint",
    "serialize",
]

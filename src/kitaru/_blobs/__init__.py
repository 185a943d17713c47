"""Bytes for Kitaru: serializers for checkpoint values and the content-addressed blob store."""

from kitaru._blobs.serializers import (
    PickleLoadNotAllowedError,
    PickleNotAllowedError,
    SerializationError,
    Serialized,
    deserialize,
    fingerprint,
    serialize,
)
from kitaru._blobs.store import BlobIntegrityError, BlobLocationError, BlobStore

__all__ = [
    "BlobIntegrityError",
    "BlobLocationError",
    "BlobStore",
    "PickleLoadNotAllowedError",
    "PickleNotAllowedError",
    "SerializationError",
    "Serialized",
    "deserialize",
    "fingerprint",
    "serialize",
]

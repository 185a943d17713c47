"""A damaged blob is repaired by the next write of the same value, never trusted.

Regression: the store used to skip a write when a file of the same size existed, so one
damaged file made every later output with that value unreadable (cache off) or failed
every cache hit on it (cache on), and retrying could not help.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

import fsspec
import pytest

from kitaru import KitaruClient, checkpoint, flow
from kitaru._blobs import BlobIntegrityError, BlobStore
from kitaru._store import CallStatus

# Above the inline limit (64 KiB), so the checkpoint output is a blob file.
_SIZE = 80_000


def _damage(path: Path) -> None:
    """Same size, different bytes: what the old size check could not see."""
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _intact(blob: Path) -> bool:
    """A blob file is named by its content's hash: <root>/<sha[:2]>/<sha[2:]>."""
    return _sha(blob) == blob.parent.name + blob.name


# ---------------------------------------------------------------------- the store alone


def test_put_replaces_a_same_size_damaged_blob(tmp_path: Path) -> None:
    store = BlobStore(str(tmp_path))
    uri, sha = store.put(b"precious bytes")
    _damage(Path(uri))
    with pytest.raises(BlobIntegrityError, match="is corrupted"):
        store.get(uri, sha)
    assert store.put(b"precious bytes") == (uri, sha)
    assert store.get(uri, sha) == b"precious bytes"
    assert _sha(Path(uri)) == sha
    assert not [p for p in Path(uri).parent.iterdir() if p.name.startswith(".tmp-")]


def test_put_replaces_a_blob_swapped_for_a_directory_entry(tmp_path: Path) -> None:
    store = BlobStore(str(tmp_path))
    uri, sha = store.put(b"abc")
    Path(uri).unlink()
    Path(uri).write_bytes(b"a much longer, unrelated file")
    store.put(b"abc")
    assert store.get(uri, sha) == b"abc"


def test_remote_put_replaces_a_same_size_damaged_blob() -> None:
    root = "memory://kitaru-repair-test"
    store = BlobStore(root)
    uri, sha = store.put(b"abcdef")
    fs = fsspec.filesystem("memory")
    fs.pipe_file(uri, b"abcdeF")
    with pytest.raises(BlobIntegrityError, match=re.escape(f"artifact {uri} is corrupted")):
        store.get(uri, sha)
    assert store.put(b"abcdef") == (uri, sha)
    assert store.get(uri, sha) == b"abcdef"
    fs.rm(root.removeprefix("memory:/"), recursive=True)


def test_missing_blob_is_an_integrity_error(tmp_path: Path) -> None:
    store = BlobStore(str(tmp_path))
    uri, sha = store.put(b"soon gone")
    Path(uri).unlink()
    with pytest.raises(BlobIntegrityError, match="is missing"):
        store.get(uri, sha)


# ---------------------------------------------------------------------- through flows

_runs: list[int] = []


@checkpoint
def big_output(n: int) -> str:
    _runs.append(n)
    return f"{n}:" + "x" * _SIZE


@flow
def big_flow(n: int) -> str:
    value = big_output(n)
    # A small result (inline), so only the checkpoint output lives in the blob.
    return f"{len(value)}:{value[:2]}"


def _output(exec_id: str) -> Any:
    (ref,) = KitaruClient().artifacts.list(exec_id, role="output")
    return ref


@pytest.fixture(autouse=True)
def _reset_runs() -> None:
    _runs.clear()


def test_cache_off_rewrite_repairs_the_damaged_blob(any_store: str) -> None:
    first = big_flow.run(7, cache=False)
    assert first.wait(timeout=60) == f"{_SIZE + 2}:7:"
    ref = _output(first.exec_id)
    assert ref.uri is not None
    blob = Path(ref.uri)
    _damage(blob)

    second = big_flow.run(7, cache=False)
    assert second.wait(timeout=60) == f"{_SIZE + 2}:7:"
    assert _runs == [7, 7]
    # The new output is readable, and so is the first one again: same content, same file.
    assert _output(second.exec_id).load() == "7:" + "x" * _SIZE
    assert ref.load() == "7:" + "x" * _SIZE
    assert _intact(blob)


def test_cache_hit_on_a_damaged_blob_runs_the_checkpoint_again(any_store: str) -> None:
    first = big_flow.run(8)
    assert first.wait(timeout=60) == f"{_SIZE + 2}:8:"
    ref = _output(first.exec_id)
    assert ref.uri is not None
    blob = Path(ref.uri)
    _damage(blob)

    second = big_flow.run(8)
    assert second.wait(timeout=60) == f"{_SIZE + 2}:8:"
    assert _runs == [8, 8]  # the cache hit was not usable: the checkpoint ran
    (call,) = KitaruClient().executions.get(second.exec_id).checkpoints
    assert call.status.value == CallStatus.COMPLETED.value
    assert _output(second.exec_id).load() == "8:" + "x" * _SIZE
    assert _intact(blob)

    # Repaired: the next run is a plain cache hit again.
    third = big_flow.run(8)
    assert third.wait(timeout=60) == f"{_SIZE + 2}:8:"
    assert _runs == [8, 8]


def test_cache_hit_on_a_missing_blob_runs_the_checkpoint_again(any_store: str) -> None:
    first = big_flow.run(9)
    first.wait(timeout=60)
    ref = _output(first.exec_id)
    assert ref.uri is not None
    Path(ref.uri).unlink()
    second = big_flow.run(9)
    assert second.wait(timeout=60) == f"{_SIZE + 2}:9:"
    assert _runs == [9, 9]
    assert ref.load() == "9:" + "x" * _SIZE

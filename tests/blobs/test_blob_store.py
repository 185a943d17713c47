"""BlobStore: content addressing, durability of local writes, damage detection, fsspec."""

from __future__ import annotations

import hashlib
import os
import re
import stat
import subprocess
import sys
import threading
import uuid
from pathlib import Path
from typing import Any

import fsspec
import pytest

from kitaru._blobs import BlobStore
from kitaru.errors import KitaruBackendError


def all_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def test_put_get_local(tmp_path: Path) -> None:
    store = BlobStore(str(tmp_path / "blobs"))
    uri, sha = store.put(b"hello")
    assert sha == hashlib.sha256(b"hello").hexdigest()
    assert uri == str(tmp_path / "blobs" / sha[:2] / sha[2:])
    assert Path(uri).read_bytes() == b"hello"
    assert store.get(uri, sha) == b"hello"
    assert store.root == str(tmp_path / "blobs")


def test_root_is_created_lazily(tmp_path: Path) -> None:
    root = tmp_path / "a" / "b"
    store = BlobStore(str(root))
    assert not root.exists()
    uri, sha = store.put(b"x")
    assert root.is_dir()
    assert store.get(uri, sha) == b"x"


def test_relative_and_home_roots_become_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    store = BlobStore("rel")
    assert store.root == str(tmp_path / "rel")
    uri, _ = store.put(b"data")
    assert os.path.isabs(uri)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert BlobStore("~/blobs").root == str(tmp_path / "home" / "blobs")


def test_file_url_root(tmp_path: Path) -> None:
    store = BlobStore((tmp_path / "blobs").as_uri())
    assert store.root == str(tmp_path / "blobs")
    uri, sha = store.put(b"via file url")
    assert store.get(uri, sha) == b"via file url"
    assert store.get(Path(uri).as_uri(), sha) == b"via file url"


def test_put_is_idempotent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = BlobStore(str(tmp_path))
    first = store.put(b"same")
    replaced: list[Any] = []
    real_replace = os.replace

    def spy(src: Any, dst: Any) -> None:
        replaced.append(dst)
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", spy)
    assert store.put(b"same") == first
    assert BlobStore(str(tmp_path)).put(b"same") == first
    assert replaced == []
    assert len(all_files(tmp_path)) == 1


def test_put_repairs_a_truncated_blob(tmp_path: Path) -> None:
    store = BlobStore(str(tmp_path))
    uri, sha = store.put(b"complete content")
    Path(uri).write_bytes(b"compl")
    assert store.put(b"complete content") == (uri, sha)
    assert store.get(uri, sha) == b"complete content"


def test_empty_and_large_blobs(tmp_path: Path) -> None:
    store = BlobStore(str(tmp_path))
    uri, sha = store.put(b"")
    assert store.get(uri, sha) == b""
    big = os.urandom(8 * 1024 * 1024)
    uri, sha = store.put(big)
    assert store.get(uri, sha) == big


def test_no_temp_files_left_behind(tmp_path: Path) -> None:
    store = BlobStore(str(tmp_path))
    for i in range(50):
        store.put(f"blob {i}".encode())
    files = all_files(tmp_path)
    assert len(files) == 50
    for f in files:
        assert len(f.parent.name) == 2
        assert len(f.name) == 62
        assert f.parent.name + f.name == hashlib.sha256(f.read_bytes()).hexdigest()


def test_failed_write_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = BlobStore(str(tmp_path))

    def broken_fsync(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(KitaruBackendError) as info:
        store.put(b"doomed")
    sha = hashlib.sha256(b"doomed").hexdigest()
    assert sha[2:] in str(info.value)
    assert "could not be written" in str(info.value)
    assert all_files(tmp_path) == []


def test_write_under_a_file_fails_cleanly(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_bytes(b"")
    store = BlobStore(str(blocker / "blobs"))
    with pytest.raises(KitaruBackendError, match="could not be written"):
        store.put(b"x")


def test_concurrent_puts_of_the_same_content(tmp_path: Path) -> None:
    store = BlobStore(str(tmp_path))
    results: list[tuple[str, str]] = []
    errors: list[BaseException] = []

    def work() -> None:
        try:
            results.append(BlobStore(str(tmp_path)).put(b"contended" * 1000))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(set(results)) == 1
    assert len(all_files(tmp_path)) == 1
    assert store.get(*results[0]) == b"contended" * 1000


def test_missing_blob(tmp_path: Path) -> None:
    store = BlobStore(str(tmp_path))
    uri, sha = store.put(b"soon gone")
    os.remove(uri)
    with pytest.raises(KitaruBackendError) as info:
        store.get(uri, sha)
    message = str(info.value)
    assert f"artifact {uri} is missing" in message
    assert "Check" in message


def test_corrupted_blob(tmp_path: Path) -> None:
    store = BlobStore(str(tmp_path))
    uri, sha = store.put(b"precious bytes")
    raw = bytearray(Path(uri).read_bytes())
    raw[3] ^= 0x01
    Path(uri).write_bytes(bytes(raw))
    with pytest.raises(KitaruBackendError, match=re.escape(f"artifact {uri} is corrupted")):
        store.get(uri, sha)


def test_wrong_recorded_hash_is_corruption(tmp_path: Path) -> None:
    store = BlobStore(str(tmp_path))
    uri, _ = store.put(b"a")
    with pytest.raises(KitaruBackendError, match="is corrupted"):
        store.get(uri, hashlib.sha256(b"b").hexdigest())


def test_recorded_hash_is_case_insensitive(tmp_path: Path) -> None:
    store = BlobStore(str(tmp_path))
    uri, sha = store.put(b"a")
    assert store.get(uri, sha.upper()) == b"a"


def test_unreadable_blob(tmp_path: Path) -> None:
    store = BlobStore(str(tmp_path))
    uri, sha = store.put(b"a")
    os.remove(uri)
    os.mkdir(uri)  # reading a directory fails with something other than "missing"
    with pytest.raises(KitaruBackendError, match="could not be read"):
        store.get(uri, sha)


def test_delete(tmp_path: Path) -> None:
    store = BlobStore(str(tmp_path))
    uri, sha = store.put(b"delete me")
    store.delete(uri)
    assert not Path(uri).exists()
    store.delete(uri)  # already gone is fine
    with pytest.raises(KitaruBackendError, match="is missing"):
        store.get(uri, sha)


def test_uri_is_usable_from_another_process(tmp_path: Path) -> None:
    uri, sha = BlobStore(str(tmp_path)).put(b"shared")
    code = (
        "import sys\n"
        "from kitaru._blobs import BlobStore\n"
        "sys.stdout.write(BlobStore(sys.argv[3]).get(sys.argv[1], sys.argv[2]).decode())\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, uri, sha, str(tmp_path)],
        cwd="/",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "shared"


# ----------------------------------------------------------------- fsspec memory://


@pytest.fixture
def memory_root() -> Any:
    root = f"memory://kitaru-test-{uuid.uuid4().hex}"
    yield root
    fs = fsspec.filesystem("memory")
    path = root.removeprefix("memory:/")
    if fs.exists(path):
        fs.rm(path, recursive=True)


def test_memory_put_get(memory_root: str) -> None:
    store = BlobStore(memory_root + "/")
    assert store.root == memory_root
    uri, sha = store.put(b"in memory")
    assert uri == f"{memory_root}/{sha[:2]}/{sha[2:]}"
    assert store.get(uri, sha) == b"in memory"
    # A fresh store with the same root reads it by URI; one with another root refuses it.
    assert BlobStore(memory_root).get(uri, sha) == b"in memory"
    with pytest.raises(KitaruBackendError, match="Refusing to read"):
        BlobStore("memory://elsewhere").get(uri, sha)
    assert fsspec.open(uri, "rb").open().read() == b"in memory"


def test_memory_dedupe_and_delete(memory_root: str) -> None:
    store = BlobStore(memory_root)
    first = store.put(b"twice")
    assert store.put(b"twice") == first
    fs = fsspec.filesystem("memory")
    assert len(fs.find(memory_root)) == 1
    store.delete(first[0])
    store.delete(first[0])
    with pytest.raises(KitaruBackendError, match=re.escape(f"artifact {first[0]} is missing")):
        store.get(*first)


def test_memory_corrupted(memory_root: str) -> None:
    store = BlobStore(memory_root)
    uri, sha = store.put(b"abcdef")
    fsspec.filesystem("memory").pipe_file(uri, b"abcdeF")
    with pytest.raises(KitaruBackendError, match=re.escape(f"artifact {uri} is corrupted")):
        store.get(uri, sha)


def test_bare_memory_root() -> None:
    store = BlobStore("memory://")
    payload = f"bare root {uuid.uuid4()}".encode()
    uri, sha = store.put(payload)
    assert uri.startswith("memory://")
    assert store.get(uri, sha) == payload
    store.delete(uri)


def test_unknown_protocol_is_a_backend_error() -> None:
    store = BlobStore("nosuchproto://bucket/prefix")
    with pytest.raises(KitaruBackendError, match="nosuchproto://bucket/prefix/"):
        store.put(b"x")
    with pytest.raises(KitaruBackendError, match="could not be read"):
        store.get("nosuchproto://bucket/prefix/ab/" + "c" * 62, "00")


def test_local_put_fsyncs_file_and_directories(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[str] = []
    real_fsync = os.fsync

    def spy(fd: int) -> None:
        synced.append("dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", spy)
    store = BlobStore(str(tmp_path))
    store.put(b"first")
    # The blob, its new shard directory's entry in the root, and the blob's entry.
    assert synced.count("file") == 1
    assert synced.count("dir") == 2


def test_importing_blobs_stays_light() -> None:
    code = (
        "import sys\n"
        "import kitaru\n"
        "before = set(sys.modules)\n"
        "import kitaru._blobs\n"
        "heavy = {'pydantic', 'fsspec', 'cloudpickle'} & (set(sys.modules) - before)\n"
        "print(sorted(heavy))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"

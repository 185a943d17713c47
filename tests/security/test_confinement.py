"""Blob URIs are confined to the artifact root, for reads and for deletes.

Regression: a planted artifact row (one written straight into the store's database) made
`kitaru artifacts show --value` print any file and `kitaru executions delete` delete any
file the user could reach. Each planted URI here points at a real file with a matching
recorded hash, so only the confinement check stands between it and the file.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import fsspec
import pytest
from typer.testing import CliRunner

from kitaru import KitaruClient, checkpoint, flow
from kitaru._backend import get_backend
from kitaru._blobs import BlobLocationError, BlobStore
from kitaru._store import schema
from kitaru.cli import app
from kitaru.errors import KitaruBackendError

SECRET = b"top secret contents of a file outside the artifact root"


@checkpoint
def small_step() -> str:
    return "ok"


@flow
def small_flow() -> str:
    return small_step()


def _plant(exec_id: str, uri: str) -> str:
    """Insert an artifact row for ``exec_id`` pointing at ``uri``, as an attacker would."""
    artifact_id = str(uuid.uuid4())
    engine = get_backend().store.engine
    with engine.begin() as conn:
        conn.execute(
            schema.artifacts.insert().values(
                id=artifact_id,
                exec_id=exec_id,
                call_id=None,
                name="planted",
                kind="saved",
                type="blob",
                serializer="bytes",
                type_path=None,
                size=len(SECRET),
                sha256=hashlib.sha256(SECRET).hexdigest(),
                inline_data=None,
                uri=uri,
                tags=[],
                created_at=time.time(),
            )
        )
    return artifact_id


def _finished_execution() -> str:
    handle = small_flow.run()
    assert handle.wait(timeout=60) == "ok"
    return handle.exec_id


def _root() -> Path:
    return Path(get_backend().artifacts_root)


def _secret_file(tmp_path: Path) -> Path:
    secret = tmp_path / "outside" / "secret.txt"
    secret.parent.mkdir()
    secret.write_bytes(SECRET)
    return secret


# Each builds a planted URI from (artifact root, outside file); all must be refused.
def _absolute(root: Path, secret: Path) -> str:
    return str(secret)


def _file_url(root: Path, secret: Path) -> str:
    return secret.as_uri()


def _dot_dot(root: Path, secret: Path) -> str:
    return str(root) + "/../" + os.path.relpath(secret, root.parent)


def _symlinked_blob(root: Path, secret: Path) -> str:
    name = hashlib.sha256(SECRET).hexdigest()
    link = root / name[:2] / name[2:]
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(secret)
    return str(link)


def _symlinked_shard(root: Path, secret: Path) -> str:
    # <root>/<2 hex> is a symlink to the outside directory; the name looks like a blob.
    name = hashlib.sha256(SECRET).hexdigest()
    (secret.parent / name[2:]).write_bytes(SECRET)
    root.mkdir(parents=True, exist_ok=True)
    (root / name[:2]).symlink_to(secret.parent)
    return str(root / name[:2] / name[2:])


PLANTS: list[Callable[[Path, Path], str]] = [
    _absolute,
    _file_url,
    _dot_dot,
    _symlinked_blob,
    _symlinked_shard,
]


def _cli(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args))
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


@pytest.mark.parametrize("plant", PLANTS, ids=lambda f: f.__name__.strip("_"))
def test_reads_outside_the_root_are_refused(
    any_store: str, tmp_path: Path, plant: Callable[[Path, Path], str]
) -> None:
    secret = _secret_file(tmp_path)
    exec_id = _finished_execution()
    uri = plant(_root(), secret)
    artifact_id = _plant(exec_id, uri)

    ref = KitaruClient().artifacts.get(artifact_id)
    with pytest.raises(KitaruBackendError) as caught:
        ref.load()
    assert isinstance(caught.value, BlobLocationError)
    assert uri in str(caught.value)
    assert str(_root()) in str(caught.value)

    code, out, err = _cli("artifacts", "show", artifact_id, "--value")
    assert code == 1
    assert SECRET.decode() not in out + err
    assert "Refusing to read" in err
    assert uri in err

    code, out, err = _cli("artifacts", "show", artifact_id, "--value", "-o", "json")
    assert code == 1
    assert SECRET.decode() not in out + err
    assert out == ""  # a JSON error goes to stderr, stdout stays empty
    assert "Refusing to read" in json.loads(err)["error"]["message"]


@pytest.mark.parametrize("plant", PLANTS, ids=lambda f: f.__name__.strip("_"))
def test_delete_never_removes_a_file_outside_the_root(
    any_store: str, tmp_path: Path, plant: Callable[[Path, Path], str]
) -> None:
    secret = _secret_file(tmp_path)
    exec_id = _finished_execution()
    uri = plant(_root(), secret)
    _plant(exec_id, uri)

    code, _out, err = _cli("executions", "delete", exec_id, "--yes")
    assert code == 1
    assert "Refusing to delete" in err
    assert uri in err
    assert secret.read_bytes() == SECRET
    # Refused before anything changed: the execution is still there.
    assert KitaruClient().executions.get(exec_id).exec_id == exec_id

    with pytest.raises(BlobLocationError):
        KitaruClient().executions.delete(exec_id)
    assert secret.read_bytes() == SECRET


def test_delete_of_a_clean_execution_still_removes_its_blobs(any_store: str) -> None:
    @checkpoint
    def big() -> str:
        return "y" * 70_000

    @flow
    def big_flow() -> int:
        return len(big())

    handle = big_flow.run()
    assert handle.wait(timeout=60) == 70_000
    (ref,) = KitaruClient().artifacts.list(handle.exec_id, role="output")
    assert ref.uri is not None
    assert Path(ref.uri).exists()
    code, _out, err = _cli("executions", "delete", handle.exec_id, "--yes")
    assert code == 0, err
    assert not Path(ref.uri).exists()


# ------------------------------------------------------------- the blob store alone


def test_store_refuses_uris_of_another_shape(tmp_path: Path) -> None:
    store = BlobStore(str(tmp_path / "root"))
    uri, sha = store.put(b"inside")
    assert store.get(uri, sha) == b"inside"
    for bad in (
        str(tmp_path / "root" / "config.json"),  # inside, but not a blob name
        str(tmp_path / "root" / "ab"),
        str(tmp_path / "root" / ".." / "root" / uri[-65:]),
        uri.replace("/root/", "/root/./"),
        "relative/" + uri[-65:],
        "memory://" + uri,
    ):
        with pytest.raises(BlobLocationError, match="Refusing to read"):
            store.get(bad, sha)
        with pytest.raises(BlobLocationError, match="Refusing to delete"):
            store.delete(bad)
    assert store.get(uri, sha) == b"inside"


def test_remote_store_refuses_uris_outside_its_root() -> None:
    fs = fsspec.filesystem("memory")
    root = f"memory://kitaru-confine-{uuid.uuid4().hex}"
    other = f"memory://kitaru-other-{uuid.uuid4().hex}"
    outside_store = BlobStore(other)
    outside_uri, sha = outside_store.put(b"another store's blob")
    store = BlobStore(root)
    try:
        with pytest.raises(BlobLocationError, match="Refusing to read"):
            store.get(outside_uri, sha)
        with pytest.raises(BlobLocationError, match="Refusing to delete"):
            store.delete(outside_uri)
        dotted = f"{root}/../{other.removeprefix('memory://')}/{outside_uri[-65:]}"
        with pytest.raises(BlobLocationError):
            store.delete(dotted)
        assert outside_store.get(outside_uri, sha) == b"another store's blob"
    finally:
        for path in (root, other):
            if fs.exists(path.removeprefix("memory:/")):
                fs.rm(path.removeprefix("memory:/"), recursive=True)

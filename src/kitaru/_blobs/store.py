"""A content-addressed blob store on a local directory or any fsspec filesystem.

Blobs live at ``<root>/<sha[:2]>/<sha[2:]>``. Local writes are crash- and power-loss-safe
(temp file, fsync, atomic rename, directory fsync); remote object stores write whole
objects atomically by themselves. fsspec is imported only for non-local roots.

A write whose blob already exists checks the existing content against its hash and
replaces it if it differs, so one damaged file is repaired by the next write of the same
value instead of poisoning every later output that has it. Reads and deletes accept
only URIs of that layout under the store's root: a stored URI that points anywhere else
(another directory, ``..``, a symlink out of the root) is refused, never read or removed.
Local files are private to the user (0600 files, 0700 directories).
"""

from __future__ import annotations

import contextlib
import os
import re
from typing import Any

from kitaru import _digest
from kitaru._ids import random_hex
from kitaru._paths import PRIVATE_DIR_MODE, PRIVATE_FILE_MODE, make_private_dir
from kitaru.errors import KitaruBackendError

_TMP_PREFIX = ".tmp-"
# The part of a blob URI below the root: "<sha[:2]>/<sha[2:]>" (see BlobStore.put).
_BLOB_NAME = re.compile(r"[0-9a-f]{2}/[0-9a-f]{62}")
_READ_CHUNK = 1024 * 1024


class BlobIntegrityError(KitaruBackendError):
    """A blob is missing or its content does not match its recorded hash.

    The value it held is lost; where the value can be produced again (a cache hit), the
    caller may do that instead of failing.
    """


class BlobLocationError(KitaruBackendError):
    """A blob URI points outside the artifact store's root; Kitaru refuses to touch it."""


def _is_url(root: str) -> bool:
    return "://" in root or "::" in root


def _fsync_dir(path: str) -> None:
    """Persist a directory's entries (a new or renamed file) across a power loss."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return  # Platforms (Windows) that cannot open directories have no such fsync.
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class BlobStore:
    """Content-addressed bytes under ``root``: a local path or an fsspec URL."""

    def __init__(self, root: str) -> None:
        self._fs: Any = None
        self._fs_path = ""
        if root.startswith("file://"):
            from urllib.parse import unquote, urlsplit

            parts = urlsplit(root)
            if parts.netloc not in ("", "localhost"):
                raise KitaruBackendError(
                    f"Artifact store root {root!r} names a remote host; file:// URLs must "
                    "point to this machine (file:///absolute/path)."
                )
            root = unquote(parts.path)
        if _is_url(root):
            self._local = False
            stripped = root.rstrip("/")
            # A bare "memory://" must keep its slashes to stay a URL.
            self._root = stripped if not stripped.endswith(":") else stripped + "//"
            self._prefix = self._root if self._root.endswith("/") else self._root + "/"
        else:
            self._local = True
            # Absolute, so URIs handed out stay valid in processes with another cwd.
            self._root = os.path.abspath(os.path.expanduser(root))
            self._prefix = ""

    @property
    def root(self) -> str:
        """The normalized root: an absolute local path or a URL without trailing slash."""
        return self._root

    def __repr__(self) -> str:
        return f"BlobStore({self._root!r})"

    # ------------------------------------------------------------------ public API

    def put(self, data: bytes) -> tuple[str, str]:
        """Store ``data``; return its URI and SHA-256 hex.

        Storing it again leaves an intact file alone and replaces a damaged one.
        """
        sha = _digest.sha256(data).hexdigest()
        if self._local:
            uri = os.path.join(self._root, sha[:2], sha[2:])
            self._put_local(uri, data, sha)
        else:
            uri = f"{self._prefix}{sha[:2]}/{sha[2:]}"
            self._put_remote(uri, data, sha)
        return uri, sha

    def get(self, uri: str, sha256: str) -> bytes:
        """The bytes stored at ``uri``, checked against the recorded ``sha256``.

        Raises:
            KitaruBackendError: the blob is missing, unreadable or its content does not
                match ``sha256`` (wrong bytes are never returned).
        """
        location = self._confine(uri, "read")
        try:
            if self._local:
                with open(location, "rb") as f:
                    data = f.read()
            else:
                fs, path = self._remote(location)
                data = fs.cat_file(path)
        except FileNotFoundError as exc:
            raise BlobIntegrityError(
                f"artifact {uri} is missing from the artifact store. Check that this process "
                f"uses the same artifact store (root {self._root}) as the execution that wrote "
                "it, that the storage is mounted or reachable, and that the file was not "
                "deleted or moved."
            ) from exc
        except Exception as exc:
            raise KitaruBackendError(
                f"artifact {uri} could not be read: {type(exc).__name__}: {exc}. Check that "
                "the artifact store is reachable and that this process may read it."
            ) from exc
        actual = _digest.sha256(data).hexdigest()
        if actual != sha256.lower():
            raise BlobIntegrityError(
                f"artifact {uri} is corrupted: its content has SHA-256 {actual}, but "
                f"{sha256} was recorded when it was written. The file was modified or damaged "
                "on disk; restore it from a backup, or re-run the execution to produce it again."
            )
        return bytes(data)

    def delete(self, uri: str) -> None:
        """Remove the blob at ``uri``; a blob that is already gone is fine.

        Raises:
            BlobLocationError: ``uri`` is not a blob of this store (nothing is removed).
        """
        location = self._confine(uri, "delete")
        try:
            if self._local:
                os.remove(location)
            else:
                fs, path = self._remote(location)
                fs.rm_file(path)
        except FileNotFoundError:
            return
        except Exception as exc:
            raise KitaruBackendError(
                f"artifact {uri} could not be deleted: {type(exc).__name__}: {exc}. Check "
                "that the artifact store is reachable and that this process may write to it."
            ) from exc

    def check_uri(self, uri: str, action: str = "read") -> None:
        """Raise :class:`BlobLocationError` unless ``uri`` names a blob of this store."""
        self._confine(uri, action)

    # ------------------------------------------------------------------ confinement

    def _confine(self, uri: str, action: str) -> str:
        """The location of ``uri`` if it names a blob under this store's root.

        Local: the absolute path, after checking that neither ``..`` nor a symlink leads
        out of the root. Remote: the URI itself, which must start with the root's URL.
        """
        if self._local:
            path = uri
            if uri.startswith("file://"):
                from urllib.parse import unquote, urlsplit

                parts = urlsplit(uri)
                path = unquote(parts.path) if parts.netloc in ("", "localhost") else uri
            # A plain prefix test, no normalization: the name below the root may hold
            # nothing but hex digits and one separator, so no ".." can get through.
            prefix = self._root.rstrip(os.sep) + os.sep
            relative = path[len(prefix) :].replace(os.sep, "/")
            if (
                path.startswith(prefix)
                and _BLOB_NAME.fullmatch(relative)
                and self._inside_root(path)
            ):
                return path
        elif uri.startswith(self._prefix) and _BLOB_NAME.fullmatch(uri[len(self._prefix) :]):
            return uri
        raise BlobLocationError(
            f"Refusing to {action} artifact {uri}: it is not a blob of the artifact store at "
            f"{self._root} (blobs live at <root>/<2 hex>/<62 hex>, inside the root). The "
            "artifact record points elsewhere: it was written with another artifact root "
            "(point KITARU_ARTIFACTS_ROOT at that root to use it) or was tampered with."
        )

    def _inside_root(self, path: str) -> bool:
        # Symlinks (of the shard directory or the blob) must not lead out of the root.
        real_root = os.path.realpath(self._root)
        real = os.path.realpath(path)
        return os.path.commonpath([real_root, real]) == real_root and real != real_root

    # ------------------------------------------------------------------ local files

    def _put_local(self, path: str, data: bytes, sha: str) -> None:
        try:
            # The rare "exists" path: same name should mean same content, but a damaged
            # file must be replaced, not trusted (it would poison every later output).
            if _local_sha256(path) == sha:
                return
        except FileNotFoundError:
            pass  # the usual path: a new blob, written without reading anything back
        except OSError as exc:
            raise self._write_error(path, exc) from exc
        directory = os.path.dirname(path)
        tmp = os.path.join(directory, f"{_TMP_PREFIX}{random_hex(16)}")
        try:
            self._ensure_dir(directory)
            # O_EXCL: the name is fresh. 0600: artifact values are private to the user.
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
            fd = os.open(tmp, flags, PRIVATE_FILE_MODE)
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
                # Atomic: readers see either no blob or the whole blob, never a partial
                # one; a damaged blob is replaced in one step.
                os.replace(tmp, path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.remove(tmp)
                raise
            _fsync_dir(directory)
        except OSError as exc:
            raise self._write_error(path, exc) from exc

    def _ensure_dir(self, directory: str) -> None:
        # No cache of existing directories: one mkdir is cheap next to the fsyncs, and
        # this stays correct if someone removes a directory under our feet.
        try:
            os.mkdir(directory, PRIVATE_DIR_MODE)
        except FileExistsError:
            pass
        except FileNotFoundError:
            make_private_dir(self._root)
            try:
                os.mkdir(directory, PRIVATE_DIR_MODE)
            except FileExistsError:
                pass
            else:
                _fsync_dir(self._root)
        else:
            # A new directory entry must itself be durable, or the blob in it is lost.
            _fsync_dir(os.path.dirname(directory))

    # ------------------------------------------------------------------ fsspec

    def _remote(self, uri: str) -> tuple[Any, str]:
        """The fsspec filesystem and in-filesystem path for a URL under the root."""
        if self._fs is None:
            from fsspec.core import url_to_fs

            fs, path = url_to_fs(self._root)
            self._fs, self._fs_path = fs, path.rstrip("/")
        return self._fs, f"{self._fs_path}/{uri[len(self._prefix) :]}"

    def _put_remote(self, uri: str, data: bytes, sha: str) -> None:
        try:
            fs, path = self._remote(uri)
            try:
                # Only read back when the sizes agree; a damaged object is rewritten.
                if (
                    fs.size(path) == len(data)
                    and _digest.sha256(fs.cat_file(path)).hexdigest() == sha
                ):
                    return
            except FileNotFoundError:
                pass
            fs.pipe_file(path, data)
        except Exception as exc:
            raise self._write_error(uri, exc) from exc

    def _write_error(self, uri: str, exc: BaseException) -> KitaruBackendError:
        return KitaruBackendError(
            f"artifact {uri} could not be written to the artifact store at {self._root}: "
            f"{type(exc).__name__}: {exc}. Check that the location exists or can be created, "
            "that this process may write to it and that there is free space."
        )


def _local_sha256(path: str) -> str:
    """SHA-256 hex of a local file, read in chunks (FileNotFoundError if it is absent)."""
    import hashlib  # files are long: OpenSSL's SHA-256, loaded here on first use

    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_READ_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


__all__ = ["BlobIntegrityError", "BlobLocationError", "BlobStore"]

"""A content-addressed blob store on a local directory or any fsspec filesystem.

Blobs live at ``<root>/<sha[:2]>/<sha[2:]>``. Local writes are crash- and power-loss-safe
(temp file, fsync, atomic rename, directory fsync); remote object stores write whole
objects atomically by themselves. fsspec is imported only for non-local roots.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import uuid
from typing import Any

from kitaru.errors import KitaruBackendError

_TMP_PREFIX = ".tmp-"


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
        """Store ``data``; return its URI and SHA-256 hex. Storing it again is a no-op."""
        sha = hashlib.sha256(data).hexdigest()
        if self._local:
            uri = os.path.join(self._root, sha[:2], sha[2:])
            self._put_local(uri, data)
        else:
            uri = f"{self._prefix}{sha[:2]}/{sha[2:]}"
            self._put_remote(uri, data)
        return uri, sha

    def get(self, uri: str, sha256: str) -> bytes:
        """The bytes stored at ``uri``, checked against the recorded ``sha256``.

        Raises:
            KitaruBackendError: the blob is missing, unreadable or its content does not
                match ``sha256`` (wrong bytes are never returned).
        """
        try:
            if self._is_local_uri(uri):
                with open(self._local_path(uri), "rb") as f:
                    data = f.read()
            else:
                fs, path = self._remote(uri)
                data = fs.cat_file(path)
        except FileNotFoundError as exc:
            raise KitaruBackendError(
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
        actual = hashlib.sha256(data).hexdigest()
        if actual != sha256.lower():
            raise KitaruBackendError(
                f"artifact {uri} is corrupted: its content has SHA-256 {actual}, but "
                f"{sha256} was recorded when it was written. The file was modified or damaged "
                "on disk; restore it from a backup, or re-run the execution to produce it again."
            )
        return bytes(data)

    def delete(self, uri: str) -> None:
        """Remove the blob at ``uri``; a blob that is already gone is fine."""
        try:
            if self._is_local_uri(uri):
                os.remove(self._local_path(uri))
            else:
                fs, path = self._remote(uri)
                fs.rm_file(path)
        except FileNotFoundError:
            return
        except Exception as exc:
            raise KitaruBackendError(
                f"artifact {uri} could not be deleted: {type(exc).__name__}: {exc}. Check "
                "that the artifact store is reachable and that this process may write to it."
            ) from exc

    # ------------------------------------------------------------------ local files

    @staticmethod
    def _is_local_uri(uri: str) -> bool:
        return uri.startswith("file://") or not _is_url(uri)

    @staticmethod
    def _local_path(uri: str) -> str:
        if uri.startswith("file://"):
            from urllib.parse import unquote, urlsplit

            return unquote(urlsplit(uri).path)
        return uri

    def _put_local(self, path: str, data: bytes) -> None:
        try:
            # Same name means same content; the size check catches a truncated leftover.
            if os.stat(path).st_size == len(data):
                return
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise self._write_error(path, exc) from exc
        directory = os.path.dirname(path)
        tmp = os.path.join(directory, f"{_TMP_PREFIX}{uuid.uuid4().hex}")
        try:
            self._ensure_dir(directory)
            # O_EXCL: the name is fresh; mode 0o666 lets the umask decide, as for any file.
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
            fd = os.open(tmp, flags, 0o666)
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
                # Atomic: readers see either no blob or the whole blob, never a partial one.
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
            os.mkdir(directory)
        except FileExistsError:
            pass
        except FileNotFoundError:
            os.makedirs(self._root, exist_ok=True)
            try:
                os.mkdir(directory)
            except FileExistsError:
                pass
            else:
                _fsync_dir(self._root)
        else:
            # A new directory entry must itself be durable, or the blob in it is lost.
            _fsync_dir(os.path.dirname(directory))

    # ------------------------------------------------------------------ fsspec

    def _remote(self, uri: str) -> tuple[Any, str]:
        """The fsspec filesystem and in-filesystem path for a URL."""
        if not self._local and uri.startswith(self._prefix):
            if self._fs is None:
                from fsspec.core import url_to_fs

                fs, path = url_to_fs(self._root)
                self._fs, self._fs_path = fs, path.rstrip("/")
            return self._fs, f"{self._fs_path}/{uri[len(self._prefix) :]}"
        from fsspec.core import url_to_fs

        fs, path = url_to_fs(uri)
        return fs, path

    def _put_remote(self, uri: str, data: bytes) -> None:
        try:
            fs, path = self._remote(uri)
            try:
                if fs.size(path) == len(data):
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


__all__ = ["BlobStore"]

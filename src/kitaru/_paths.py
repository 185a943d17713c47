"""Where Kitaru keeps its state on disk.

Everything lives under one directory: ``KITARU_CONFIG_PATH`` if set, else the
platform's user config directory for ``kitaru``. It holds the global config file
(``config.json``: stacks, the active stack, other persisted settings) and, unless
overridden, the embedded store and the artifact directory.

The global config file is shared by every Kitaru process of the user (CLI calls,
workers, notebooks), so writes are atomic (temp file + ``os.replace``) and
read-modify-write cycles hold an inter-process lock on ``config.lock``.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from kitaru import _filecache
from kitaru._filecache import Version, looked, settled, unchanged, version_of
from kitaru.errors import KitaruBackendError

CONFIG_PATH_ENV = "KITARU_CONFIG_PATH"
GLOBAL_CONFIG_FILENAME = "config.json"
LOCK_FILENAME = "config.lock"

#: Kitaru's state (store, artifacts, config) is private to its user, whatever the umask.
PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600


def make_private_dir(path: str | os.PathLike[str]) -> bool:
    """Create ``path`` and its missing parents as 0700 directories; True if it was created.

    Directories that already exist keep their mode: they may be shared on purpose. The
    explicit chmod makes a new directory 0700 whatever the umask.
    """
    try:
        os.mkdir(path, PRIVATE_DIR_MODE)
    except FileExistsError:
        if not os.path.isdir(path):
            raise
        return False
    except FileNotFoundError:
        parent = os.path.dirname(os.path.abspath(path))
        if parent == os.path.abspath(path):
            raise
        make_private_dir(parent)
        try:
            os.mkdir(path, PRIVATE_DIR_MODE)
        except FileExistsError:  # created by a concurrent process meanwhile
            if not os.path.isdir(path):
                raise
            return False
    os.chmod(path, PRIVATE_DIR_MODE)
    return True


def config_dir() -> Path:
    """Return the Kitaru state directory, creating it if it does not exist yet."""
    key = _location_key()
    known = _dirs.get(key)
    if known is not None and os.path.isdir(known):  # one stat: every .run() asks
        return known
    path = _config_path()
    try:
        make_private_dir(path)
    except OSError as exc:
        raise KitaruBackendError(
            f"Cannot create the Kitaru config directory {path}: {exc}. "
            f"Set {CONFIG_PATH_ENV} to a writable directory."
        ) from exc
    _dirs[key] = path
    return path


def existing_config_dir() -> Path | None:
    """The Kitaru state directory if it exists already (never created here)."""
    known = _dirs.get(_location_key())
    path = known if known is not None else _config_path()
    return path if os.path.isdir(path) else None


def _config_path() -> Path:
    override = os.environ.get(CONFIG_PATH_ENV, "").strip()
    return Path(override).expanduser().absolute() if override else _user_config_dir()


def _user_config_dir() -> Path:
    """The platform's user config directory for ``kitaru`` (platformdirs' answer).

    On Linux with an absolute ``XDG_CONFIG_HOME``, or none and an absolute ``HOME``,
    that is ``$XDG_CONFIG_HOME/kitaru`` or ``~/.config/kitaru``, decided here: importing
    platformdirs costs every run ~5 ms (it pulls in tempfile, random, bz2, lzma).
    Every other case (another platform, a relative or missing home) is platformdirs'
    to answer. ``tests/config/test_paths.py`` checks both agree.
    """
    if sys.platform == "linux" and not hasattr(sys, "getandroidapilevel"):
        xdg = os.environ.get("XDG_CONFIG_HOME", "")
        if os.path.isabs(xdg):
            return Path(os.path.join(xdg, "kitaru"))
        home = os.environ.get("HOME", "")
        if not xdg.strip() and os.path.isabs(home):
            return Path(os.path.join(home, ".config", "kitaru"))
    import platformdirs

    return Path(platformdirs.user_config_dir("kitaru"))


#: The config directory by what config_dir() derives it from (see _location_key).
_dirs: dict[tuple[str | None, ...], Path] = {}


def _location_key() -> tuple[str | None, ...]:
    """What the config directory's path depends on: the override (with the cwd when it
    is relative, the home when it starts with ``~``), else platformdirs' inputs."""
    override = os.environ.get(CONFIG_PATH_ENV, "").strip()
    if override:
        tilde = override.startswith("~")
        home = os.environ.get("HOME") if tilde else None
        profile = os.environ.get("USERPROFILE") if tilde else None  # expanduser on Windows
        relative = not os.path.isabs(os.path.expanduser(override))
        return (override, home, profile, os.getcwd() if relative else None)
    return (
        None,
        os.environ.get("XDG_CONFIG_HOME"),
        os.environ.get("HOME"),
        os.environ.get("APPDATA"),
        os.environ.get("LOCALAPPDATA"),
    )


def default_store_url() -> str:
    """The embedded SQLite store inside the config directory."""
    return f"sqlite:///{(config_dir() / 'kitaru.db').as_posix()}"


def default_artifacts_root() -> str:
    """The local artifact directory inside the config directory."""
    return str(config_dir() / "artifacts")


def global_config_file() -> Path:
    """Path of the global config file (it may not exist yet)."""
    return config_dir() / GLOBAL_CONFIG_FILENAME


# --- inter-process lock -------------------------------------------------------
#
# flock() excludes other processes; the RLock excludes other threads of this
# process and makes the lock re-entrant (a thread that already holds the file
# lock must not flock a second descriptor: it would deadlock on itself).

_thread_lock = threading.RLock()
_lock_depth = 0


def _reinit_after_fork() -> None:
    # A fork while another thread held the lock would leave the child's copy
    # locked forever; the child starts with a fresh, unheld lock.
    global _thread_lock, _lock_depth
    _thread_lock = threading.RLock()
    _lock_depth = 0


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reinit_after_fork)


if sys.platform == "win32":
    import msvcrt

    def _lock_fd(fd: int) -> None:
        os.lseek(fd, 0, os.SEEK_SET)
        while True:
            try:
                msvcrt.locking(fd, msvcrt.LK_LOCK, 1)
                return
            except OSError:
                continue  # LK_LOCK gives up after ~10 s; keep waiting like flock.

    def _unlock_fd(fd: int) -> None:
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)

else:
    import fcntl

    def _lock_fd(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_EX)

    def _unlock_fd(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)


@contextmanager
def global_config_lock() -> Iterator[None]:
    """Hold the exclusive lock on the global config (re-entrant per thread)."""
    global _lock_depth
    with _thread_lock:
        if _lock_depth:
            _lock_depth += 1
            try:
                yield
            finally:
                _lock_depth -= 1
            return
        lock_path = config_dir() / LOCK_FILENAME
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise KitaruBackendError(
                f"Cannot open the Kitaru config lock file {lock_path}: {exc}. "
                f"Check the permissions of {lock_path.parent} or set {CONFIG_PATH_ENV}."
            ) from exc
        try:
            _lock_fd(fd)
            _lock_depth = 1
            try:
                yield
            finally:
                _lock_depth = 0
                _unlock_fd(fd)
        finally:
            os.close(fd)


# --- read / write -------------------------------------------------------------


def read_global_config() -> dict[str, Any]:
    """Read the global config file; a missing file reads as an empty config.

    No lock is needed: writers replace the file atomically, so a reader sees
    either the old or the new content, never a torn write.
    """
    path = global_config_file()
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise KitaruBackendError(f"Cannot read the Kitaru config file {path}: {exc}.") from exc
    if not raw.strip():
        return {}
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise _corrupt(path, f"not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise _corrupt(path, f"expected a JSON object at the top, found {type(data).__name__}")
    return data


#: The last read of the global config for read_global_config_shared: (the file, its
#: version and whether that is settled, the parsed content). See kitaru._filecache.
_shared: tuple[str, Version | None, bool, dict[str, Any]] | None = None
_shared_lock = threading.Lock()
#: The config file's path by what config_dir() derives it from (environment, cwd).
_file_by_env: dict[tuple[str | None, ...], str] = {}


def read_global_config_shared() -> dict[str, Any]:
    """:func:`read_global_config`, read again only when the file changed.

    For lookups on the ``.run()`` path (the active stack, the model registry). The
    dict is shared with later callers: never modify it (read-modify-write goes
    through :func:`update_global_config`).
    """
    return looked("global config", _read_shared)


def _read_shared() -> dict[str, Any]:
    global _shared
    env = _location_key()
    path = _file_by_env.get(env)
    if path is None:  # as read_global_config does: creates the config directory
        path = _file_by_env[env] = str(global_config_file())
    looked_at = _filecache.now_ns()
    try:
        version = version_of(os.stat(path))
    except FileNotFoundError:
        return {}  # no file reads as an empty config (and there is nothing to keep)
    except OSError:
        version = None  # read_global_config says what is wrong
    shared = _shared
    if shared is not None and shared[0] == path and unchanged(shared[1], shared[2], version):
        return shared[3]
    data = read_global_config()
    with _shared_lock:
        _shared = (path, version, settled(version, looked_at), data)
    return data


def write_global_config(data: dict[str, Any]) -> None:
    """Atomically replace the global config file with ``data``."""
    try:
        payload = json.dumps(data, indent=2, sort_keys=True) + "\n"
    except (TypeError, ValueError) as exc:
        raise KitaruBackendError(
            f"Cannot save the Kitaru config: it holds a value that is not JSON-serializable "
            f"({exc}). This is a bug in Kitaru; please report it."
        ) from exc
    with global_config_lock():
        path = global_config_file()
        _atomic_write(path, payload.encode("utf-8"))


@contextmanager
def update_global_config() -> Iterator[dict[str, Any]]:
    """Read-modify-write the global config under the inter-process lock.

    The yielded dict is written back when the block exits without an exception;
    other top-level keys (owned by other modules) are preserved as read.
    """
    with global_config_lock():
        data = read_global_config()
        yield data
        write_global_config(data)


def _atomic_write(path: Path, payload: bytes) -> None:
    import tempfile

    tmp_name: str | None = None
    try:
        fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except OSError as exc:
        if tmp_name is not None:
            with suppress(OSError):
                os.unlink(tmp_name)
        raise KitaruBackendError(f"Cannot write the Kitaru config file {path}: {exc}.") from exc
    if sys.platform != "win32":
        # Persist the rename itself; without this a power loss may bring back the old file.
        with suppress(OSError):
            dir_fd = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)


def _corrupt(path: Path, reason: str) -> KitaruBackendError:
    return KitaruBackendError(
        f"The Kitaru config file {path} is corrupt ({reason}). Fix it by hand or delete it "
        f"(deleting it forgets your stacks and the active stack)."
    )


def corrupt_config_error(reason: str) -> KitaruBackendError:
    """Error for a config file whose JSON is valid but whose content is not."""
    return _corrupt(global_config_file(), reason)


__all__ = [
    "CONFIG_PATH_ENV",
    "PRIVATE_DIR_MODE",
    "PRIVATE_FILE_MODE",
    "config_dir",
    "corrupt_config_error",
    "default_artifacts_root",
    "default_store_url",
    "existing_config_dir",
    "global_config_file",
    "global_config_lock",
    "make_private_dir",
    "read_global_config",
    "read_global_config_shared",
    "update_global_config",
    "write_global_config",
]

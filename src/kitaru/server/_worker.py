"""``kitaru server start --worker``: the server supervises a ``kitaru worker`` child.

The server process never runs flow code (DESIGN.md, security): released sleeps,
finished child flows and due schedule slots are resumed by a separate
``kitaru worker`` process on the same store and artifact settings. This module
starts that process, restarts it when it dies and stops it with the server.
``python -m kitaru.server._worker`` is the child's entry point.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading

from kitaru._parent_death import die_with_parent, parent_env

logger = logging.getLogger("kitaru.server")

#: ``KITARU_SERVER_WORKER=1`` turns the worker on like ``--worker``.
ENV_SERVER_WORKER = "KITARU_SERVER_WORKER"
#: The child checks that this process (the server) is still its parent.
_ENV_PARENT = "KITARU_SERVER_WORKER_PARENT"
#: Restarts wait this long at first, doubling up to ``_MAX_BACKOFF`` while it keeps dying.
_MIN_BACKOFF = 0.5
_MAX_BACKOFF = 30.0
#: A child that lived this long counts as healthy again (the back-off starts over).
_HEALTHY_AFTER = 60.0
_STOP_TIMEOUT = 10.0


def worker_wanted(flag: bool | None) -> bool:
    """``--worker`` / ``--no-worker`` when given, else ``KITARU_SERVER_WORKER``."""
    if flag is not None:
        return flag
    return os.environ.get(ENV_SERVER_WORKER, "").strip().lower() in {"1", "true", "yes", "on"}


class WorkerSupervisor:
    """Keeps one ``kitaru worker`` child running until :meth:`stop`."""

    def __init__(self, store_url: str, artifacts_root: str, poll_interval: float = 1.0) -> None:
        self._store_url = store_url
        self._artifacts_root = artifacts_root
        self._poll_interval = poll_interval
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._process: subprocess.Popen[bytes] | None = None
        self._thread: threading.Thread | None = None
        self.starts = 0

    @property
    def pid(self) -> int | None:
        process = self._process
        return None if process is None else process.pid

    def start(self) -> None:
        self._spawn()
        self._thread = threading.Thread(target=self._watch, name="kitaru-worker-watch", daemon=True)
        self._thread.start()

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        # The child uses the store itself: never a login or a server from the environment.
        for name in ("KITARU_SERVER_URL", "KITARU_AUTH_TOKEN", ENV_SERVER_WORKER):
            env.pop(name, None)
        env["KITARU_STORE_URL"] = self._store_url
        env["KITARU_ARTIFACTS_ROOT"] = self._artifacts_root
        env.update(parent_env(_ENV_PARENT))
        return env

    def _spawn(self) -> None:
        with self._lock:
            if self._stopping.is_set():
                return
            # stdout/stderr go where the server's go (its log for `kitaru login`).
            self._process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "kitaru.server._worker",
                    "--poll-interval",
                    str(self._poll_interval),
                ],
                stdin=subprocess.DEVNULL,
                env=self._env(),
            )
            self.starts += 1
            logger.warning("Started kitaru worker (pid %s)", self._process.pid)

    def _watch(self) -> None:
        import time

        backoff = _MIN_BACKOFF
        while not self._stopping.is_set():
            process = self._process
            if process is None:
                return
            started = time.monotonic()
            code = process.wait()
            if self._stopping.is_set():
                return
            if time.monotonic() - started >= _HEALTHY_AFTER:
                backoff = _MIN_BACKOFF
            sys.stderr.write(
                f"kitaru worker (pid {process.pid}) exited with code {code}; restarting it "
                f"in {backoff:g}s.\n"
            )
            sys.stderr.flush()
            if self._stopping.wait(backoff):
                return
            backoff = min(_MAX_BACKOFF, backoff * 2)
            self._spawn()

    def stop(self) -> None:
        """SIGTERM the child (it finishes what it runs), SIGKILL it after a while."""
        with self._lock:
            self._stopping.set()
            process = self._process
        if process is None or process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(_STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            process.wait()


def main(argv: list[str] | None = None) -> None:
    from kitaru.cli import main as cli_main
    from kitaru.client._remote_config import use_store_only

    # Linux: SIGTERM when the server dies, even by SIGKILL (no orphaned worker).
    die_with_parent(_ENV_PARENT, signal.SIGTERM)
    use_store_only()
    args = ["worker", *(sys.argv[1:] if argv is None else argv)]
    sys.argv = ["kitaru", *args]
    cli_main()


if __name__ == "__main__":
    main()

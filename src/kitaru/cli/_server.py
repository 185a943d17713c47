"""``kitaru server start|stop|status``, ``kitaru login`` and ``kitaru logout``.

``kitaru login`` with no URL starts a server for this machine's store in the
background (pid file and log in ``<config dir>/server/``) and logs in to it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from kitaru.cli._output import OutputFormat, OutputOption, command, redact_url
from kitaru.errors import KitaruStateError, KitaruUsageError

app = typer.Typer(help="Run the Kitaru server (REST API over the store).", no_args_is_help=True)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8383
_START_TIMEOUT = 30.0


def _server_dir() -> Path:
    from kitaru._paths import config_dir, make_private_dir

    path = config_dir() / "server"
    make_private_dir(path)
    return path


def _pid_file() -> Path:
    return _server_dir() / "server.pid"


def _read_pid() -> dict[str, Any] | None:
    try:
        data = json.loads(_pid_file().read_text())
    except (FileNotFoundError, ValueError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("pid"), int) else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _healthy(url: str, timeout: float = 2.0) -> bool:
    try:
        import httpx
    except ImportError:
        raise KitaruUsageError(
            "The Kitaru server needs the 'server' extra: pip install -e '.[server]' from "
            "this repository (or a wheel built from it)."
        ) from None

    try:
        return httpx.get(f"{url}/api/v1/health", timeout=timeout).status_code == 200
    except httpx.HTTPError:
        return False


@app.command("start")
def start(
    host: Annotated[str, typer.Option("--host", help="Address to bind.")] = DEFAULT_HOST,
    port: Annotated[
        int, typer.Option("--port", min=1, max=65535, help="Port to listen on (1-65535).")
    ] = DEFAULT_PORT,
    store_url: Annotated[
        str | None, typer.Option("--store-url", help="The store (default: Kitaru's own).")
    ] = None,
    artifacts_root: Annotated[
        str | None, typer.Option("--artifacts-root", help="Where artifact bytes live.")
    ] = None,
    workers: Annotated[int, typer.Option("--workers", min=1, help="uvicorn processes.")] = 1,
    max_body_bytes: Annotated[
        int | None, typer.Option("--max-body-bytes", min=1, help="Request body cap.")
    ] = None,
    max_page_size: Annotated[
        int | None, typer.Option("--max-page-size", min=1, help="Largest page (limit=).")
    ] = None,
    max_blob_bytes: Annotated[
        int | None,
        typer.Option("--max-blob-bytes", min=1, help="Artifact upload cap of runners."),
    ] = None,
    request_timeout: Annotated[
        int | None,
        typer.Option(
            "--request-timeout", min=1, help="Seconds until an answer must start (else 504)."
        ),
    ] = None,
    cors_origin: Annotated[
        list[str] | None,
        typer.Option("--cors-origin", help="Allow browser pages of this origin (repeatable)."),
    ] = None,
    worker: Annotated[
        bool | None,
        typer.Option(
            "--worker/--no-worker",
            help="Also run a `kitaru worker` child process on the same store (restarted if "
            "it dies, stopped with the server): resumes released sleeps, finished child "
            "flows and due schedules. Default: KITARU_SERVER_WORKER=1 turns it on.",
            show_default=False,
        ),
    ] = None,
    output: OutputOption = OutputFormat.TEXT,
) -> None:
    """Run the server in the foreground (Ctrl-C stops it). Binds to 127.0.0.1 by default.

    On the first start of a store without any API key, prints an admin key once. The
    server never runs flow code itself; with --worker it supervises a separate
    `kitaru worker` process that does.
    """
    with command("server start", output) as out:
        try:
            import uvicorn
        except ImportError:
            raise KitaruUsageError(
                "The Kitaru server needs the 'server' extra: pip install "
                "'kitaru[server]' from this repository (or a wheel built from it)."
            ) from None
        from kitaru._backend import forget_backends, get_backend
        from kitaru.client._remote_config import use_store_only
        from kitaru.server import _settings
        from kitaru.server._accounts import ensure_admin_key

        if store_url is not None:
            os.environ["KITARU_STORE_URL"] = store_url
        if os.environ.get("KITARU_STORE_URL", "").startswith("kitaru+"):
            raise KitaruUsageError(
                "A Kitaru server serves a database store (SQLite or PostgreSQL), not another "
                "server: pass --store-url with the database URL."
            )
        if artifacts_root is not None:
            os.environ["KITARU_ARTIFACTS_ROOT"] = artifacts_root
        for env_name, value in (
            (_settings.ENV_MAX_BODY, max_body_bytes),
            (_settings.ENV_MAX_PAGE, max_page_size),
            (_settings.ENV_MAX_BLOB, max_blob_bytes),
            (_settings.ENV_REQUEST_TIMEOUT, request_timeout),
        ):
            if value is not None:
                os.environ[env_name] = str(value)
        if cors_origin:
            os.environ[_settings.ENV_CORS] = ",".join(cors_origin)
        _check_can_listen(host, port)  # before a first admin key is made and printed
        use_store_only()
        forget_backends()
        backend = get_backend()  # opens (and migrates) the store before serving
        raw = ensure_admin_key(backend.store)
        url = f"http://{host}:{port}"
        data = {
            "url": url,
            "store_url": redact_url(backend.store.url),
            "artifacts_root": backend.artifacts_root,
            "admin_key": raw,
        }
        if raw is not None:
            if out.json:
                out.item(data, lambda c: None)
            else:
                out.say("No API key existed: created service account 'admin' with this key")
                out.say("(shown only now; `kitaru login URL --api-key KEY` uses it):")
                out.console.print(raw, markup=False, highlight=False)
        out.note(f"Kitaru server on {url} (store {redact_url(backend.store.url)}); Ctrl-C stops.")
        sys.stdout.flush()
        from kitaru.server._worker import WorkerSupervisor, worker_wanted

        supervisor: WorkerSupervisor | None = None
        if worker_wanted(worker):
            supervisor = WorkerSupervisor(backend.store.url, str(backend.artifacts_root))
            supervisor.start()
            # uvicorn re-raises SIGTERM after its shutdown: exit through `finally` then.
            signal.signal(signal.SIGTERM, _exit_on_sigterm)
        try:
            _serve(uvicorn, host, port, workers)
        finally:
            if supervisor is not None:
                supervisor.stop()


def _check_can_listen(host: str, port: int) -> None:
    """A typed error now, rather than uvicorn's own message and exit code later."""
    import errno
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (OSError, UnicodeError) as exc:
        raise KitaruUsageError(
            f"Cannot serve on {host}:{port}: {host!r} is not an address or host name this "
            f"machine resolves ({getattr(exc, 'strerror', None) or exc}). Pass --host an IP "
            "address of this machine (127.0.0.1 for this machine only, 0.0.0.0 for all)."
        ) from None
    try:
        family, kind, proto, _name, address = infos[0]
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does
            probe.bind(address)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        if exc.errno == errno.EADDRNOTAVAIL:
            raise KitaruUsageError(
                f"Cannot serve on {host}:{port}: {reason}: {host} is not an address of this "
                "machine. Pass --host one of its addresses (127.0.0.1 for this machine only, "
                "0.0.0.0 for all)."
            ) from None
        raise KitaruUsageError(
            f"Cannot serve on {host}:{port}: {reason}. Another process may be listening "
            "there (`kitaru server status` shows a background Kitaru server); choose another "
            "--port, or another --host."
        ) from None


def _exit_on_sigterm(signum: int, frame: Any) -> None:
    del signum, frame
    raise SystemExit(143)


def _serve(uvicorn: Any, host: str, port: int, workers: int) -> None:
    uvicorn.run(
        "kitaru.server:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level="warning",
        timeout_keep_alive=30,
        # Open SSE streams never end by themselves: do not wait for them on shutdown.
        timeout_graceful_shutdown=5,
    )


def start_background(port: int) -> tuple[str, int]:
    """Start ``kitaru server start`` detached; returns its URL and pid once it answers."""
    found = _read_pid()
    if found is not None and _alive(found["pid"]):
        url = str(found["url"])
        if _healthy(url):
            return url, int(found["pid"])
    log_path = _server_dir() / "server.log"
    url = f"http://{DEFAULT_HOST}:{port}"
    if _healthy(url, timeout=0.5):
        raise KitaruStateError(
            f"Something else answers on {url} already; pass --port to use another port."
        )
    with open(log_path, "ab") as log:
        os.chmod(log_path, 0o600)
        process = subprocess.Popen(
            # --worker: the local server resumes released sleeps and fires schedules too.
            [
                sys.executable,
                "-m",
                "kitaru.cli",
                "server",
                "start",
                "--port",
                str(port),
                "--worker",
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
    from kitaru.client._remote_config import store_only
    from kitaru.config import resolve_store_url

    with store_only():
        served = resolve_store_url()  # what the child serves: it inherits this environment
    _pid_file().write_text(
        json.dumps({"pid": process.pid, "url": url, "port": port, "store_url": served})
    )
    os.chmod(_pid_file(), 0o600)
    deadline = time.monotonic() + _START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = log_path.read_text(errors="replace")[-2000:]
            raise KitaruStateError(
                f"The background server exited at once (code {process.returncode}); its log "
                f"{log_path} ends with:\n{tail}"
            )
        if _healthy(url, timeout=0.5):
            return url, process.pid
        time.sleep(0.1)
    raise KitaruStateError(
        f"The background server did not answer on {url} within {_START_TIMEOUT:.0f} s; see "
        f"{log_path}."
    )


@app.command("stop")
def stop(output: OutputOption = OutputFormat.TEXT) -> None:
    """Stop the background server `kitaru login` started."""
    with command("server stop", output) as out:
        found = _read_pid()
        stopped = False
        if found is not None and _alive(found["pid"]):
            os.kill(found["pid"], signal.SIGTERM)
            deadline = time.monotonic() + 10
            while _alive(found["pid"]) and time.monotonic() < deadline:
                _reap(found["pid"])
                time.sleep(0.05)
            stopped = True
        _pid_file().unlink(missing_ok=True)
        data = {"stopped": stopped, "pid": None if found is None else found["pid"]}
        out.item(
            data,
            lambda c: c.print(
                "Stopped the background server." if stopped else "No background server runs."
            ),
        )


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


@app.command("status")
def status(output: OutputOption = OutputFormat.TEXT) -> None:
    """Whether the background server runs, and where."""
    with command("server status", output) as out:
        found = _read_pid()
        running = found is not None and _alive(found["pid"])
        url = None if found is None else found.get("url")
        healthy = bool(running and url and _healthy(str(url)))
        data = {
            "running": running,
            "healthy": healthy,
            "pid": found["pid"] if running and found else None,
            "url": url if running else None,
            "log": str(_server_dir() / "server.log"),
        }

        def render(console: Console) -> None:
            if running:
                state = "answering" if healthy else "not answering"
                console.print(f"Background server {data['pid']} on {url} ({state}).")
            else:
                console.print("No background server runs (`kitaru login` starts one).")

        out.item(data, render)


def _local_key() -> str:
    """A read-write key for this machine's own login (the first admin key if none exists)."""
    import socket

    from kitaru._backend import get_backend
    from kitaru.client._remote_config import store_only
    from kitaru.server._accounts import ADMIN_ACCOUNT, create_key, ensure_admin_key, list_keys

    with store_only():  # the local store, even when this machine is logged in to its server
        store = get_backend().store
    raw = ensure_admin_key(store)
    if raw is not None:
        return raw
    taken = {k.name for k in list_keys(store, ADMIN_ACCOUNT)}
    base = f"login-{socket.gethostname()}"[:200]
    name, counter = base, 1
    while name in taken:
        counter += 1
        name = f"{base}-{counter}"
    _key, raw = create_key(store, ADMIN_ACCOUNT, name, "runner")
    return raw


def login(
    server: Annotated[
        str | None, typer.Argument(help="Server URL; none: start a local one.")
    ] = None,
    api_key: Annotated[str | None, typer.Option("--api-key", help="The API key.")] = None,
    port: Annotated[
        int, typer.Option("--port", min=1, max=65535, help="Port of the local server.")
    ] = DEFAULT_PORT,
    refresh: Annotated[
        bool, typer.Option("--refresh", help="Check the key again and save it anew (always done).")
    ] = False,
    project: Annotated[
        str | None,
        typer.Option("--project", help="Not supported: a Kitaru server serves one store."),
    ] = None,
    no_verify_ssl: Annotated[
        bool, typer.Option("--no-verify-ssl", help="Do not check the server's TLS certificate.")
    ] = False,
    ssl_ca_cert: Annotated[
        str | None,
        typer.Option(
            "--ssl-ca-cert", help="CA bundle (PEM file) to check the server's certificate with."
        ),
    ] = None,
    timeout: Annotated[
        float | None,
        typer.Option(
            "--timeout", help="Seconds to wait for each answer of the server (default 30)."
        ),
    ] = None,
    output: OutputOption = OutputFormat.TEXT,
) -> None:
    """Log this machine in to a Kitaru server (or start one for the local store)."""
    del refresh  # every login checks the key and saves it anew
    with command("login", output) as out:
        verify, seconds = _tls_and_timeout(project, no_verify_ssl, ssl_ca_cert, timeout)
        from kitaru.client._remote import check_login
        from kitaru.client._remote_config import normalize_url, save_credentials

        started: int | None = None
        if server is None:
            if api_key is not None:
                raise KitaruUsageError(
                    "--api-key goes with a server URL: kitaru login URL --api-key KEY."
                )
            key = _local_key()
            url, started = start_background(port)
        else:
            url = normalize_url(server)
            if not api_key:
                raise KitaruUsageError(
                    f"Logging in to {url} needs an API key: kitaru login {url} --api-key KEY "
                    "(the server prints an admin key on its first start)."
                )
            key = api_key
        version = check_login(url, key, verify=verify, timeout=seconds or 30.0)
        path = save_credentials(url, key, verify=verify, timeout=seconds)
        data = {"url": url, "server_version": version, "credentials": str(path), "pid": started}

        def render(console: Console) -> None:
            if started is not None:
                console.print(f"Started a local Kitaru server (pid {started}) on {escape(url)}.")
            console.print(f"Logged in to {escape(url)} (Kitaru {escape(version)}).")

        out.item(data, render)


def _tls_and_timeout(
    project: str | None, no_verify_ssl: bool, ssl_ca_cert: str | None, timeout: float | None
) -> tuple[bool | str, float | None]:
    """``login``'s connection options, checked: (verify, timeout)."""
    from kitaru.errors import KitaruFeatureNotAvailableError

    if project is not None:
        raise KitaruFeatureNotAvailableError(
            "kitaru login --project is not supported: a Kitaru server serves one store."
        )
    if no_verify_ssl and ssl_ca_cert:
        raise KitaruUsageError("Give --no-verify-ssl or --ssl-ca-cert, not both.")
    if timeout is not None and not timeout > 0:
        raise KitaruUsageError(f"--timeout must be seconds > 0, got {timeout}.")
    if ssl_ca_cert:
        import ssl

        path = Path(ssl_ca_cert).expanduser()
        if not path.is_file():
            raise KitaruUsageError(
                f"--ssl-ca-cert {ssl_ca_cert}: no such file; give the path of a PEM CA bundle."
            )
        try:
            ssl.create_default_context(cafile=str(path))
        except (ssl.SSLError, OSError, ValueError) as exc:
            raise KitaruUsageError(
                f"--ssl-ca-cert {ssl_ca_cert} is not a PEM CA bundle ({exc}); give the "
                "certificate(s) of the authority that signed the server's certificate."
            ) from None
        return str(path.resolve()), timeout
    return (not no_verify_ssl), timeout


def logout(output: OutputOption = OutputFormat.TEXT) -> None:
    """Forget the saved login; Kitaru uses its store directly again."""
    with command("logout", output) as out:
        from kitaru.client._remote_config import forget_credentials

        removed = forget_credentials()
        out.item(
            {"logged_out": removed},
            lambda c: c.print("Logged out." if removed else "Not logged in."),
        )


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="server")
    root.command("login")(login)
    root.command("logout")(logout)

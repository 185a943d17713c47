"""Requests per second and latency of the Kitaru server's read API.

Usage::

    .venv/bin/python bench/server.py [--seconds S] [--clients N] [--executions N]
                                     [--postgres-url URL] [--keep]

Starts ``kitaru server start`` (one uvicorn worker) on a free loopback port over a
fresh store in a temporary directory (SQLite, or a fresh PostgreSQL schema with
``--postgres-url`` / ``$KITARU_TEST_POSTGRES_URL``), records ``--executions``
small executions, then measures for ``--seconds`` each:

- ``get``: ``GET /api/v1/executions/{id}`` from one keep-alive client (req/s, p50/p99);
- ``list``: ``GET /api/v1/executions?limit=50`` from one client (p50/p99);
- ``get`` from ``--clients`` concurrent keep-alive clients (total req/s, p50/p99);
- the cost of a no-op checkpoint in a flow of ``--checkpoints`` of them, on the store
  directly and through the server (``KITARU_STORE_URL=kitaru+http://...``).

Reporting only: nothing here asserts on time; errors are counted and printed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def pct(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100.0 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def start_server() -> tuple[str, subprocess.Popen[bytes]]:
    """``kitaru server start`` on a free loopback port (this environment's store), once healthy."""
    import httpx

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    process = subprocess.Popen(
        [sys.executable, "-m", "kitaru.cli", "server", "start", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{url}/api/v1/health").status_code == 200:
                return url, process
        except httpx.HTTPError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError("the Kitaru server did not start")
        time.sleep(0.1)


def run_for(seconds: float, call: Callable[[], Any]) -> tuple[list[float], int]:
    samples: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        try:
            call()
        except Exception:
            errors += 1
            continue
        samples.append(time.perf_counter() - start)
    return samples, errors


def report(label: str, samples: list[float], seconds: float, errors: int) -> None:
    if not samples:
        print(f"{label:<38} no successful requests ({errors} errors)")
        return
    rate = len(samples) / seconds
    print(
        f"{label:<38} {rate:8.0f} req/s   p50 {statistics.median(samples) * 1000:6.2f} ms   "
        f"p99 {pct(samples, 99) * 1000:6.2f} ms   errors {errors}"
    )


def checkpoint_costs(flows: Any, url: str, key: str, n: int, kind: str) -> None:
    """One flow of ``n`` no-op checkpoints on the store directly, then through the server."""
    from kitaru._backend import forget_backends

    def per_checkpoint() -> float:
        flows.many.run(5).wait()  # warm up (imports, connections)
        start = time.perf_counter()
        assert flows.many.run(n).wait() == n
        return (time.perf_counter() - start) / n

    direct = per_checkpoint()
    store_url = os.environ["KITARU_STORE_URL"]
    os.environ["KITARU_STORE_URL"] = f"kitaru+{url}"
    os.environ["KITARU_AUTH_TOKEN"] = key
    forget_backends()
    try:
        remote = per_checkpoint()
    finally:
        os.environ["KITARU_STORE_URL"] = store_url
        del os.environ["KITARU_AUTH_TOKEN"]
        forget_backends()
    print(
        f"{'no-op checkpoint, ' + kind + ' store directly':<38} {direct * 1000:8.2f} ms\n"
        f"{'no-op checkpoint, through the server':<38} {remote * 1000:8.2f} ms "
        f"({remote / direct:.1f}x; kitaru+http, one request per checkpoint)"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--executions", type=int, default=200)
    parser.add_argument("--checkpoints", type=int, default=300)
    parser.add_argument("--postgres-url", default=os.environ.get("KITARU_TEST_POSTGRES_URL"))
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()

    for name in list(os.environ):
        if name.startswith("KITARU_"):
            del os.environ[name]
    tmp = Path(tempfile.mkdtemp(prefix="kitaru-bench-server-"))
    home = tmp / "home"
    home.mkdir()
    os.environ["KITARU_CONFIG_PATH"] = str(home)
    schema = None
    admin = None
    if args.postgres_url:
        import sqlalchemy as sa

        schema = f"kb_{uuid.uuid4().hex[:12]}"
        admin = sa.create_engine(args.postgres_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
        sep = "&" if "?" in args.postgres_url else "?"
        store_url = f"{args.postgres_url}{sep}options=-csearch_path%3D{schema}"
    else:
        store_url = f"sqlite:///{home / 'store.db'}"
    os.environ["KITARU_STORE_URL"] = store_url
    sys.path.insert(0, str(tmp))
    (tmp / "bench_server_flows.py").write_text(
        "from kitaru import checkpoint, flow\n\n"
        "@checkpoint(cache=False)\ndef step(x: int) -> int:\n    return x + 1\n\n"
        "@flow(cache=False)\ndef small(x: int) -> int:\n    return step(step(x))\n\n"
        "@flow(cache=False)\ndef many(n: int) -> int:\n"
        "    total = 0\n    for i in range(n):\n        total = step(total)\n    return total\n"
    )
    process = None
    try:
        import bench_server_flows  # type: ignore[import-not-found]
        import httpx

        from kitaru._backend import get_backend
        from kitaru.server._accounts import create_account, create_key

        store = get_backend().store
        create_account(store, "bench")
        _key, raw = create_key(store, "bench", "bench", "read")
        _key, runner_raw = create_key(store, "bench", "runner", "runner")
        ids = [bench_server_flows.small.run(i) for i in range(args.executions)]
        for handle in ids:
            handle.wait()
        exec_ids = [h.exec_id for h in ids]
        url, process = start_server()
        headers = {"Authorization": f"Bearer {raw}"}
        kind = "PostgreSQL" if schema else "SQLite"
        print(f"Kitaru server, 1 uvicorn worker, {kind} store, {len(exec_ids)} executions")

        client = httpx.Client(base_url=f"{url}/api/v1", headers=headers)
        counter = iter(range(10**9))

        def get() -> None:
            exec_id = exec_ids[next(counter) % len(exec_ids)]
            client.get(f"/executions/{exec_id}").raise_for_status()

        def page() -> None:
            client.get("/executions", params={"limit": 50}).raise_for_status()

        run_for(0.5, get)  # warm up
        samples, errors = run_for(args.seconds, get)
        report("get, 1 client", samples, args.seconds, errors)
        samples, errors = run_for(args.seconds, page)
        report("list limit=50, 1 client", samples, args.seconds, errors)

        results: list[tuple[list[float], int]] = []

        def worker() -> None:
            own = httpx.Client(base_url=f"{url}/api/v1", headers=headers)
            local = iter(range(10**9))

            def call() -> None:
                exec_id = exec_ids[next(local) % len(exec_ids)]
                own.get(f"/executions/{exec_id}").raise_for_status()

            results.append(run_for(args.seconds, call))

        threads = [threading.Thread(target=worker) for _ in range(args.clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        merged = [s for r in results for s in r[0]]
        report(
            f"get, {args.clients} concurrent clients",
            merged,
            args.seconds,
            sum(r[1] for r in results),
        )
        checkpoint_costs(bench_server_flows, url, runner_raw, args.checkpoints, kind)
        return 0
    finally:
        if process is not None:
            process.terminate()
            process.wait(timeout=15)
        if admin is not None and schema is not None:
            from kitaru._backend import forget_backends

            forget_backends()
            with admin.connect() as conn:
                conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
            admin.dispose()
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

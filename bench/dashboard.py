"""How fast the dashboard is with a big store, in headless Chromium.

Usage::

    .venv/bin/python bench/dashboard.py [--executions N] [--calls N] [--rounds N] [--keep]

Starts ``kitaru server start`` on a free loopback port over a fresh SQLite store in a
temporary directory and fills it with ``--executions`` executions (200 real runs of a
small flow, the rest copies of their rows with new ids and spread creation times),
plus one real execution of ``--calls`` checkpoint calls (sequential calls, a fan-out
of 8 and a retried call). Then, in Debian's Chromium (``/usr/bin/chromium``, driven
by Playwright), it measures (median of ``--rounds``):

- executions page: navigation to the first 50 rows shown; a status filter applied;
  the next page; a text search (a LIKE over all rows);
- execution page of the big execution: navigation to all timeline rows shown, and the
  timeline alone (build + layout, ``timeline()`` called in the page on fetched data).

Reporting only: nothing here asserts on time.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
FLOWS = """
from kitaru import checkpoint, flow

_seen = set()

@checkpoint(cache=False)
def step(x: int) -> int:
    return x + 1

@checkpoint(retries=1, cache=False)
def flaky(x: int) -> int:
    if x not in _seen:
        _seen.add(x)
        raise RuntimeError("first attempt fails")
    return x

@flow(cache=False)
def small(x: int) -> int:
    return step(step(x))

@flow(cache=False)
def big(n: int) -> int:
    total = flaky(0)
    futures = [step.submit(i) for i in range(8)]
    total += sum(f.result() for f in futures)
    for _ in range(n - 9):
        total = step(total)
    return total
"""


def _copy_executions(store: Any, count: int) -> None:
    """Make ``count`` more executions by copying the rows of the real ones."""
    import sqlalchemy as sa

    from kitaru._store import schema as t

    with store.engine.begin() as conn:
        rows = [dict(r._mapping) for r in conn.execute(sa.select(t.executions))]
        calls = {}
        for r in conn.execute(sa.select(t.checkpoint_calls)):
            calls.setdefault(r.exec_id, []).append(dict(r._mapping))
        statuses = ["completed", "completed", "completed", "failed", "cancelled"]
        now = time.time()
        batch_rows: list[dict[str, Any]] = []
        batch_calls: list[dict[str, Any]] = []
        for i in range(count):
            source = rows[i % len(rows)]
            new_id = str(uuid.uuid4())
            created = now - 86400 * 30 * (i / max(count, 1)) - 60
            batch_rows.append(
                {
                    **source,
                    "id": new_id,
                    "status": statuses[i % len(statuses)],
                    "created_at": created,
                    "started_at": created,
                    "ended_at": created + 0.05,
                    "flow_name": f"{source['flow_name']}_{i % 7}",
                }
            )
            for call in calls.get(source["id"], []):
                batch_calls.append({**call, "exec_id": new_id})
            if len(batch_rows) >= 2000:
                conn.execute(sa.insert(t.executions), batch_rows)
                conn.execute(sa.insert(t.checkpoint_calls), batch_calls)
                batch_rows, batch_calls = [], []
        if batch_rows:
            conn.execute(sa.insert(t.executions), batch_rows)
            conn.execute(sa.insert(t.checkpoint_calls), batch_calls)


def _median_ms(samples: list[float]) -> str:
    return f"{statistics.median(samples) * 1000:8.0f} ms  (min {min(samples) * 1000:.0f})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--executions", type=int, default=10_000)
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    if not Path(CHROMIUM).exists():
        print("needs Chromium at /usr/bin/chromium: apt-get install -y chromium", file=sys.stderr)
        return 1

    for name in list(os.environ):
        if name.startswith("KITARU_"):
            del os.environ[name]
    tmp = Path(tempfile.mkdtemp(prefix="kitaru-bench-dashboard-"))
    home = tmp / "home"
    home.mkdir()
    os.environ["KITARU_CONFIG_PATH"] = str(home)
    os.environ["KITARU_RETRY_BACKOFF"] = "0.01"
    store_url = f"sqlite:///{home / 'store.db'}"
    os.environ["KITARU_STORE_URL"] = store_url
    sys.path.insert(0, str(tmp))
    (tmp / "bench_dashboard_flows.py").write_text(FLOWS)
    process = None
    try:
        import bench_dashboard_flows as flows  # type: ignore[import-not-found]
        import httpx
        from playwright.sync_api import sync_playwright

        from kitaru._backend import forget_backends, get_backend
        from kitaru.server._accounts import create_account, create_key

        store = get_backend().store
        create_account(store, "bench")
        _key, raw = create_key(store, "bench", "bench", "write")
        started = time.perf_counter()
        real = min(200, args.executions)
        for i in range(real):
            flows.small.run(i).wait()
        big = flows.big.run(args.calls)
        big.wait()
        _copy_executions(store, args.executions - real)
        forget_backends()
        print(
            f"store: {args.executions} executions + 1 of {args.calls} calls, "
            f"filled in {time.perf_counter() - started:.1f} s",
            file=sys.stderr,
        )
        sys.path.insert(0, str(REPO))
        from bench.server import start_server

        url, process = start_server()

        results: dict[str, list[float]] = {}

        def measure(name: str, seconds: float) -> None:
            results.setdefault(name, []).append(seconds)

        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.set_default_timeout(60_000)
            page.goto(f"{url}/#/login")
            page.evaluate("key => sessionStorage.setItem('kitaru.apiKey', key)", raw)
            rows = page.locator("#executions tbody tr")
            for _ in range(args.rounds):
                t = time.perf_counter()
                page.goto(f"{url}/#/executions")
                page.reload()
                rows.nth(49).wait_for()
                measure("executions page: first 50 rows shown", time.perf_counter() - t)

                t = time.perf_counter()
                page.get_by_label("Status").select_option("failed")
                page.wait_for_function(
                    "() => [...document.querySelectorAll('#executions tbody tr')]"
                    ".every(r => r.dataset.status === 'failed') && "
                    "document.querySelectorAll('#executions tbody tr').length === 50"
                )
                measure("executions page: status filter applied", time.perf_counter() - t)

                first = rows.first.get_attribute("data-exec")
                t = time.perf_counter()
                page.locator("#next-page").click()
                page.wait_for_function(
                    "id => document.querySelector('#executions tbody tr')?.dataset.exec !== id",
                    arg=first,
                )
                measure("executions page: next page", time.perf_counter() - t)

                page.get_by_label("Status").select_option("")
                t = time.perf_counter()
                page.get_by_label("Search").fill("small_3")
                page.wait_for_function(
                    "() => { const r = [...document.querySelectorAll('#executions tbody tr')];"
                    " return r.length > 0 && r.every(x => x.textContent.includes('small_3')); }"
                )
                # The search input waits 300 ms for typing to stop; that is not server time.
                measure(
                    "executions page: text search (incl. 300 ms debounce)",
                    time.perf_counter() - t,
                )

                t = time.perf_counter()
                page.goto(f"{url}/#/executions/{big.exec_id}")
                page.locator("#timeline .tl-row").nth(args.calls - 1).wait_for()
                measure(
                    f"execution page: {args.calls}-call timeline shown", time.perf_counter() - t
                )
                ms = page.evaluate(
                    """async (id) => {
                        const { timeline } = await import('/dashboard/js/timeline.js');
                        const { api } = await import('/dashboard/js/api.js');
                        const execution = await api('/executions/' + id);
                        const host = document.createElement('div');
                        document.body.appendChild(host);
                        const t0 = performance.now();
                        host.appendChild(timeline(execution, () => {}));
                        host.getBoundingClientRect();  // force style and layout
                        document.body.offsetHeight;
                        const t1 = performance.now();
                        host.remove();
                        return t1 - t0;
                    }""",
                    big.exec_id,
                )
                measure(f"timeline of {args.calls} calls: build + layout", ms / 1000)
            browser.close()
        with httpx.Client(
            base_url=f"{url}/api/v1", headers={"Authorization": f"Bearer {raw}"}
        ) as client:
            for label, params in [
                ("API list, first page", {"limit": 50}),
                ("API list, status filter", {"limit": 50, "status": "failed"}),
                ("API list, text search", {"limit": 50, "q": "small_3"}),
            ]:
                for _ in range(5):
                    t = time.perf_counter()
                    client.get("/executions", params=params).raise_for_status()
                    measure(label, time.perf_counter() - t)
            for _ in range(3):
                t = time.perf_counter()
                client.get(f"/executions/{big.exec_id}").raise_for_status()
                measure(f"API get of the {args.calls}-call execution", time.perf_counter() - t)
        print(f"Kitaru dashboard, headless Chromium, SQLite, {args.executions} executions")
        for name, samples in results.items():
            print(f"{name:<52} {_median_ms(samples)}")
    finally:
        if process is not None:
            process.terminate()
            process.wait(timeout=15)
        if args.keep:
            print(f"kept {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Many sleeping executions held with no thread, and how late a worker wakes them.

Usage::

    .venv/bin/python bench/durable_time.py [-n 1000] [--spread 10] [--quick]
                                           [--postgres-url URL] [--json PATH]

Per store (the embedded one always; PostgreSQL with ``--postgres-url`` or
``$KITARU_TEST_POSTGRES_URL``, in a fresh schema dropped at the end):

1. Start N executions whose body is ``kitaru.sleep(...)`` then one checkpoint.
   The release threshold is 0, so each runner releases its execution at the
   sleep: once all are released the report shows how many are ``waiting`` with
   no lease, and how many runner threads are left (the claim: none).
2. Start one ``kitaru worker`` loop (a thread of this process, 1 s polls). The
   wake-up times are spread evenly over ``--spread`` seconds, starting a few
   seconds after the last start. Lateness of one execution = the time its
   post-sleep checkpoint ran minus its recorded wake-up time. Reported: p50, p99,
   max, and how long the whole batch took.

Reporting only: nothing here asserts on time; the exit status is 1 only when a
section crashed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
import traceback
import uuid
from pathlib import Path
from typing import Any

POSTGRES_URL_ENV = "KITARU_TEST_POSTGRES_URL"


def progress(message: str) -> None:
    print(f"  .. {message}", file=sys.stderr, flush=True)


def pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100.0 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def _exec_threads() -> int:
    return sum(1 for t in threading.enumerate() if t.name.startswith("kitaru-exec-"))


def _until(check: Any, what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.05)


def measure(n: int, spread: float) -> dict[str, Any]:
    import kitaru
    from kitaru._backend import get_backend
    from kitaru._store import ExecutionStatus
    from kitaru.worker import run_worker

    @kitaru.checkpoint(cache=False)
    def woke() -> float:
        return time.time()

    @kitaru.flow(cache=False)
    def sleeper(wake_at: float) -> float:
        # The duration counts from the first time the body gets here; a resume
        # keeps the recorded wake-up time.
        kitaru.sleep(max(0.0, wake_at - time.time()))
        return float(woke())

    store = get_backend().store
    lead = 3.0 + n * 0.01  # time to start (and release) all of them first
    first_wake = time.time() + lead
    started = time.perf_counter()
    handles = [sleeper.run(first_wake + spread * i / max(1, n - 1)) for i in range(n)]
    ids = [h.exec_id for h in handles]

    def all_released() -> bool:
        waiting = store.list_executions(status=[ExecutionStatus.WAITING.value], limit=n + 1)
        return len(waiting) == n and all(r.lease_owner is None for r in waiting)

    _until(all_released, "every execution to be released at its sleep", timeout=lead + 60)
    start_seconds = time.perf_counter() - started
    _until(lambda: _exec_threads() == 0, "the runner threads to end", timeout=30)
    held = {
        "executions": n,
        "waiting_without_lease": len(
            store.list_executions(status=[ExecutionStatus.WAITING.value], limit=n + 1)
        ),
        "runner_threads_left": _exec_threads(),
        "process_threads": threading.active_count(),
        "seconds_to_start_and_release_all": start_seconds,
        "released_before_first_wake": time.time() < first_wake,
    }
    progress(f"{n} sleeping, {held['runner_threads_left']} runner threads; starting a worker")

    stop = threading.Event()
    worker = threading.Thread(
        target=run_worker, kwargs={"poll_interval": 1.0, "stop": stop}, daemon=True
    )
    worker.start()
    try:
        _until(
            lambda: (
                len(store.list_executions(status=[ExecutionStatus.COMPLETED.value], limit=n + 1))
                == n
            ),
            "every execution to wake and complete",
            timeout=lead + spread + 120,
        )
    finally:
        stop.set()
        worker.join(timeout=30)
    batch = time.time() - first_wake
    suspensions = store.suspensions_of(ids)
    late: list[float] = []
    for handle in handles:
        (sleep,) = suspensions[handle.exec_id]
        assert sleep.wake_at is not None
        late.append(float(handle.get()) - sleep.wake_at)
    lateness_ms = [x * 1000 for x in late]
    return {
        "held": held,
        "lateness_ms": {
            "p50": pct(lateness_ms, 50),
            "p99": pct(lateness_ms, 99),
            "max": max(lateness_ms),
            "mean": statistics.fmean(lateness_ms),
            "min": min(lateness_ms),
        },
        "wake_spread_seconds": spread,
        "seconds_from_first_wake_to_all_done": batch,
        "wakes_per_second_asked": n / spread if spread else None,
        "wakes_per_second_done": n / batch if batch > 0 else None,
    }


def _isolated(home: Path, store_url: str | None) -> None:
    for name in list(os.environ):
        if name.startswith("KITARU_"):
            del os.environ[name]
    os.environ["KITARU_CONFIG_PATH"] = str(home)
    os.environ["KITARU_SLEEP_RELEASE_AFTER"] = "0"
    if store_url:
        os.environ["KITARU_STORE_URL"] = store_url
    from kitaru._backend import forget_backends
    from kitaru.config import reset_configuration

    reset_configuration()
    forget_backends()


@contextlib.contextmanager
def _postgres_schema(base: str) -> Any:
    import sqlalchemy as sa

    schema = f"kt_bench_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    separator = "&" if "?" in base else "?"
    try:
        yield f"{base}{separator}options=-csearch_path%3D{schema}"
    finally:
        from kitaru._backend import forget_backends

        forget_backends()
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        admin.dispose()


def _report(name: str, result: dict[str, Any]) -> None:
    held, late = result["held"], result["lateness_ms"]
    print(f"\n{name}")
    print(
        f"  held: {held['waiting_without_lease']} of {held['executions']} executions waiting "
        f"with no lease, {held['runner_threads_left']} runner threads left "
        f"({held['process_threads']} threads in the process); started and released in "
        f"{held['seconds_to_start_and_release_all']:.1f} s"
    )
    print(
        f"  wake-up lateness (post-sleep checkpoint - recorded wake-up, wake-ups spread over "
        f"{result['wake_spread_seconds']:g} s, one worker): p50 {late['p50']:.0f} ms, "
        f"p99 {late['p99']:.0f} ms, max {late['max']:.0f} ms; all done "
        f"{result['seconds_from_first_wake_to_all_done']:.1f} s after the first wake-up "
        f"({result['wakes_per_second_done']:.0f} resumes/s)"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=1000, help="sleeping executions (1000)")
    parser.add_argument("--spread", type=float, default=10.0, help="wake-ups over S seconds")
    parser.add_argument("--quick", action="store_true", help="100 executions over 3 s")
    parser.add_argument("--postgres-url", default=os.environ.get(POSTGRES_URL_ENV))
    parser.add_argument("--json", type=Path, help="also write the figures as JSON")
    args = parser.parse_args()
    n, spread = (100, 3.0) if args.quick else (args.n, args.spread)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    results: dict[str, Any] = {}
    failed = False
    root = Path(tempfile.mkdtemp(prefix="kitaru-bench-time-"))
    try:
        sections: list[tuple[str, str | None]] = [("sqlite", None)]
        if args.postgres_url:
            sections.append(("postgres", args.postgres_url))
        for name, base in sections:
            progress(f"{name}: {n} sleeping executions")
            try:
                if base is None:
                    _isolated(root / name, None)
                    results[name] = measure(n, spread)
                else:
                    with _postgres_schema(base) as url:
                        _isolated(root / name, url)
                        results[name] = measure(n, spread)
                _report(name, results[name])
            except Exception:
                failed = True
                traceback.print_exc()
                print(f"\n{name}: ERROR")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

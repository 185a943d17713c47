"""Time from ``executions.input()`` to the next checkpoint starting, after a ``kitaru.wait()``.

Usage::

    .venv/bin/python bench/waits.py [--quick] [-n N] [--postgres-url URL] [--json PATH]
                                    [--dir DIR] [--keep]

Two cases, per store (see DESIGN.md, "Performance budget": under 100 ms for both
on the embedded store):

- **live runner**: the flow's runner is still blocked in ``kitaru.wait()`` (within
  its ``timeout``); ``input()`` in the same process wakes it through an event.
- **released runner**: the wait timed out (``timeout=0``), the runner let go and
  no thread holds the execution; ``input()`` validates and records the answer,
  then resumes the execution in this process: claim, reload the flow and its
  inputs, re-run the body (the checkpoint before the wait is reused, the wait
  returns the stored answer).

One sample is ``perf_counter()`` at the first line of the checkpoint after the
wait minus ``perf_counter()`` just before ``input()`` is called. Also shown: how
long the ``input()`` call itself takes to return.

The embedded store is always measured; PostgreSQL when ``--postgres-url`` or
``$KITARU_TEST_POSTGRES_URL`` is given (in a fresh schema, dropped at the end).
Reporting only: a figure above its target prints ``ABOVE TARGET``, the exit status
stays 0 unless a section crashed.
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
import time
import traceback
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

TARGET_MS = 100.0
POSTGRES_URL_ENV = "KITARU_TEST_POSTGRES_URL"
CASES = ("live", "released")
CASE_LABELS = {
    "live": "live runner (woken in-process)",
    "released": "released runner (resumed by input)",
}

#: perf_counter() at the start of the checkpoint after the wait, by tag.
STARTS: dict[str, float] = {}


def progress(message: str) -> None:
    print(f"  .. {message}", file=sys.stderr, flush=True)


def pct(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100.0 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def summary(values: Sequence[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "median": statistics.median(values),
        "p95": pct(values, 95),
        "mean": statistics.fmean(values),
        "min": min(values),
        "max": max(values),
    }


def fmt_ms(value: float) -> str:
    if value >= 100:
        return f"{value:.0f} ms"
    if value >= 10:
        return f"{value:.1f} ms"
    return f"{value:.2f} ms"


def define_flows(kitaru: Any) -> SimpleNamespace:
    @kitaru.checkpoint
    def prepare(tag: str) -> str:
        return tag

    @kitaru.checkpoint
    def proceed(tag: str, answer: int) -> int:
        STARTS[tag] = time.perf_counter()
        return answer

    @kitaru.flow(cache=False)
    def gated(tag: str, timeout: float) -> int:
        prepare(tag)
        answer = kitaru.wait(schema=int, name="go", question="Proceed?", timeout=timeout)
        return int(proceed(tag, answer))

    return SimpleNamespace(gated=gated)


def _until(check: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.001)


def one_sample(flows: SimpleNamespace, case: str) -> tuple[float, float]:
    """(ms from input() to the next checkpoint starting, ms the input() call took)."""
    from kitaru._backend import get_backend
    from kitaru._runtime.driver import get_live
    from kitaru._store import ExecutionStatus
    from kitaru.client import KitaruClient

    store = get_backend().store
    client = KitaruClient()
    tag = uuid.uuid4().hex
    handle = flows.gated.run(tag, 60.0 if case == "live" else 0.0)
    exec_id = handle.exec_id
    if case == "live":
        _until(
            lambda: store.get_status(exec_id) is ExecutionStatus.WAITING,
            "the execution to wait",
        )
        time.sleep(0.01)  # let the runner get into its blocking wait
        assert get_live(exec_id) is not None, "the live runner let go early"
    else:
        _until(lambda: get_live(exec_id) is None, "the runner to let go")
        record = store.get_execution(exec_id)
        assert record is not None
        assert record.status is ExecutionStatus.WAITING
        assert record.lease_owner is None
    t0 = time.perf_counter()
    client.executions.input(exec_id, value=7)
    returned = time.perf_counter()
    if handle.wait(timeout=60) != 7:
        raise RuntimeError(f"execution {exec_id} returned the wrong answer")
    return (STARTS.pop(tag) - t0) * 1000.0, (returned - t0) * 1000.0


def bench_store(
    kitaru: Any, flows: SimpleNamespace, store_url: str, artifacts_root: str, n: int, warmup: int
) -> dict[str, Any]:
    kitaru.configure(store_url=store_url, artifacts_root=artifacts_root)
    for case in CASES:
        for _ in range(warmup):
            one_sample(flows, case)
    samples: dict[str, list[tuple[float, float]]] = {case: [] for case in CASES}
    for _ in range(n):  # interleaved, so that drift affects both cases alike
        for case in CASES:
            samples[case].append(one_sample(flows, case))
    out: dict[str, Any] = {}
    for case in CASES:
        out[case] = {
            "to_next_checkpoint_ms": summary([s[0] for s in samples[case]]),
            "input_call_ms": summary([s[1] for s in samples[case]]),
        }
    return out


def with_search_path(base: str, schema: str) -> str:
    separator = "&" if "?" in base else "?"
    return f"{base}{separator}options=-csearch_path%3D{schema}"


def bench_postgres(
    kitaru: Any, flows: SimpleNamespace, base_url: str, artifacts_root: str, n: int, warmup: int
) -> dict[str, Any]:
    import sqlalchemy as sa

    from kitaru._backend import forget_backends
    from kitaru._store.engine import normalize_url

    base_url = normalize_url(base_url)
    schema = f"kt_bench_waits_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(base_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
        result = bench_store(
            kitaru, flows, with_search_path(base_url, schema), artifacts_root, n, warmup
        )
        result["url"] = sa.make_url(base_url).render_as_string(hide_password=True)
        result["schema"] = schema
        return result
    finally:
        with contextlib.suppress(Exception):
            forget_backends()
        try:
            with admin.connect() as conn:
                conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        except Exception as exc:  # do not hide the original error
            print(f"warning: could not drop schema {schema}: {exc}", file=sys.stderr)
        admin.dispose()


def print_store(title: str, result: dict[str, Any], *, with_target: bool) -> None:
    print(f"\n{title}")
    if "error" in result:
        print(f"  ERROR: {result['error']}")
        return
    if "skipped" in result:
        print(f"  skipped: {result['skipped']}")
        return
    header = (
        f"  {'case':<38}{'n':>5}{'median':>11}{'p95':>11}{'max':>11}"
        f"{'input() returns':>17}  {'target':<8}"
    )
    print(header)
    print("  " + "-" * (len(header) - 2))
    for case in CASES:
        fig = result[case]["to_next_checkpoint_ms"]
        call = result[case]["input_call_ms"]
        if with_target:
            ok = fig["median"] < TARGET_MS and fig["p95"] < TARGET_MS
            target = f"< {TARGET_MS:.0f} ms  {'PASS' if ok else 'ABOVE TARGET'}"
        else:
            target = "(report)"
        print(
            f"  {CASE_LABELS[case]:<38}{fig['n']:>5}{fmt_ms(fig['median']):>11}"
            f"{fmt_ms(fig['p95']):>11}{fmt_ms(fig['max']):>11}"
            f"{fmt_ms(call['median']):>17}  {target}"
        )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Time from executions.input() to the next checkpoint, live and released."
    )
    parser.add_argument("--quick", action="store_true", help="few samples: a smoke test")
    parser.add_argument("-n", type=int, default=None, help="samples per case (default 100)")
    parser.add_argument(
        "--postgres-url",
        default=None,
        help=f"also measure on this PostgreSQL server (default: ${POSTGRES_URL_ENV})",
    )
    parser.add_argument("--json", default=None, help="also write the figures to this file")
    parser.add_argument("--dir", default=None, help="where to create the temporary store")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    n = args.n or (15 if args.quick else 100)
    warmup = 3 if args.quick else 10
    postgres_url = args.postgres_url or os.environ.get(POSTGRES_URL_ENV) or None

    # A clean, isolated Kitaru: no user settings, state in a fresh temporary directory.
    for key in [k for k in os.environ if k.startswith("KITARU_")]:
        del os.environ[key]
    workdir = Path(tempfile.mkdtemp(prefix="kitaru-bench-waits-", dir=args.dir)).absolute()
    home = workdir / "home"
    home.mkdir()
    os.environ["KITARU_CONFIG_PATH"] = str(home)
    os.chdir(workdir)
    artifacts_root = str(workdir / "artifacts")

    import kitaru

    flows = define_flows(kitaru)
    results: dict[str, Any] = {
        "meta": {
            "kitaru_version": kitaru.__version__,
            "python": sys.version.split()[0],
            "cpus": os.cpu_count(),
            "samples_per_case": n,
            "warmup_per_case": warmup,
            "workdir": str(workdir),
        }
    }
    failed = False
    try:
        progress(f"embedded store (SQLite), {n} samples per case")
        try:
            results["sqlite"] = bench_store(
                kitaru, flows, f"sqlite:///{workdir / 'store.db'}", artifacts_root, n, warmup
            )
        except Exception as exc:
            failed = True
            traceback.print_exc()
            results["sqlite"] = {"error": f"{type(exc).__name__}: {exc}"}
        if postgres_url:
            progress(f"PostgreSQL, {n} samples per case")
            try:
                results["postgres"] = bench_postgres(
                    kitaru, flows, postgres_url, artifacts_root, n, warmup
                )
            except Exception as exc:
                failed = True
                traceback.print_exc()
                results["postgres"] = {"error": f"{type(exc).__name__}: {exc}"}
        else:
            results["postgres"] = {"skipped": f"no --postgres-url and ${POSTGRES_URL_ENV} is unset"}
    finally:
        if not args.keep:
            os.chdir(Path.home())
            shutil.rmtree(workdir, ignore_errors=True)

    meta = results["meta"]
    print(
        f"kitaru.wait() resume latency: input() -> next checkpoint starting "
        f"(kitaru {meta['kitaru_version']}, Python {meta['python']}, {meta['cpus']} CPUs, "
        f"{n} samples per case after {warmup} warm-up)"
    )
    print_store(
        "embedded store (SQLite WAL, synchronous=FULL)", results["sqlite"], with_target=True
    )
    pg_title = "PostgreSQL" + (
        f" ({results['postgres']['url']})" if "url" in results["postgres"] else ""
    )
    print_store(pg_title, results["postgres"], with_target=False)
    print(
        "\nlive: same runner thread, woken by an in-process event; released: input() "
        "records the answer, then claims and re-runs the body in this process."
    )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2), encoding="utf-8")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

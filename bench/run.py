"""Kitaru performance benchmarks: measures the budget in DESIGN.md and prints ratios.

Usage::

    .venv/bin/python bench/run.py [--quick] [--json PATH] [--postgres-url URL]
                                  [--rounds N] [--dir DIR] [--profile] [--keep]

What it measures (all in one run, see bench/README.md):

1. a raw SQLite WAL commit (``synchronous=FULL``) on the same disk as the store;
2. the cost of one no-op checkpoint (flows of 1, 10, 100, 1000 calls minus an
   empty flow), with the default ``cache=True`` and with ``@flow(cache=False)``;
3. checkpoint cost / raw commit, from interleaved rounds (fsync timing drifts);
4. ``import kitaru`` time in fresh interpreters;
5. empty flow ``.run().wait()`` latency;
6. the checkpoint measurement on PostgreSQL when a URL is given.

Reporting only: a number above its target prints ``ABOVE TARGET`` but never
changes the exit status. The exit status is 1 only if a section crashed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import shlex
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

# Targets from DESIGN.md, "Performance budget".
TARGET_CKPT_RATIO = 1.5  # no-op checkpoint <= 1.5 x raw SQLite WAL commit
TARGET_IMPORT_MS = 150.0
TARGET_EMPTY_FLOW_MS = 5.0

POSTGRES_URL_ENV = "KITARU_TEST_POSTGRES_URL"


# =============================================================================
# Plan: how much to measure
# =============================================================================


@dataclass(frozen=True)
class Plan:
    name: str
    rounds: int
    raw_commits_per_phase: int
    # N -> runs per round; N=0 is the empty-flow baseline of the same flow.
    reps: dict[int, int]
    import_runs: int
    empty_flow_runs: int
    pg_rounds: int
    # Seconds after which no new round starts (the first round always runs).
    budget_s: float

    @property
    def sizes(self) -> list[int]:
        return sorted(n for n in self.reps if n > 0)

    @property
    def head_n(self) -> int:
        """The N whose per-checkpoint cost is the headline (most amortised, least noise)."""
        return max(self.sizes)


FULL = Plan(
    name="full",
    rounds=5,
    raw_commits_per_phase=200,
    reps={0: 15, 1: 15, 10: 8, 100: 3, 1000: 1},
    import_runs=7,
    empty_flow_runs=200,
    pg_rounds=3,
    budget_s=170.0,
)
QUICK = Plan(
    name="quick",
    rounds=2,
    raw_commits_per_phase=100,
    reps={0: 8, 1: 8, 10: 4, 100: 2},
    import_runs=3,
    empty_flow_runs=50,
    pg_rounds=1,
    budget_s=25.0,
)


@dataclass(frozen=True)
class Variant:
    key: str
    label: str
    flow_attr: str  # attribute of the flows namespace
    fresh_inputs: bool  # call noop(base + i) with a new base each run (all cache misses)


VARIANTS = (
    Variant("cache_default", "cache=True (default), same inputs -> cache hits", "loop", False),
    Variant("cache_off", "@flow(cache=False), live run", "loop_nocache", False),
    Variant("cache_miss", "cache=True, fresh inputs -> cache misses, live", "loop", True),
)


# =============================================================================
# Small helpers
# =============================================================================


def ms(seconds: float) -> float:
    return seconds * 1000.0


def pct(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(1, min(len(ordered), round(q / 100.0 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def summary(values: Sequence[float]) -> dict[str, float]:
    """Median, mean, p95, min, max (same unit as the input) and the count."""
    return {
        "n": len(values),
        "median": statistics.median(values),
        "mean": statistics.fmean(values),
        "p95": pct(values, 95),
        "min": min(values),
        "max": max(values),
    }


def fmt_ms(value: float | None, width: int = 9) -> str:
    if value is None or value != value:  # None or NaN
        return "n/a".rjust(width)
    if abs(value) >= 100:
        return f"{value:.0f} ms".rjust(width)
    if abs(value) >= 10:
        return f"{value:.1f} ms".rjust(width)
    return f"{value:.2f} ms".rjust(width)


def verdict(ok: bool) -> str:
    return "PASS" if ok else "ABOVE TARGET"


def progress(message: str) -> None:
    print(f"  .. {message}", file=sys.stderr, flush=True)


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], align: str = "") -> str:
    """A plain-text table; ``align`` holds one 'l'/'r' per column (default: first l, rest r)."""
    cols = len(headers)
    align = align or "l" + "r" * (cols - 1)
    widths = [len(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))

    def line(cells: Sequence[str]) -> str:
        out = []
        for i, cell in enumerate(cells):
            out.append(cell.ljust(widths[i]) if align[i] == "l" else cell.rjust(widths[i]))
        return "  " + "  ".join(out).rstrip()

    sep = "  " + "  ".join("-" * w for w in widths)
    return "\n".join([line(headers), sep, *(line(r) for r in rows)])


# =============================================================================
# Machine information
# =============================================================================


def disk_info(path: Path) -> dict[str, Any]:
    """Device, filesystem type, mount point and (if known) rotational flag of ``path``."""
    info: dict[str, Any] = {"path": str(path)}
    try:
        st = os.stat(path)
        major, minor = os.major(st.st_dev), os.minor(st.st_dev)
        info["dev"] = f"{major}:{minor}"
        best: tuple[int, dict[str, Any]] | None = None
        with open("/proc/self/mountinfo", encoding="utf-8") as handle:
            for raw in handle:
                left, _, right = raw.partition(" - ")
                parts, rparts = left.split(), right.split()
                if len(parts) < 5 or len(rparts) < 2 or parts[2] != info["dev"]:
                    continue
                mount = parts[4].replace("\\040", " ")
                if str(path).startswith(mount) and (best is None or len(mount) > best[0]):
                    best = (
                        len(mount),
                        {"mount_point": mount, "fs_type": rparts[0], "device": rparts[1]},
                    )
        if best is not None:
            info.update(best[1])
        for candidate in (
            f"/sys/dev/block/{major}:{minor}/queue/rotational",
            f"/sys/dev/block/{major}:{minor}/../queue/rotational",
        ):
            with contextlib.suppress(OSError):
                info["rotational"] = Path(candidate).read_text().strip() == "1"
                break
        usage = shutil.disk_usage(path)
        info["free_gb"] = round(usage.free / 1e9, 1)
    except OSError as exc:
        info["error"] = str(exc)
    return info


def cpu_model() -> str | None:
    with contextlib.suppress(OSError):
        for raw in Path("/proc/cpuinfo").read_text().splitlines():
            if raw.lower().startswith("model name"):
                return raw.split(":", 1)[1].strip()
    return platform.processor() or None


def machine_info(store_dir: Path) -> dict[str, Any]:
    import sqlalchemy

    try:
        affinity = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        affinity = None
    return {
        "cpu_count": os.cpu_count(),
        "cpu_affinity": affinity,
        "cpu_model": cpu_model(),
        "load_avg": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "python": platform.python_version(),
        "python_impl": platform.python_implementation(),
        "platform": platform.platform(),
        "sqlite": sqlite3.sqlite_version,
        "sqlalchemy": sqlalchemy.__version__,
        "store_disk": disk_info(store_dir),
    }


# =============================================================================
# 1. Raw SQLite WAL commit
# =============================================================================


class RawSqlite:
    """One connection, WAL + synchronous=FULL, timing BEGIN IMMEDIATE; INSERT; COMMIT."""

    def __init__(self, path: Path) -> None:
        self.conn = sqlite3.connect(path, isolation_level=None)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=FULL")
        self.conn.execute("CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v TEXT NOT NULL)")
        self.journal_mode = self.conn.execute("PRAGMA journal_mode").fetchone()[0]
        self.synchronous = self.conn.execute("PRAGMA synchronous").fetchone()[0]  # 2 = FULL

    def commits(self, count: int) -> list[float]:
        """Seconds per commit."""
        conn = self.conn
        payload = "x" * 32
        out = []
        perf = time.perf_counter
        for _ in range(count):
            t0 = perf()
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("INSERT INTO t (v) VALUES (?)", (payload,))
            conn.execute("COMMIT")
            out.append(perf() - t0)
        return out

    def close(self) -> None:
        self.conn.close()


# =============================================================================
# Kitaru flows
# =============================================================================


def define_flows(kitaru: Any) -> SimpleNamespace:
    """The benchmark's flows; defined after kitaru is imported with the bench config."""

    @kitaru.checkpoint
    def noop(i: int) -> int:
        return i

    @kitaru.flow
    def loop(n: int, base: int = 0) -> int:
        for i in range(n):
            noop(base + i)
        return n

    @kitaru.flow(cache=False)
    def loop_nocache(n: int, base: int = 0) -> int:
        for i in range(n):
            noop(base + i)
        return n

    @kitaru.flow
    def empty() -> None:
        return None

    return SimpleNamespace(noop=noop, loop=loop, loop_nocache=loop_nocache, empty=empty)


class InputCounter:
    """Bases for fresh-input runs: never repeats within one benchmark run."""

    def __init__(self) -> None:
        self.next = 1

    def take(self, n: int) -> int:
        base = self.next * 10_000_000
        self.next += 1
        assert n < 10_000_000
        return base


def timed_run(flow: Any, *args: Any) -> float:
    t0 = time.perf_counter()
    flow.run(*args).wait()
    return time.perf_counter() - t0


def run_variant_round(
    flows: SimpleNamespace, variant: Variant, plan: Plan, counter: InputCounter
) -> dict[int, list[float]]:
    """Flow times (seconds) per N for one round, runs of different N interleaved."""
    flow = getattr(flows, variant.flow_attr)
    times: dict[int, list[float]] = {n: [] for n in plan.reps}
    for rep in range(max(plan.reps.values())):
        for n, count in sorted(plan.reps.items()):
            if rep >= count:
                continue
            base = counter.take(n) if variant.fresh_inputs else 0
            times[n].append(timed_run(flow, n, base))
    return times


def per_checkpoint_costs(times: dict[int, list[float]]) -> dict[int, float]:
    """(median flow time with N - median empty flow time) / N, in ms."""
    empty = statistics.median(times[0])
    return {n: ms((statistics.median(v) - empty) / n) for n, v in times.items() if n > 0}


def warm_up(flows: SimpleNamespace, variant: Variant, plan: Plan, counter: InputCounter) -> None:
    """Open the store, hash the checkpoint's code, and (for the hit variant) fill the cache."""
    flow = getattr(flows, variant.flow_attr)
    for _ in range(3):
        timed_run(flow, 0, 0)
    base = counter.take(plan.head_n) if variant.fresh_inputs else 0
    timed_run(flow, plan.head_n, base)
    timed_run(flow, 1, counter.take(1) if variant.fresh_inputs else 0)


# -- private-API probes (best effort; the benchmark works without them) -------


def store_engine() -> Any | None:
    try:
        from kitaru._backend import get_backend

        return get_backend().store.engine
    except Exception:
        return None


def get_store_of(engine: Any) -> Any | None:
    try:
        from kitaru._backend import get_backend

        store = get_backend().store
    except Exception:
        return None
    return store if store.engine is engine else None


@contextlib.contextmanager
def count_db_activity(engine: Any) -> Iterator[dict[str, int]]:
    """Count statements, transaction begins/commits and pool checkouts on ``engine``."""
    import sqlalchemy as sa

    counts = {"statements": 0, "begins": 0, "commits": 0, "checkouts": 0}

    def on_exec(*_args: Any, **_kw: Any) -> None:
        counts["statements"] += 1

    def on_begin(*_args: Any) -> None:
        counts["begins"] += 1

    def on_commit(*_args: Any) -> None:
        counts["commits"] += 1

    def on_checkout(*_args: Any) -> None:
        counts["checkouts"] += 1

    listeners: list[tuple[Any, str, Callable[..., None]]] = [
        (engine, "before_cursor_execute", on_exec),
        (engine, "begin", on_begin),
        (engine, "commit", on_commit),
        (engine.pool, "checkout", on_checkout),
    ]
    for target, name, fn in listeners:
        sa.event.listen(target, name, fn)
    try:
        yield counts
    finally:
        for target, name, fn in listeners:
            sa.event.remove(target, name, fn)


class PgWireTrace:
    """Counts PostgreSQL round trips with libpq's protocol trace (``PQtrace``).

    Every pooled psycopg connection of ``engine`` gets traced to a file the first
    time it is checked out. A round trip is a batch of frontend messages followed
    by the server's answer, so that is what is counted: each run of ``F`` lines
    in a connection's trace. It is independent of how Kitaru issues its SQL
    (transactions, autocommit, pool pings). SQLAlchemy pings before the checkout
    event fires, so call :meth:`restart` after a warm-up run before counting.
    """

    def __init__(self, engine: Any, directory: Path) -> None:
        import sqlalchemy as sa

        self._sa = sa
        self._pool = engine.pool
        self._dir = directory
        self._conns: dict[int, Any] = {}
        self._files: list[tuple[Any, Path, int]] = []
        sa.event.listen(self._pool, "checkout", self._on_checkout)

    def _on_checkout(self, dbapi_connection: Any, *_args: Any) -> None:
        conn = getattr(dbapi_connection, "driver_connection", dbapi_connection)
        pgconn = getattr(conn, "pgconn", None)
        if pgconn is None or id(pgconn) in self._conns:
            return
        self._conns[id(pgconn)] = pgconn
        self._trace(pgconn)

    def _trace(self, pgconn: Any) -> None:
        path = self._dir / f"pgtrace-{uuid.uuid4().hex}.txt"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        pgconn.trace(fd)
        self._files.append((pgconn, path, fd))

    def _collect(self) -> int:
        trips = 0
        for pgconn, path, fd in self._files:
            with contextlib.suppress(Exception):
                pgconn.untrace()  # flushes libpq's buffer
            os.close(fd)
            previous = ""
            for raw in path.read_text(errors="replace").splitlines():
                parts = raw.split("\t")
                direction = parts[1] if len(parts) > 2 else ""
                if direction == "F" and previous != "F":
                    trips += 1
                if direction:
                    previous = direction
            path.unlink()
        self._files = []
        return trips

    def restart(self) -> int:
        """Round trips since the last (re)start; start counting afresh."""
        trips = self._collect()
        for pgconn in self._conns.values():
            with contextlib.suppress(Exception):
                self._trace(pgconn)
        return trips

    def close(self) -> int:
        self._sa.event.remove(self._pool, "checkout", self._on_checkout)
        return self._collect()


def db_activity_per_checkpoint(
    flows: SimpleNamespace, variant: Variant, counter: InputCounter, n: int = 50
) -> dict[str, Any] | None:
    """Statements/commits/checkouts one checkpoint adds (flow of n minus empty flow).

    On PostgreSQL also the round trips, from libpq's protocol trace.
    """
    engine = store_engine()
    if engine is None:
        return None
    flow = getattr(flows, variant.flow_attr)
    tracer: PgWireTrace | None = None
    trace_dir: Path | None = None
    if engine.dialect.name == "postgresql":
        trace_dir = Path(tempfile.mkdtemp(prefix="kitaru-bench-pgtrace-"))
        try:
            tracer = PgWireTrace(engine, trace_dir)
            flow.run(2, counter.take(2) if variant.fresh_inputs else 0).wait()
            # The store's direct connections (checkpoint writes, cache lookups) were
            # checked out before the tracer existed: trace them too.
            direct = getattr(get_store_of(engine), "_pg_direct", None)
            for conn in direct.idle_connections() if direct is not None else ():
                tracer._on_checkout(conn)
            tracer.restart()
        except Exception as exc:
            progress(f"libpq trace unavailable ({type(exc).__name__}: {exc})")
            if tracer is not None:
                with contextlib.suppress(Exception):
                    tracer.close()
            tracer = None
    try:
        with count_db_activity(engine) as empty_counts:
            flow.run(0, 0).wait()
        empty_trips = tracer.restart() if tracer is not None else None
        base = counter.take(n) if variant.fresh_inputs else 0
        with count_db_activity(engine) as full_counts:
            flow.run(n, base).wait()
        full_trips = tracer.close() if tracer is not None else None
        tracer = None
    finally:
        if tracer is not None:
            with contextlib.suppress(Exception):
                tracer.close()
        if trace_dir is not None:
            shutil.rmtree(trace_dir, ignore_errors=True)
    per: dict[str, Any] = {k: (full_counts[k] - empty_counts[k]) / n for k in full_counts}
    per["pool_pre_ping"] = bool(getattr(engine.pool, "_pre_ping", False))
    per["empty_flow"] = dict(empty_counts)
    if empty_trips is not None and full_trips is not None:
        per["round_trips"] = (full_trips - empty_trips) / n
        per["empty_flow"]["round_trips"] = empty_trips
    return per


def cache_history_rows(flows: SimpleNamespace) -> int | None:
    """Calls of ``noop`` in the store that carry a cache key: what a cache lookup searches.

    Shown so that a lookup whose cost grows with the store's history stands out.
    """
    try:
        import sqlalchemy as sa

        from kitaru._backend import get_backend
        from kitaru._store import schema

        calls = schema.checkpoint_calls.c
        prefix = flows.noop.cache_prefix()  # hex digest + ":"; ";" sorts right after ":"
        query = (
            sa.select(sa.func.count())
            .select_from(schema.checkpoint_calls)
            .where(calls.cache_key >= prefix, calls.cache_key < prefix[:-1] + ";")
        )
        with get_backend().store.engine.connect() as conn:
            return int(conn.execute(query).scalar_one())
    except Exception:
        return None


def call_statuses(flows: SimpleNamespace, variant: Variant, counter: InputCounter) -> Any:
    """How the calls of a 10-call run were recorded (checks what each variant measures)."""
    try:
        from kitaru._backend import get_backend

        flow = getattr(flows, variant.flow_attr)
        base = counter.take(10) if variant.fresh_inputs else 0
        handle = flow.run(10, base)
        handle.wait()
        calls = get_backend().store.calls(handle.exec_id)
        out: dict[str, int] = {}
        for call in calls:
            out[str(call.status.value)] = out.get(str(call.status.value), 0) + 1
        return out
    except Exception as exc:
        return f"unavailable ({type(exc).__name__}: {exc})"


# =============================================================================
# 2 + 3. Checkpoint cost vs raw commit, interleaved rounds
# =============================================================================


def bench_checkpoints(
    kitaru: Any,
    flows: SimpleNamespace,
    plan: Plan,
    rounds: int,
    stores: dict[str, str],
    artifacts_root: str,
    raw_phase: Callable[[], dict[str, list[float]]],
    counter: InputCounter,
    label: str,
    deadline: float | None = None,
) -> dict[str, Any]:
    """Rounds of: raw commits, each variant's flows, raw commits again.

    ``raw_phase`` returns named lists of seconds per commit; the first name is
    the headline baseline. No round starts if it would end after ``deadline``
    (a ``time.monotonic()`` value), judged by the previous round's duration.
    """
    for variant in VARIANTS:
        kitaru.configure(store_url=stores[variant.key], artifacts_root=artifacts_root)
        progress(f"{label}: warm-up {variant.key}")
        warm_up(flows, variant, plan, counter)

    raw_samples: dict[str, list[float]] = {}
    per_round: list[dict[str, Any]] = []
    costs: dict[str, dict[int, list[float]]] = {
        v.key: {n: [] for n in plan.sizes} for v in VARIANTS
    }
    empty_ms: dict[str, list[float]] = {v.key: [] for v in VARIANTS}
    stopped_early = False
    last_round_s = 0.0
    for r in range(rounds):
        if r and deadline is not None and time.monotonic() + last_round_s > deadline:
            stopped_early = True
            progress(f"{label}: time budget reached, stopping after {r} round(s)")
            break
        progress(f"{label}: round {r + 1}/{rounds}")
        round_start = time.monotonic()
        before = raw_phase()
        entry: dict[str, Any] = {"round": r + 1, "variants": {}}
        for variant in VARIANTS:
            kitaru.configure(store_url=stores[variant.key], artifacts_root=artifacts_root)
            times = run_variant_round(flows, variant, plan, counter)
            round_costs = per_checkpoint_costs(times)
            for n, cost in round_costs.items():
                costs[variant.key][n].append(cost)
            empty_ms[variant.key].append(ms(statistics.median(times[0])))
            entry["variants"][variant.key] = {
                "per_checkpoint_ms": {str(n): c for n, c in round_costs.items()},
                "empty_flow_median_ms": ms(statistics.median(times[0])),
                "flow_median_ms": {str(n): ms(statistics.median(v)) for n, v in times.items()},
            }
        after = raw_phase()
        for name in before:
            raw_samples.setdefault(name, []).extend(before[name] + after[name])
        entry["raw_median_ms"] = {
            name: {
                "before": ms(statistics.median(before[name])),
                "after": ms(statistics.median(after[name])),
            }
            for name in before
        }
        per_round.append(entry)
        last_round_s = time.monotonic() - round_start

    raw = {
        name: {k: ms(v) if k != "n" else v for k, v in summary(s).items()}
        for name, s in raw_samples.items()
    }
    head_raw_name = next(iter(raw))
    raw_median = raw[head_raw_name]["median"]
    raw_mean = raw[head_raw_name]["mean"]
    variants_out: dict[str, Any] = {}
    for variant in VARIANTS:
        kitaru.configure(store_url=stores[variant.key], artifacts_root=artifacts_root)
        by_n = {str(n): statistics.median(c) for n, c in costs[variant.key].items()}
        head = by_n[str(plan.head_n)]
        round_ratios = []
        for entry in per_round:
            rr = entry["raw_median_ms"][head_raw_name]
            baseline = (rr["before"] + rr["after"]) / 2
            cost = entry["variants"][variant.key]["per_checkpoint_ms"][str(plan.head_n)]
            round_ratios.append(cost / baseline)
        variants_out[variant.key] = {
            "label": variant.label,
            "per_checkpoint_ms_by_n": by_n,
            "per_checkpoint_ms_by_n_all_rounds": {str(n): c for n, c in costs[variant.key].items()},
            "head_n": plan.head_n,
            "per_checkpoint_ms": head,
            "empty_flow_median_ms": statistics.median(empty_ms[variant.key]),
            "ratio_to_raw_median": head / raw_median,
            "ratio_to_raw_mean": head / raw_mean,
            "per_round_ratio": {
                "median": statistics.median(round_ratios),
                "min": min(round_ratios),
                "max": max(round_ratios),
            },
            "db_per_checkpoint": db_activity_per_checkpoint(flows, variant, counter),
            "call_statuses_of_10_call_run": call_statuses(flows, variant, counter),
            "cache_history_rows_at_end": cache_history_rows(flows),
        }
    return {
        "rounds": len(per_round),
        "rounds_planned": rounds,
        "stopped_early_for_time_budget": stopped_early,
        "raw_commit_ms": raw,
        "raw_headline": head_raw_name,
        "variants": variants_out,
        "per_round": per_round,
    }


# =============================================================================
# 4. import kitaru
# =============================================================================


def bench_import(plan: Plan, env: dict[str, str], cwd: Path) -> dict[str, Any]:
    def once(code: str) -> float:
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], env=env, cwd=cwd, check=True)
        return time.perf_counter() - t0

    def in_process() -> float:
        code = "import time; t = time.perf_counter(); import kitaru; print(time.perf_counter() - t)"
        proc = subprocess.run(
            [sys.executable, "-c", code], env=env, cwd=cwd, check=True, capture_output=True
        )
        return float(proc.stdout.decode().strip())

    # Cold start: the first .run().wait() of an empty flow in a fresh process,
    # timed after the import (whatever the import deferred is paid here).
    script = cwd / "cold_start.py"
    script.write_text(
        "import time\n"
        "import kitaru\n\n\n"
        "@kitaru.flow\n"
        "def empty() -> None:\n"
        "    return None\n\n\n"
        "t = time.perf_counter()\n"
        "empty.run().wait()\n"
        "print(time.perf_counter() - t)\n"
    )

    def cold_start() -> float:
        proc = subprocess.run(
            [sys.executable, str(script)], env=env, cwd=cwd, check=True, capture_output=True
        )
        return float(proc.stdout.decode().strip().splitlines()[-1])

    once("import kitaru")  # warm the page cache and .pyc files
    cold_start()  # creates and migrates the default store once
    base, full, inner, cold = [], [], [], []
    for _ in range(plan.import_runs):
        base.append(once("pass"))
        full.append(once("import kitaru"))
        inner.append(in_process())
        cold.append(cold_start())
    diffs = [ms(f - b) for f, b in zip(full, base, strict=True)]
    result: dict[str, Any] = {
        "runs": plan.import_runs,
        "python_pass_median_ms": ms(statistics.median(base)),
        "python_import_kitaru_median_ms": ms(statistics.median(full)),
        "import_ms": ms(statistics.median(full) - statistics.median(base)),
        "import_ms_pairwise_median": statistics.median(diffs),
        # Timed inside the interpreter: excludes start-up and teardown.
        "in_process_import_ms": ms(statistics.median(inner)),
        "cold_first_empty_flow_ms": ms(statistics.median(cold)),
    }
    # Which top-level packages the import pulls in, by cumulative time (-X importtime).
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import kitaru"],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        check=True,
    )
    tops: dict[str, int] = {}
    pattern = re.compile(r"import time:\s+(\d+)\s+\|\s+(\d+)\s+\|(\s*)(\S+)")
    for raw in proc.stderr.splitlines():
        m = pattern.match(raw)
        if not m:
            continue
        module = m.group(4)
        if "." in module:
            continue
        tops[module] = max(tops.get(module, 0), int(m.group(2)))
    heaviest = sorted(tops.items(), key=lambda kv: kv[1], reverse=True)
    result["heaviest_top_level_ms"] = {
        name: us / 1000 for name, us in heaviest[:10] if name != "kitaru"
    }
    result["kitaru_cumulative_ms_importtime"] = tops.get("kitaru", 0) / 1000
    return result


# =============================================================================
# 5. Empty flow latency
# =============================================================================


def bench_empty_flow(
    kitaru: Any, flows: SimpleNamespace, plan: Plan, store_url: str, artifacts_root: str
) -> dict[str, Any]:
    kitaru.configure(store_url=store_url, artifacts_root=artifacts_root)
    for _ in range(10):
        timed_run(flows.empty)
    samples = [ms(timed_run(flows.empty)) for _ in range(plan.empty_flow_runs)]
    out: dict[str, Any] = summary(samples)
    engine = store_engine()
    if engine is not None:
        with count_db_activity(engine) as counts:
            flows.empty.run().wait()
        out["db_activity"] = dict(counts)
    return out


# =============================================================================
# 6. PostgreSQL
# =============================================================================


class RawPostgres:
    """Durable single-row inserts on the server, two ways.

    ``autocommit``: one ``INSERT`` on an autocommit connection = one round trip and
    one WAL flush, the least a durable write can cost. ``begin_commit``: BEGIN,
    INSERT, COMMIT through SQLAlchemy on a kept connection (three round trips).
    """

    def __init__(self, url: str) -> None:
        import sqlalchemy as sa

        self.sa = sa
        self.engine_auto = sa.create_engine(url, isolation_level="AUTOCOMMIT", pool_size=1)
        self.engine_tx = sa.create_engine(url, pool_size=1)
        with self.engine_auto.connect() as conn:
            conn.exec_driver_sql(
                "CREATE TABLE IF NOT EXISTS kt_bench_raw "
                "(id BIGSERIAL PRIMARY KEY, v TEXT NOT NULL)"
            )
            self.settings = {
                name: conn.exec_driver_sql(f"SHOW {name}").scalar()
                for name in ("server_version", "synchronous_commit", "fsync", "wal_sync_method")
            }
        self.auto_conn = self.engine_auto.raw_connection()
        self.tx_conn = self.engine_tx.connect()
        self.insert = sa.text("INSERT INTO kt_bench_raw (v) VALUES (:v)")

    def phase(self, count: int) -> dict[str, list[float]]:
        perf = time.perf_counter
        payload = "x" * 32
        auto: list[float] = []
        cursor = self.auto_conn.cursor()
        for _ in range(count):
            t0 = perf()
            cursor.execute("INSERT INTO kt_bench_raw (v) VALUES (%s)", (payload,))
            auto.append(perf() - t0)
        cursor.close()
        tx: list[float] = []
        for _ in range(count):
            t0 = perf()
            self.tx_conn.execute(self.insert, {"v": payload})
            self.tx_conn.commit()
            tx.append(perf() - t0)
        return {"autocommit_insert": auto, "begin_insert_commit": tx}

    def close(self) -> None:
        self.auto_conn.close()
        self.tx_conn.close()
        self.engine_auto.dispose()
        self.engine_tx.dispose()


def with_search_path(base: str, schema: str) -> str:
    separator = "&" if "?" in base else "?"
    return f"{base}{separator}options=-csearch_path%3D{schema}"


def bench_postgres(
    kitaru: Any,
    flows: SimpleNamespace,
    plan: Plan,
    rounds: int,
    base_url: str,
    artifacts_root: str,
    counter: InputCounter,
    deadline: float | None,
) -> dict[str, Any]:
    import sqlalchemy as sa

    from kitaru._store.engine import normalize_url  # accepts postgres:// and postgresql://

    base_url = normalize_url(base_url)
    prefix = f"kt_bench_{uuid.uuid4().hex[:10]}"
    schemas = {"raw": f"{prefix}_raw", **{v.key: f"{prefix}_{v.key}" for v in VARIANTS}}
    admin = sa.create_engine(base_url, isolation_level="AUTOCOMMIT")
    raw: RawPostgres | None = None
    try:
        with admin.connect() as conn:
            for schema in schemas.values():
                conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
        raw = RawPostgres(with_search_path(base_url, schemas["raw"]))
        raw.phase(20)  # warm-up
        stores = {v.key: with_search_path(base_url, schemas[v.key]) for v in VARIANTS}
        result = bench_checkpoints(
            kitaru,
            flows,
            plan,
            rounds,
            stores,
            artifacts_root,
            lambda: raw.phase(plan.raw_commits_per_phase // 2),  # type: ignore[union-attr]
            counter,
            "postgres",
            deadline,
        )
        result["server"] = raw.settings
        result["url"] = sa.make_url(base_url).render_as_string(hide_password=True)
        result["schemas"] = list(schemas.values())
        return result
    finally:
        if raw is not None:
            raw.close()
        with contextlib.suppress(Exception):
            from kitaru._backend import forget_backends

            forget_backends()
        try:
            with admin.connect() as conn:
                for schema in schemas.values():
                    conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        except Exception as exc:  # do not hide the original error
            print(f"warning: could not drop schemas {prefix}_*: {exc}", file=sys.stderr)
        admin.dispose()


# =============================================================================
# Optional: cProfile of one flow
# =============================================================================


def profile_checkpoints(flows: SimpleNamespace, kitaru: Any, n: int) -> str:
    """Top functions by own time while a flow runs n no-op checkpoints (cache=False).

    The flow body runs on its own thread, so the profiler is switched on inside it.
    """
    import cProfile
    import io
    import pstats

    prof = cProfile.Profile()

    @kitaru.flow(cache=False)
    def profiled(count: int) -> int:
        prof.enable()
        try:
            for i in range(count):
                flows.noop(i)
        finally:
            prof.disable()
        return count

    profiled.run(n).wait()
    out = io.StringIO()
    stats = pstats.Stats(prof, stream=out)
    stats.sort_stats("tottime").print_stats(18)
    stats.sort_stats("cumulative").print_stats(25)
    return out.getvalue()


# =============================================================================
# Report
# =============================================================================


def print_header(meta: dict[str, Any]) -> None:
    m = meta["machine"]
    disk = m["store_disk"]
    print("Kitaru benchmark")
    print(f"  command : {meta['command']}")
    print(f"  cwd     : {meta['cwd']}")
    print(f"  kitaru  : {meta['kitaru_version']} ({meta['kitaru_path']})")
    print(
        f"  python  : {m['python']} ({m['python_impl']}), SQLite {m['sqlite']}, "
        f"SQLAlchemy {m['sqlalchemy']}"
    )
    print(f"  machine : {m['platform']}")
    print(
        f"  cpus    : {m['cpu_count']} (usable {m['cpu_affinity']}), {m['cpu_model']}; "
        f"load avg {', '.join(f'{x:.2f}' for x in m['load_avg'] or [])}"
    )
    rot = disk.get("rotational")
    print(
        f"  store   : {disk['path']} on {disk.get('device', '?')} ({disk.get('fs_type', '?')}, "
        f"mounted on {disk.get('mount_point', '?')}, dev {disk.get('dev', '?')}, "
        f"kernel says {'rotational' if rot else 'non-rotational' if rot is not None else '?'}, "
        f"{disk.get('free_gb', '?')} GB free)"
    )
    plan = meta["plan"]
    print(
        f"  plan    : {plan['name']}: {meta['rounds']} rounds x "
        f"({plan['raw_commits_per_phase']} raw commits, flows {plan['reps']} "
        f"[N: runs per round], {plan['raw_commits_per_phase']} raw commits)"
    )
    if meta["stripped_env"]:
        print(
            f"  env     : removed from this process (isolation): {', '.join(meta['stripped_env'])}"
        )
    print(f"  postgres: {meta['postgres_source']}")
    print()


def print_checkpoint_section(title: str, res: dict[str, Any], raw_labels: dict[str, str]) -> None:
    print(title)
    raw = res["raw_commit_ms"]
    rows = [
        [
            raw_labels.get(name, name),
            fmt_ms(s["median"]),
            fmt_ms(s["mean"]),
            fmt_ms(s["p95"]),
            fmt_ms(s["min"]),
            str(s["n"]),
        ]
        for name, s in raw.items()
    ]
    print(table(["raw commit", "median", "mean", "p95", "min", "samples"], rows))
    print()

    any_variant = next(iter(res["variants"].values()))
    sizes = list(any_variant["per_checkpoint_ms_by_n"])
    rows = []
    for v in res["variants"].values():
        rows.append(
            [
                v["label"],
                *(fmt_ms(v["per_checkpoint_ms_by_n"][n]) for n in sizes),
                fmt_ms(v["empty_flow_median_ms"]),
            ]
        )
    print(
        "  per-checkpoint cost = (flow with N calls - empty flow) / N; "
        f"median over {res['rounds']} rounds"
        + (
            f" (of {res['rounds_planned']} planned: time budget reached)"
            if res.get("stopped_early_for_time_budget")
            else ""
        )
    )
    print(table(["variant", *(f"N={n}" for n in sizes), "empty flow"], rows))
    small = sizes[0]
    by_key = res["variants"]
    if "cache_off" in by_key and any(
        v["per_checkpoint_ms_by_n"][small]
        > 3 * by_key["cache_off"]["per_checkpoint_ms_by_n"][small]
        for k, v in by_key.items()
        if k != "cache_off"
    ):
        print(
            "  note: at small N, cache=True costs over 3x more per checkpoint than cache=False:\n"
            "  a cost paid once per run is spread over N. If it grows from round to round, it\n"
            "  scales with the store's history ('cache history' below)."
        )
    print()

    head_raw = raw[res["raw_headline"]]
    rows = []
    for v in res["variants"].values():
        pr = v["per_round_ratio"]
        rows.append(
            [
                v["label"],
                fmt_ms(v["per_checkpoint_ms"]),
                f"{v['ratio_to_raw_median']:.2f}x",
                f"{v['ratio_to_raw_mean']:.2f}x",
                f"{pr['min']:.2f}-{pr['max']:.2f}x",
                f"<= {TARGET_CKPT_RATIO}x",
                verdict(v["ratio_to_raw_median"] <= TARGET_CKPT_RATIO),
            ]
        )
    print(
        f"  ratio = checkpoint cost at N={any_variant['head_n']} / raw commit "
        f"({raw_labels.get(res['raw_headline'], res['raw_headline'])}: median "
        f"{head_raw['median']:.3f} ms, mean {head_raw['mean']:.3f} ms)"
    )
    print(
        table(
            ["variant", "ckpt", "/median", "/mean", "per round", "target", "verdict"],
            rows,
            "lrrrrrl",
        )
    )
    print()

    rows = []
    for v in res["variants"].values():
        db = v.get("db_per_checkpoint")
        statuses = v.get("call_statuses_of_10_call_run")
        status_text = (
            ", ".join(f"{k} {c}" for k, c in statuses.items())
            if isinstance(statuses, dict)
            else str(statuses)
        )
        if not db:
            rows.append([v["label"], "n/a", "n/a", "n/a", "n/a", "n/a", status_text])
            continue
        rows.append(
            [
                v["label"],
                f"{db['statements']:.2f}",
                f"{db['commits']:.2f}",
                f"{db['checkouts']:.2f}",
                f"{db['round_trips']:.2f}" if "round_trips" in db else "-",
                "n/a"
                if v.get("cache_history_rows_at_end") is None
                else str(v["cache_history_rows_at_end"]),
                status_text,
            ]
        )
    print("  database work per checkpoint (client side, flow of 50 minus empty flow)")
    print(
        table(
            [
                "variant",
                "statements",
                "commits",
                "checkouts",
                "round trips",
                "cache history",
                "10-call run",
            ],
            rows,
            "lrrrrrl",
        )
    )
    print()

    rows = []
    for entry in res["per_round"]:
        rr = entry["raw_median_ms"][res["raw_headline"]]
        cells = [str(entry["round"]), fmt_ms(rr["before"])]
        for key in res["variants"]:
            cost = entry["variants"][key]["per_checkpoint_ms"][str(any_variant["head_n"])]
            cells.append(fmt_ms(cost))
        cells.append(fmt_ms(rr["after"]))
        rows.append(cells)
    print(f"  per round (medians; checkpoint cost at N={any_variant['head_n']})")
    print(table(["round", "raw before", *res["variants"], "raw after"], rows))
    print()


def print_summary(results: dict[str, Any]) -> None:
    rows = []
    sq = results.get("sqlite")
    if isinstance(sq, dict) and "variants" in sq:
        raw = sq["raw_commit_ms"][sq["raw_headline"]]
        rows.append(
            [
                "raw SQLite WAL commit (FULL), median / mean",
                f"{raw['median']:.3f} / {raw['mean']:.3f} ms",
                "",
                "",
            ]
        )
        for v in sq["variants"].values():
            rows.append(
                [
                    f"no-op checkpoint, {v['label']}",
                    f"{v['per_checkpoint_ms']:.3f} ms = {v['ratio_to_raw_median']:.2f}x raw",
                    f"<= {TARGET_CKPT_RATIO}x",
                    verdict(v["ratio_to_raw_median"] <= TARGET_CKPT_RATIO),
                ]
            )
    imp = results.get("import")
    if isinstance(imp, dict) and "import_ms" in imp:
        rows.append(
            [
                "import kitaru (fresh interpreter, minus `pass`)",
                f"{imp['import_ms']:.1f} ms",
                f"< {TARGET_IMPORT_MS:.0f} ms",
                verdict(imp["import_ms"] < TARGET_IMPORT_MS),
            ]
        )
    ef = results.get("empty_flow")
    if isinstance(ef, dict) and "median" in ef:
        rows.append(
            [
                "empty flow .run().wait(), median / p95",
                f"{ef['median']:.2f} / {ef['p95']:.2f} ms",
                f"< {TARGET_EMPTY_FLOW_MS:.0f} ms",
                verdict(ef["median"] < TARGET_EMPTY_FLOW_MS),
            ]
        )
    pg = results.get("postgres")
    if isinstance(pg, dict) and "variants" in pg:
        raw = pg["raw_commit_ms"][pg["raw_headline"]]
        rows.append(
            [
                "raw PostgreSQL autocommit INSERT, median / mean",
                f"{raw['median']:.3f} / {raw['mean']:.3f} ms",
                "",
                "",
            ]
        )
        for v in pg["variants"].values():
            db = v.get("db_per_checkpoint") or {}
            trips = db.get("round_trips")
            rows.append(
                [
                    f"PostgreSQL checkpoint, {v['label']}",
                    f"{v['per_checkpoint_ms']:.3f} ms = {v['ratio_to_raw_median']:.2f}x raw"
                    + (f", ~{trips:.0f} round trips" if trips is not None else ""),
                    "1 round trip",
                    "PASS" if trips is not None and trips <= 1.01 else "ABOVE TARGET",
                ]
            )
    elif isinstance(pg, dict) and "skipped" in pg:
        rows.append(["PostgreSQL", "skipped", "", ""])
    print("Summary (targets from DESIGN.md 'Performance budget'; reporting only)")
    print(table(["figure", "value", "target", "verdict"], rows, "lrrl"))


def describe_failure(value: Any) -> str:
    if isinstance(value, dict) and "error" in value:
        return f"ERROR (section crashed, traceback on stderr): {value['error']}"
    return str(value)


def print_report(results: dict[str, Any]) -> None:
    print_header(results["meta"])

    imp = results.get("import")
    print("import kitaru (fresh interpreters)")
    if isinstance(imp, dict) and "import_ms" in imp:
        print(
            table(
                ["figure", "value"],
                [
                    ["python -c pass, median", fmt_ms(imp["python_pass_median_ms"])],
                    [
                        "python -c 'import kitaru', median",
                        fmt_ms(imp["python_import_kitaru_median_ms"]),
                    ],
                    [
                        f"import kitaru (difference of medians, {imp['runs']} runs)",
                        fmt_ms(imp["import_ms"]),
                    ],
                    ["  pairwise median of differences", fmt_ms(imp["import_ms_pairwise_median"])],
                    [
                        "  timed inside the interpreter (no teardown)",
                        fmt_ms(imp["in_process_import_ms"]),
                    ],
                    [
                        "  kitaru cumulative per -X importtime",
                        fmt_ms(imp["kitaru_cumulative_ms_importtime"]),
                    ],
                    [
                        "first empty.run().wait() in a fresh process (after import)",
                        fmt_ms(imp["cold_first_empty_flow_ms"]),
                    ],
                ],
            )
        )
        heavy = ", ".join(f"{k} {v:.0f}" for k, v in imp["heaviest_top_level_ms"].items())
        print(f"  heaviest top-level imports (cumulative ms, -X importtime): {heavy}")
    else:
        print(f"  {describe_failure(imp)}")
    print()

    ef = results.get("empty_flow")
    print("empty flow: @flow def empty() -> None; empty.run().wait()")
    if isinstance(ef, dict) and "median" in ef:
        print(
            table(
                ["runs", "median", "mean", "p95", "min", "max"],
                [[str(ef["n"]), *(fmt_ms(ef[k]) for k in ("median", "mean", "p95", "min", "max"))]],
            )
        )
        if "db_activity" in ef:
            db = ef["db_activity"]
            print(
                f"  database work of one empty flow: {db['statements']} statements, "
                f"{db['commits']} commits, {db['checkouts']} pool checkouts"
            )
    else:
        print(f"  {describe_failure(ef)}")
    print()

    sq = results.get("sqlite")
    if isinstance(sq, dict) and "variants" in sq:
        print_checkpoint_section(
            "SQLite (embedded store, WAL, synchronous=FULL)",
            sq,
            {"sqlite": "BEGIN IMMEDIATE; INSERT; COMMIT"},
        )
    else:
        print(f"SQLite checkpoints: {describe_failure(sq)}\n")

    pg = results.get("postgres")
    if isinstance(pg, dict) and "variants" in pg:
        server = pg.get("server", {})
        print_checkpoint_section(
            f"PostgreSQL {server.get('server_version', '?')} at {pg['url']} "
            f"(synchronous_commit={server.get('synchronous_commit')}, "
            f"fsync={server.get('fsync')}, wal_sync_method={server.get('wal_sync_method')})",
            pg,
            {
                "autocommit_insert": "INSERT (autocommit, 1 round trip)",
                "begin_insert_commit": "BEGIN; INSERT; COMMIT (SQLAlchemy)",
            },
        )
    elif isinstance(pg, dict) and "skipped" in pg:
        print(f"PostgreSQL: skipped ({pg['skipped']})\n")
    else:
        print(f"PostgreSQL: {describe_failure(pg)}\n")

    print_summary(results)


# =============================================================================
# Main
# =============================================================================


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Measure Kitaru against its performance budget (DESIGN.md).",
    )
    parser.add_argument(
        "--quick", action="store_true", help="small counts (~20 s), for smoke tests"
    )
    parser.add_argument("--json", metavar="PATH", help="also write every figure as JSON here")
    parser.add_argument(
        "--postgres-url",
        metavar="URL",
        help=f"PostgreSQL server for section 6 (default: ${POSTGRES_URL_ENV})",
    )
    parser.add_argument("--rounds", type=int, help="interleaved rounds (default 5; quick 2)")
    parser.add_argument(
        "--budget",
        type=float,
        metavar="SECONDS",
        help="start no new round after this (default 170; quick 25; 0 = no limit); "
        "the first round of each section always runs",
    )
    parser.add_argument(
        "--dir",
        metavar="DIR",
        help="where to create the temporary store and raw SQLite file (default: system temp)",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="also print a cProfile of 1000 no-op checkpoints (cache=False) on SQLite",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    return parser.parse_args(argv)


def section(results: dict[str, Any], key: str, fn: Callable[[], Any]) -> None:
    try:
        results[key] = fn()
    except Exception as exc:
        traceback.print_exc()
        results[key] = {"error": f"{type(exc).__name__}: {exc}"}
        results["meta"]["errors"].append(key)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    plan = QUICK if args.quick else FULL
    rounds = args.rounds or plan.rounds
    pg_rounds = args.rounds or plan.pg_rounds
    json_path = Path(args.json).absolute() if args.json else None
    postgres_url = args.postgres_url or os.environ.get(POSTGRES_URL_ENV) or None
    if args.postgres_url:
        postgres_source = "from --postgres-url"
    elif postgres_url:
        postgres_source = f"from ${POSTGRES_URL_ENV}"
    else:
        postgres_source = f"not measured (no --postgres-url, ${POSTGRES_URL_ENV} unset)"
    command = shlex.join(getattr(sys, "orig_argv", [sys.executable, *sys.argv]))
    started_in = os.getcwd()

    # A clean, isolated Kitaru: no user settings, state in a fresh temp dir. The
    # store, its artifacts and the raw SQLite file share one directory (one disk).
    stripped = sorted(k for k in os.environ if k.startswith("KITARU_"))
    for key in stripped:
        del os.environ[key]
    workdir = Path(tempfile.mkdtemp(prefix="kitaru-bench-", dir=args.dir)).absolute()
    home = workdir / "home"
    home.mkdir()
    os.environ["KITARU_CONFIG_PATH"] = str(home)
    # No pyproject.toml above a temp dir: [tool.kitaru] of the caller's project
    # cannot change what is measured.
    os.chdir(workdir)
    artifacts_root = str(workdir / "artifacts")

    results: dict[str, Any] = {
        "meta": {
            "command": command,
            "cwd": started_in,
            "workdir": str(workdir),
            "plan": {
                "name": plan.name,
                "raw_commits_per_phase": plan.raw_commits_per_phase,
                "reps": plan.reps,
                "import_runs": plan.import_runs,
                "empty_flow_runs": plan.empty_flow_runs,
            },
            "rounds": rounds,
            "stripped_env": stripped,
            "postgres_source": postgres_source,
            "machine": machine_info(workdir),
            "errors": [],
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
    }
    t_start = time.perf_counter()
    t_start_mono = time.monotonic()
    budget = plan.budget_s if args.budget is None else args.budget
    results["meta"]["budget_s"] = budget
    sub_env = dict(os.environ)
    try:
        progress("import kitaru in fresh interpreters")
        section(results, "import", lambda: bench_import(plan, sub_env, workdir))

        import kitaru

        results["meta"]["kitaru_version"] = kitaru.__version__
        results["meta"]["kitaru_path"] = str(Path(kitaru.__file__).parent)
        flows = define_flows(kitaru)
        counter = InputCounter()

        progress("empty flow latency")
        section(
            results,
            "empty_flow",
            lambda: bench_empty_flow(
                kitaru, flows, plan, f"sqlite:///{workdir / 'empty.db'}", artifacts_root
            ),
        )

        raw = RawSqlite(workdir / "raw.db")
        results["meta"]["raw_sqlite"] = {
            "journal_mode": raw.journal_mode,
            "synchronous": raw.synchronous,
        }
        raw.commits(20)  # create the WAL file, warm the page cache
        # Leave PostgreSQL its share of what remains of the budget.
        deadline = sqlite_deadline = None
        if budget > 0:
            deadline = t_start_mono + budget
            remaining = deadline - time.monotonic()
            sqlite_deadline = deadline - (0.4 * remaining if postgres_url else 0.0)
        stores = {v.key: f"sqlite:///{workdir / f'store-{v.key}.db'}" for v in VARIANTS}
        section(
            results,
            "sqlite",
            lambda: bench_checkpoints(
                kitaru,
                flows,
                plan,
                rounds,
                stores,
                artifacts_root,
                lambda: {"sqlite": raw.commits(plan.raw_commits_per_phase)},
                counter,
                "sqlite",
                sqlite_deadline,
            ),
        )
        raw.close()

        if postgres_url:
            progress("postgres")
            section(
                results,
                "postgres",
                lambda: bench_postgres(
                    kitaru,
                    flows,
                    plan,
                    pg_rounds,
                    postgres_url,
                    artifacts_root,
                    counter,
                    deadline,
                ),
            )
        else:
            results["postgres"] = {
                "skipped": f"no --postgres-url and ${POSTGRES_URL_ENV} is not set"
            }

        if args.profile:
            progress("cProfile")
            kitaru.configure(
                store_url=f"sqlite:///{workdir / 'profile.db'}", artifacts_root=artifacts_root
            )
            flows.empty.run().wait()
            results["profile_text"] = profile_checkpoints(flows, kitaru, 1000)
    finally:
        results["meta"]["elapsed_s"] = time.perf_counter() - t_start
        os.chdir(started_in)
        with contextlib.suppress(Exception):
            from kitaru._backend import forget_backends

            forget_backends()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)

    print_report(results)
    if "profile_text" in results:
        print()
        print("cProfile: 1000 no-op checkpoints, @flow(cache=False), SQLite")
        print(results["profile_text"])
    print(f"\n(elapsed {results['meta']['elapsed_s']:.1f} s)")
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(results, indent=2, default=str) + "\n")
        print(f"JSON written to {json_path}")
    if results["meta"]["errors"]:
        print(f"sections that crashed: {', '.join(results['meta']['errors'])}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

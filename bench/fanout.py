"""Fan-out speed-up and isolated-call overhead.

Usage::

    .venv/bin/python bench/fanout.py [--quick] [--rounds R] [--dir DIR] [--keep]

Two sections (DESIGN.md / issue 5, "Evidence"), on the embedded store:

1. **Fan-out speed-up.** 16 calls of a checkpoint that sleeps 100 ms, made one after
   the other in the flow body (``sleepy(i)``) and submitted at once
   (``sleepy.map(range(16))``, then every ``.result()``). Speed-up = median
   sequential time / median fan-out time, both measured as ``flow.run().wait()``
   and interleaved round by round. Target: close to the pool size (16 with the
   default ``max_concurrency``; the ideal is 16 x 100 ms / 100 ms = 16). Also shown:
   the same fan-out on a pool of 4 (ideal 4), 16 async checkpoints that
   ``await asyncio.sleep(0.1)`` gathered in an async flow vs awaited one by one, and
   16 no-op calls (no sleep): what submitting, the pool and concurrent commits cost
   compared with plain sequential calls (a speed-up below 1 is overhead).
2. **Isolated overhead.** A no-op checkpoint with ``runtime="isolated"`` vs the same
   no-op inline: per-call cost = (flow with K calls - the same flow with 0 calls) / K,
   median over rounds; the overhead is isolated minus inline (mostly starting a
   Python interpreter and importing Kitaru in the child).

Every flow uses ``cache=False`` so each call really runs. Reporting only: a speed-up
below 80 % of its ideal prints ``BELOW TARGET`` but the exit status stays 0; it is 1
only if a section crashed (the traceback goes to stderr, the row shows ``ERROR``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kitaru
from kitaru import checkpoint, flow

FAN = 16  # calls in the fan-out
SLEEP = 0.1  # seconds each call sleeps
TARGET_FRACTION = 0.8  # a speed-up below this share of the ideal is flagged


@dataclass(frozen=True)
class Plan:
    rounds: int
    isolated_calls: int  # K, calls per isolated/inline flow


PLANS = {"full": Plan(rounds=5, isolated_calls=8), "quick": Plan(rounds=2, isolated_calls=3)}


def _isolate(base: Path) -> None:
    """A clean Kitaru: no KITARU_* settings, its own config dir, a neutral cwd."""
    for name in list(os.environ):
        if name.startswith("KITARU_"):
            del os.environ[name]
    os.environ["KITARU_CONFIG_PATH"] = str(base / "home")
    os.chdir(base)


# -- the workload (module level: isolated calls pickle the function) ---------------------


@checkpoint
def sleepy(i: int, delay: float) -> int:
    if delay:
        time.sleep(delay)
    return i


@checkpoint
async def asleep(i: int) -> int:
    await asyncio.sleep(SLEEP)
    return i


@checkpoint
def noop_inline(i: int) -> int:
    return i


@checkpoint(runtime="isolated")
def noop_isolated(i: int) -> int:
    return i


@flow(cache=False)
def sequential(n: int, delay: float = SLEEP) -> list[int]:
    return [sleepy(i, delay) for i in range(n)]


@flow(cache=False)
def fanned(n: int, delay: float = SLEEP) -> list[int]:
    return [f.result() for f in sleepy.map(range(n), [delay] * n)]


@flow(cache=False)
async def awaited_one_by_one(n: int) -> list[int]:
    return [await asleep(i) for i in range(n)]


@flow(cache=False)
async def gathered(n: int) -> list[int]:
    return list(await asyncio.gather(*(asleep(i) for i in range(n))))


@flow(cache=False)
def inline_calls(n: int) -> int:
    return sum(noop_inline(i) for i in range(n))


@flow(cache=False)
def isolated_calls(n: int) -> int:
    return sum(noop_isolated(i) for i in range(n))


def timed(run: Callable[[], Any]) -> float:
    started = time.perf_counter()
    run()
    return time.perf_counter() - started


# -- sections -------------------------------------------------------------------------------


@dataclass
class Row:
    label: str
    baseline_s: float | None = None  # median sequential time
    parallel_s: float | None = None  # median concurrent time
    ideal: float | None = None
    error: str | None = None

    @property
    def speedup(self) -> float | None:
        if self.baseline_s is None or not self.parallel_s:
            return None
        return self.baseline_s / self.parallel_s


def fan_out_section(plan: Plan) -> list[Row]:
    cases: list[tuple[str, Callable[[], Any], Callable[[], Any], float | None]] = [
        (
            f"{FAN} x sleep {SLEEP * 1000:.0f} ms, pool 16 (default)",
            lambda: sequential.run(FAN).wait(),
            lambda: fanned.run(FAN).wait(),
            16.0,
        ),
        (
            f"{FAN} x sleep {SLEEP * 1000:.0f} ms, pool 4",
            lambda: sequential.run(FAN).wait(),
            lambda: fanned.run(FAN, max_concurrency=4).wait(),
            4.0,
        ),
        (
            f"{FAN} async x asyncio.sleep {SLEEP * 1000:.0f} ms, gather",
            lambda: awaited_one_by_one.run(FAN).wait(),
            lambda: gathered.run(FAN).wait(),
            float(FAN),
        ),
        (
            f"{FAN} x no-op (what coordination costs)",
            lambda: sequential.run(FAN, 0.0).wait(),
            lambda: fanned.run(FAN, 0.0).wait(),
            None,
        ),
    ]
    rows = [Row(label, ideal=ideal) for label, _, _, ideal in cases]
    samples: dict[str, tuple[list[float], list[float]]] = {r.label: ([], []) for r in rows}
    # Warm-up (imports, store creation, thread pools) outside the measurement.
    fanned.run(2).wait()
    gathered.run(2).wait()
    for round_no in range(plan.rounds):
        for row, (_, baseline, parallel, _) in zip(rows, cases, strict=True):
            if row.error:
                continue
            try:
                samples[row.label][0].append(timed(baseline))
                samples[row.label][1].append(timed(parallel))
            except Exception:
                traceback.print_exc()
                row.error = "crashed"
        print(f"fan-out round {round_no + 1}/{plan.rounds} done", file=sys.stderr)
    for row in rows:
        base, par = samples[row.label]
        if base and par:
            row.baseline_s, row.parallel_s = statistics.median(base), statistics.median(par)
    return rows


@dataclass
class IsolatedResult:
    inline_ms: float | None = None
    isolated_ms: float | None = None
    error: str | None = None


def isolated_section(plan: Plan) -> IsolatedResult:
    result = IsolatedResult()
    k = plan.isolated_calls
    try:
        isolated_calls.run(1).wait()  # warm-up: the child's imports get their .pyc
        inline, isolated = [], []
        for round_no in range(plan.rounds):
            inline_empty = timed(lambda: inline_calls.run(0).wait())
            inline_k = timed(lambda: inline_calls.run(k).wait())
            isolated_empty = timed(lambda: isolated_calls.run(0).wait())
            isolated_k = timed(lambda: isolated_calls.run(k).wait())
            inline.append((inline_k - inline_empty) / k)
            isolated.append((isolated_k - isolated_empty) / k)
            print(f"isolated round {round_no + 1}/{plan.rounds} done", file=sys.stderr)
        result.inline_ms = statistics.median(inline) * 1000
        result.isolated_ms = statistics.median(isolated) * 1000
    except Exception:
        traceback.print_exc()
        result.error = "crashed"
    return result


# -- report ----------------------------------------------------------------------------------


def report(plan: Plan, rows: list[Row], isolated: IsolatedResult, elapsed: float) -> None:
    print(f"kitaru {kitaru.__version__} fan-out benchmark ({' '.join(sys.argv)})")
    print(
        f"python {platform.python_version()}, {os.cpu_count()} CPUs, embedded SQLite store; "
        f"{plan.rounds} round(s), medians; {elapsed:.1f} s"
    )
    print()
    print("Fan-out speed-up (sequential / concurrent, both flow.run().wait())")
    header = (
        f"  {'case':44s} {'sequential':>11s} {'concurrent':>11s} {'speed-up':>9s} {'ideal':>6s}"
    )
    print(header)
    for row in rows:
        if row.error or row.speedup is None:
            print(f"  {row.label:44s} {'ERROR':>11s}")
            continue
        assert row.baseline_s is not None
        assert row.parallel_s is not None
        if row.ideal is None:
            ideal, flag = "     -", ""
        else:
            ideal = f"{row.ideal:5.0f}x"
            flag = "" if row.speedup >= TARGET_FRACTION * row.ideal else "  BELOW TARGET"
        print(
            f"  {row.label:44s} {row.baseline_s * 1000:9.1f} ms {row.parallel_s * 1000:8.1f} ms "
            f"{row.speedup:8.1f}x {ideal}{flag}"
        )
    print()
    print(f"Isolated checkpoint overhead (no-op, per call, {plan.isolated_calls} calls per flow)")
    if isolated.error or isolated.inline_ms is None or isolated.isolated_ms is None:
        print("  ERROR")
        return
    overhead = isolated.isolated_ms - isolated.inline_ms
    ratio = isolated.isolated_ms / isolated.inline_ms if isolated.inline_ms > 0 else float("inf")
    print(f"  inline    {isolated.inline_ms:9.2f} ms")
    print(f"  isolated  {isolated.isolated_ms:9.2f} ms")
    print(f"  overhead  {overhead:9.2f} ms per call ({ratio:.0f}x inline)")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 rounds, 3 isolated calls")
    parser.add_argument("--rounds", type=int, help="rounds (default 5; 2 with --quick)")
    parser.add_argument("--dir", type=Path, help="where to create the temporary store")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    plan = PLANS["quick" if args.quick else "full"]
    if args.rounds:
        plan = Plan(rounds=args.rounds, isolated_calls=plan.isolated_calls)
    base = Path(tempfile.mkdtemp(prefix="kitaru-fanout-", dir=args.dir))
    cwd = Path.cwd()
    started = time.monotonic()
    _isolate(base)
    try:
        rows = fan_out_section(plan)
        isolated = isolated_section(plan)
    finally:
        os.chdir(cwd)
        if args.keep:
            print(f"kept {base}", file=sys.stderr)
        else:
            shutil.rmtree(base, ignore_errors=True)
    report(plan, rows, isolated, time.monotonic() - started)
    crashed = any(r.error for r in rows) or isolated.error is not None
    return 1 if crashed else 0


if __name__ == "__main__":
    sys.exit(main())

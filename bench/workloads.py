"""Whole-workload costs beyond the per-checkpoint figure of ``bench/run.py``.

Usage::

    .venv/bin/python bench/workloads.py [--quick] [--rounds N] [--json PATH]
                                        [--compare-src DIR] [--only NAME ...]

Each measurement runs in a fresh interpreter on a fresh SQLite store in a
temporary directory (same disk for every system), so nothing is shared between
them. With ``--compare-src DIR`` (the ``src`` directory of another Kitaru
checkout, e.g. a ``git worktree`` of an older commit) every measurement is also
taken on that code, interleaved round by round, and the table shows both and
their ratio: before/after figures from one run on one machine.

What is measured (medians over the rounds):

``step``
    One no-op checkpoint in a flow of 2,000, cache off and cache on with fresh
    inputs (a live miss), and a raw SQLite WAL ``synchronous=FULL`` commit in the
    same process. Both SQLite files are warmed to a full-size WAL first: a WAL
    still growing makes commits about twice as costly. Also WAL frames written
    and bytes the database grows per step (``PRAGMA wal_autocheckpoint`` is
    left as Kitaru sets it; frames are counted with checkpoints off).
``script``
    ``python script.py`` running a one-checkpoint flow in a fresh process, on an
    existing store and on a new one (wall time of the whole process; ``.pyc``
    files written by the first run, even under ``PYTHONDONTWRITEBYTECODE``).
``resume``
    Retrying an execution whose 10,000 checkpoints completed before its last
    one failed: time until the runner finished (all 10,000 memoized), and the
    time the client's ``retry()`` call takes to return.
``volume``
    1,000 executions of a 3-checkpoint flow started with ``.run()`` in a loop,
    then waited for: executions per second.
``fanout``
    16 checkpoints of 100 ms each submitted with ``.submit()`` and collected.

Reporting only: nothing here asserts on time; a section that crashes prints
``ERROR`` and makes the exit status 1.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
CURRENT_SRC = HERE.parent / "src"

# -- the measurements, each run as a fresh interpreter -----------------------------------

_PRELUDE = """
import json, os, sys, time, sqlite3, statistics, uuid
d = sys.argv[1]
os.environ["KITARU_CONFIG_PATH"] = d + "/home"
os.makedirs(d + "/home", exist_ok=True)
os.chdir(d)
import kitaru
from kitaru import flow, checkpoint, KitaruClient
URL = f"sqlite:///{d}/kitaru.db"
kitaru.configure(store_url=URL, artifacts_root=d + "/artifacts")
def report(**figures):
    print("RESULT " + json.dumps(figures))
"""

_STEP = """
N = 2000
@checkpoint
def noop(i):
    return None

@flow(cache=False)
def live(n):
    for i in range(n):
        noop(i)

@flow
def misses(n, base):
    for i in range(n):
        noop(base + i)

@flow
def empty():
    pass

raw = sqlite3.connect(d + "/raw.db", isolation_level=None)
raw.execute("PRAGMA journal_mode=WAL")
raw.execute("PRAGMA synchronous=FULL")
raw.execute("CREATE TABLE t (id TEXT PRIMARY KEY, v BLOB)")

def raw_commits(n):
    times = []
    for _ in range(n):
        t = time.perf_counter()
        raw.execute("BEGIN IMMEDIATE")
        raw.execute("INSERT INTO t VALUES (?, ?)", (uuid.uuid4().hex, b"x" * 64))
        raw.execute("COMMIT")
        times.append(time.perf_counter() - t)
    return statistics.median(times)

def wal_frames(path):
    return max(0, (os.path.getsize(path) - 32)) / (4096 + 24) if os.path.exists(path) else 0.0

raw_commits(1500)  # a full-size WAL (1,000 frames before the first checkpoint)
live.run(N).wait()  # and Kitaru's (each step writes several frames)
misses.run(N, 10**9).wait()

def per_step(run, cpu):
    # Wall seconds per step; its CPU seconds (all threads, events included) go to cpu.
    t, c = time.perf_counter(), time.process_time()
    empty.run().wait()
    base, base_cpu = time.perf_counter() - t, time.process_time() - c
    t, c = time.perf_counter(), time.process_time()
    run()
    kitaru.events.flush()
    cpu.append((time.process_time() - c - base_cpu) / N)
    return (time.perf_counter() - t - base) / N

raws, offs, missed, offs_cpu, missed_cpu = [], [], [], [], []
for r in range(3):
    raws.append(raw_commits(300))
    offs.append(per_step(lambda: live.run(N).wait(), offs_cpu))
    missed.append(per_step(lambda r=r: misses.run(N, r * 10**6).wait(), missed_cpu))
raw_s = statistics.median(raws)

# Frames and bytes per step: checkpoints of the WAL off on a fresh connection.
from kitaru._store.store import get_store
import sqlalchemy
store = get_store(URL)
store.dispose()
@sqlalchemy.event.listens_for(store.engine, "connect")
def _no_checkpoints(dbapi, _rec):
    dbapi.execute("PRAGMA wal_autocheckpoint=0")
if hasattr(store._sqlite, "adopt"):  # the writer's connection is opened on the driver
    with store._local_writer:
        store._sqlite._cursor().execute("PRAGMA wal_autocheckpoint=0")
def db_bytes():
    c = sqlite3.connect(d + "/kitaru.db")
    c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    c.close()
    return os.path.getsize(d + "/kitaru.db")
size0 = db_bytes()
frames0 = wal_frames(d + "/kitaru.db-wal")
misses.run(N, 7 * 10**8).wait()
frames = (wal_frames(d + "/kitaru.db-wal") - frames0) / N
grown = (db_bytes() - size0) / N
report(
    raw_ms=raw_s * 1e3,
    cache_off_ms=statistics.median(offs) * 1e3,
    cache_miss_ms=statistics.median(missed) * 1e3,
    cache_off_ratio=statistics.median(o / r for o, r in zip(offs, raws)),
    cache_miss_ratio=statistics.median(m / r for m, r in zip(missed, raws)),
    cache_off_cpu_us=statistics.median(offs_cpu) * 1e6,
    cache_miss_cpu_us=statistics.median(missed_cpu) * 1e6,
    wal_frames_per_step=frames,
    bytes_per_step=grown,
)
"""

#: A script running a one-checkpoint flow (also counted by instructions.py).
SCRIPT_FILE = """
from kitaru import checkpoint, flow

@checkpoint
def step(x: int) -> int:
    return x + 1

@flow
def one(x: int) -> int:
    return step(x)

if __name__ == "__main__":
    assert one.run(1).wait() == 2
"""

_RESUME = """
N = 10000
MARK = d + "/fail"

@checkpoint
def step(i):
    return i

@checkpoint
def last():
    if os.path.exists(MARK):
        raise RuntimeError("planned failure")
    return "done"

@flow(cache=False, retries=0)
def long(n):
    for i in range(n):
        step(i)
    return last()

def failed_execution():
    open(MARK, "w").close()
    handle = long.run(N)
    try:
        handle.wait()
    except Exception:
        pass
    os.remove(MARK)
    return handle

from kitaru._backend import get_backend
from kitaru._runtime import control
handle = failed_execution()
# The first SQLAlchemy query of the process (its import, the engine) is a one-time cost,
# not the resume's: a script whose flow ran and failed on SQLite has not paid it yet.
get_backend().store.list_executions(limit=1)
t = time.perf_counter()
control.retry(get_backend(), handle.exec_id)
assert handle.wait() == "done"
runner = time.perf_counter() - t

handle = failed_execution()
t = time.perf_counter()
KitaruClient().executions.retry(handle.exec_id)
client_returned = time.perf_counter() - t
handle.wait()
report(runner_ms=runner * 1e3, client_retry_ms=client_returned * 1e3)
"""

#: A flow of three checkpoints (also counted by instructions.py).
THREE_STEP_FLOW = """
@checkpoint
def a(i):
    return i

@checkpoint
def b(i):
    return i + 1

@checkpoint
def c(i):
    return i + 2

@flow
def three(i):
    return c(b(a(i)))
"""

_VOLUME = (
    """
N = int(sys.argv[2])
"""
    + THREE_STEP_FLOW
    + """
three.run(-1).wait()
t, cpu0 = time.perf_counter(), time.process_time()
handles = [three.run(i) for i in range(N)]
submitted = time.perf_counter() - t
for h in handles:
    h.wait()
total = time.perf_counter() - t
cpu = time.process_time() - cpu0
report(executions_per_s=N / total, submit_ms=submitted * 1e3, cpu_per_execution_ms=cpu / N * 1e3)
"""
)

_FANOUT = """
@checkpoint
def sleepy(i):
    time.sleep(0.1)
    return i

@flow(cache=False)  # a cached rerun would not sleep at all
def fan(n):
    futures = [sleepy.submit(i) for i in range(n)]
    return [f.result() for f in futures]

fan.run(2).wait()
times = []
for _ in range(3):
    t = time.perf_counter()
    fan.run(16).wait()
    times.append(time.perf_counter() - t)
report(fanout_ms=statistics.median(times) * 1e3)
"""


def bench_env(src: Path, **extra: str) -> dict[str, str]:
    """The environment of every measured process: Kitaru from ``src``, none of the
    caller's ``KITARU_*`` or ``XDG_*`` settings, and .pyc files written as for a user
    (the first run writes those the others load; under ``PYTHONDONTWRITEBYTECODE=1``
    every run would recompile every module)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KITARU_", "XDG_"))}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.update(extra, PYTHONPATH=str(src))
    return env


def _run_python(src: Path, code: str, workdir: Path, *args: str) -> dict[str, Any]:
    env = bench_env(src)
    proc = subprocess.run(
        [sys.executable, "-c", _PRELUDE + textwrap.dedent(code), str(workdir), *args],
        env=env,
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=900,
    )
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            result: dict[str, Any] = json.loads(line[len("RESULT ") :])
            return result
    raise RuntimeError(f"measurement failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")


def _script(src: Path, workdir: Path) -> dict[str, Any]:
    """Wall time of ``python script.py`` (one-checkpoint flow), existing and new store.

    As a user runs it: no ``KITARU_CONFIG_PATH``, the store in the default directory
    under a scratch ``HOME``.
    """
    script = workdir / "script.py"
    script.write_text(SCRIPT_FILE)
    env = bench_env(src)

    def once(home: Path) -> float:
        env["HOME"] = str(home)
        t = time.perf_counter()
        subprocess.run([sys.executable, str(script)], env=env, cwd=workdir, check=True)
        return time.perf_counter() - t

    existing = workdir / "home-existing"
    once(existing)  # creates the store and the .pyc files
    warm = [once(existing) for _ in range(5)]
    new = [once(workdir / f"home-new-{i}") for i in range(3)]
    return {
        "script_existing_store_ms": statistics.median(warm) * 1e3,
        "script_new_store_ms": statistics.median(new) * 1e3,
    }


def measure(name: str, src: Path, quick: bool) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix=f"kitaru-workload-{name}-") as tmp:
        workdir = Path(tmp)
        if name == "step":
            return _run_python(src, _STEP, workdir)
        if name == "script":
            return _script(src, workdir)
        if name == "resume":
            return _run_python(src, _RESUME, workdir)
        if name == "volume":
            return _run_python(src, _VOLUME, workdir, "200" if quick else "1000")
        if name == "fanout":
            return _run_python(src, _FANOUT, workdir)
    raise ValueError(name)


#: (section, figure, label, unit, lower is better)
FIGURES = [
    ("step", "raw_ms", "raw SQLite WAL commit (FULL)", "ms", True),
    ("step", "cache_off_ms", "no-op checkpoint, cache off", "ms", True),
    ("step", "cache_off_ratio", "  / raw commit", "x", True),
    ("step", "cache_miss_ms", "no-op checkpoint, cache on (live miss)", "ms", True),
    ("step", "cache_miss_ratio", "  / raw commit", "x", True),
    ("step", "cache_off_cpu_us", "CPU per step, all threads, cache off", "us", True),
    ("step", "cache_miss_cpu_us", "CPU per step, all threads, live miss", "us", True),
    ("step", "wal_frames_per_step", "WAL frames written per step (cache miss)", "", True),
    ("step", "bytes_per_step", "bytes the database grows per step (cache miss)", "B", True),
    (
        "script",
        "script_existing_store_ms",
        "python script.py, 1-step flow, existing store",
        "ms",
        True,
    ),
    ("script", "script_new_store_ms", "python script.py, 1-step flow, new store", "ms", True),
    ("resume", "runner_ms", "retry of a 10,000-step execution: runner done", "ms", True),
    ("resume", "client_retry_ms", "  client retry() returns", "ms", True),
    ("volume", "executions_per_s", "executions x 3 steps started with .run()", "/s", False),
    ("volume", "submit_ms", "  time to submit them all", "ms", True),
    ("volume", "cpu_per_execution_ms", "  CPU per execution, all threads", "ms", True),
    ("fanout", "fanout_ms", "fan-out 16 x 100 ms (.submit)", "ms", True),
]
SECTIONS = ["step", "script", "resume", "volume", "fanout"]


def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "ERROR"
    if unit == "x":
        return f"{value:.2f}x"
    if unit in ("B", "/s", "us"):
        return f"{value:.0f} {unit}".strip()
    if unit == "":
        return f"{value:.2f}"
    return f"{value:.2f} ms" if value < 10 else f"{value:.0f} ms"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="1 round, 200 executions")
    parser.add_argument("--rounds", type=int, default=None, help="rounds (default 3; 1 quick)")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON")
    parser.add_argument("--compare-src", type=Path, help="the src/ of another Kitaru to compare")
    parser.add_argument("--only", nargs="+", choices=SECTIONS, help="measure only these")
    args = parser.parse_args(argv)
    rounds = args.rounds or (1 if args.quick else 3)
    systems = {"current": CURRENT_SRC}
    if args.compare_src is not None:
        if not (args.compare_src / "kitaru" / "__init__.py").is_file():
            parser.error(f"--compare-src {args.compare_src} holds no kitaru package")
        systems = {"before": args.compare_src.resolve(), "current": CURRENT_SRC}
    sections = args.only or SECTIONS
    samples: dict[str, dict[str, list[dict[str, Any]]]] = {s: {} for s in systems}
    failed = False
    for r in range(rounds):
        for section in sections:
            for system, src in systems.items():
                print(f"  .. round {r + 1}/{rounds}: {section} on {system}", file=sys.stderr)
                try:
                    result = measure(section, src, args.quick)
                except Exception as exc:
                    failed = True
                    print(f"  !! {section} on {system} failed: {exc}", file=sys.stderr)
                    continue
                samples[system].setdefault(section, []).append(result)

    def median(system: str, section: str, figure: str) -> float | None:
        values = [s[figure] for s in samples[system].get(section, []) if figure in s]
        return statistics.median(values) if values else None

    names = list(systems)
    header = ["figure", *names] + (["current / before"] if len(names) == 2 else [])
    rows = []
    summary: dict[str, dict[str, float | None]] = {}
    for section, figure, label, unit, _lower in FIGURES:
        if section not in sections:
            continue
        values = [median(name, section, figure) for name in names]
        summary[figure] = dict(zip(names, values, strict=True))
        row = [label, *(_fmt(v, unit) for v in values)]
        if len(names) == 2:
            before, after = values
            row.append(f"{after / before:.2f}" if before and after is not None else "")
        rows.append(row)
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows, strict=True)]
    print(
        f"Kitaru workloads: {rounds} round(s), medians; {os.cpu_count()} CPUs; "
        f"python {sys.version.split()[0]}; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
    )
    for src_name, src in systems.items():
        print(f"  {src_name}: {src}")
    for i, row in enumerate([header, *rows]):
        print(
            "  "
            + "  ".join(
                c.ljust(w) if j == 0 else c.rjust(w)
                for j, (c, w) in enumerate(zip(row, widths, strict=True))
            )
        )
        if i == 0:
            print("  " + "  ".join("-" * w for w in widths))
    if args.json is not None:
        args.json.write_text(json.dumps({"rounds": rounds, "figures": summary, "samples": samples}))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

"""CPU instructions of Kitaru's hot paths, counted with valgrind: steady on a noisy VM.

Usage::

    .venv/bin/python bench/instructions.py [--compare-src DIR] [--only NAME ...]

Wall-clock figures of a shared 2-core VM move by 10-50% between runs of the same
code; ``valgrind --tool=callgrind`` counts the instructions a process executes, all
threads included, and gives about the same count (within ~0.3%) run after run. This counts:

``step_off`` / ``step_miss``
    One no-op checkpoint, cache off and cache on with fresh inputs (a live miss):
    (a flow of 2,000 steps - a flow of none) / 2,000, each in a fresh process.
``execution``
    One execution of a 3-checkpoint flow started with ``.run()`` and waited for,
    one after another: (300 executions - none) / 300.
``script``
    ``python script.py`` running a one-checkpoint flow on an existing store, as a user
    runs it: no ``KITARU_CONFIG_PATH``, the default directory under a scratch ``HOME``.
``script_project``
    The same in a project directory: a ``pyproject.toml`` (no ``[tool.kitaru]``),
    written more than 3 s before the runs, as a project's file is.
``import``
    ``python -c "import kitaru"``.

The stores live on ``/dev/shm`` when it exists (fsync costs no instructions there, and
the disk's own variance stays out). Not a wall-clock figure: it shows what the code
costs the CPU, not what the disk adds (see ``workloads.py`` and ``run.py`` for that).
With ``--compare-src DIR`` (the ``src`` of another checkout) every figure is also
counted on that code, and the table shows the ratio. Reporting only; needs valgrind
(``apt-get install valgrind``). Each figure takes 10-60 s.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
CURRENT_SRC = HERE.parent / "src"
sys.path.insert(0, str(HERE))
import workloads  # noqa: E402  (the workloads' code, counted here the same)

_PRELUDE = """
import os, sys
d = sys.argv[1]
os.environ["KITARU_CONFIG_PATH"] = d + "/home"
os.makedirs(d + "/home", exist_ok=True)
os.chdir(d)
import kitaru
from kitaru import checkpoint, flow
kitaru.configure(store_url=f"sqlite:///{d}/kitaru.db", artifacts_root=d + "/artifacts")
N = int(sys.argv[2])
"""

_STEPS = """
@checkpoint
def noop(i):
    return None

@flow(cache=sys.argv[3] == "miss")
def live(n, base):
    for i in range(n):
        noop(base + i)

live.run(3, -10).wait()  # the first run of a process pays for lazy imports
live.run(N, os.getpid() * 10**6).wait()
kitaru.events.flush()
"""

_EXECUTIONS = (
    workloads.THREE_STEP_FLOW
    + """
three.run(-1).wait()
for i in range(N):
    three.run(i).wait()
kitaru.events.flush()
"""
)

SECTIONS = ["step_off", "step_miss", "execution", "script", "script_project", "import"]
_LABELS = {
    "step_off": "no-op checkpoint, cache off, per step",
    "step_miss": "no-op checkpoint, live cache miss, per step",
    "execution": "execution of 3 checkpoints (.run().wait()), each",
    "script": "python script.py (1-step flow, existing store)",
    "script_project": "  the same in a project with a pyproject.toml",
    "import": 'python -c "import kitaru"',
}


_PYPROJECT = """\
[project]
name = "demo"
version = "0.1.0"
dependencies = ["httpx>=0.27"]

[tool.ruff]
line-length = 100
"""


def _scratch() -> Path:
    shm = Path("/dev/shm")
    return Path(tempfile.mkdtemp(prefix="kitaru-instr-", dir=shm if shm.is_dir() else None))


def _warm(args: list[str], env: dict[str, str], cwd: Path) -> None:
    subprocess.run(args, env=env, cwd=cwd, check=True, capture_output=True, timeout=900)


def _count(args: list[str], env: dict[str, str], cwd: Path) -> int:
    """Instructions of one process (all threads) under callgrind."""
    proc = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=900,
    )
    found = re.search(r"Collected : (\d+)", proc.stderr)
    if proc.returncode != 0 or found is None:
        raise RuntimeError(f"measurement failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return int(found.group(1))


def _per_unit(src: Path, code: str, count: int, *extra: str) -> float:
    """(a run of ``count`` units - a run of none) / count, each in a fresh store."""
    program = [sys.executable, "-c", _PRELUDE + textwrap.dedent(code)]
    env = workloads.bench_env(src)
    totals = []
    for n in (0, count):
        work = _scratch()
        try:
            _warm([*program, str(work / "warm"), "1", *extra], env, work)
            totals.append(_count([*program, str(work / "w"), str(n), *extra], env, work))
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return (totals[1] - totals[0]) / count


def measure(name: str, src: Path) -> float:
    if name in ("step_off", "step_miss"):
        return _per_unit(src, _STEPS, 2000, name.removeprefix("step_"))
    if name == "execution":
        return _per_unit(src, _EXECUTIONS, 300)
    work = _scratch()
    try:
        env = workloads.bench_env(src, HOME=str(work / "home"))
        if name in ("script", "script_project"):
            script = work / "script.py"
            script.write_text(workloads.SCRIPT_FILE)
            args = [sys.executable, str(script)]
            if name == "script_project":
                (work / "pyproject.toml").write_text(_PYPROJECT)
                # Kitaru trusts a file's version only once it has been quiet for 3 s
                # (kitaru._filecache.SETTLE_NS); a project's file has been.
                time.sleep(3.5)
        else:
            args = [sys.executable, "-c", "import kitaru"]
        _warm(args, env, work)  # the store and the .pyc files
        if name == "script_project":
            # The first run created the config directory after it read the project
            # file; from the second on, the file's parse is kept there.
            _warm(args, env, work)
        return float(_count(args, env, work))
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _fmt(value: float) -> str:
    if value != value:  # NaN: the measurement failed
        return "ERROR"
    return f"{value / 1e6:.1f}M" if value >= 10e6 else f"{value / 1e3:.1f}k"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--compare-src", type=Path, help="the src directory of other code")
    parser.add_argument("--only", nargs="+", choices=SECTIONS, help="figures to count")
    options = parser.parse_args()
    if shutil.which("valgrind") is None:
        print("valgrind is not installed: apt-get install valgrind", file=sys.stderr)
        return 1
    sources = [("current", CURRENT_SRC)]
    if options.compare_src is not None:
        sources.insert(0, ("before", options.compare_src.resolve()))
    print(f"Kitaru instructions (valgrind callgrind, all threads); python {sys.version.split()[0]}")
    for label, src in sources:
        print(f"  {label}: {src}")
    header = f"  {'figure':50s}" + "".join(f"{label:>10s}" for label, _ in sources)
    print(header + ("  current / before" if len(sources) == 2 else ""))
    failed = False
    for name in options.only or SECTIONS:
        print(f".. {name}", file=sys.stderr, flush=True)
        values = []
        for _, src in sources:
            try:
                values.append(measure(name, src))
            except Exception as exc:  # report the others
                print(f"{name}: {exc}", file=sys.stderr)
                values.append(float("nan"))
                failed = True
        row = f"  {_LABELS[name]:50s}" + "".join(f"{_fmt(v):>10s}" for v in values)
        if len(values) == 2 and values[0] == values[0] and values[0] > 0:
            row += f"  {values[1] / values[0]:16.3f}"
        print(row, flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

"""Crash-point benchmark: SIGKILL a flow at many points, resume it, check the recovery.

Usage::

    .venv/bin/python bench/crash_points.py [--quick] [--rounds R] [--random N] [--seed S]
                                           [--size N] [--postgres-url URL] [--keep]

The longer variant of ``tests/recovery/test_fault_injection.py`` and the same
harness (``tests/recovery/_fi_harness.py``): a real process runs a flow of four
checkpoint calls (``tests/recovery/_fi_flow.py``) and is killed with SIGKILL

* at every boundary -- before each checkpoint starts, inside its function, just
  after it completed -- ``--rounds`` times each, and
* ``--random N`` more times after a random delay, with every checkpoint slowed
  down (``FI_STEP_DELAY``) so the kill lands anywhere: mid-checkpoint, between
  a checkpoint's return and its commit, between checkpoints, after the end.

Each killed execution is resumed by ``python -m kitaru.worker EXEC_ID`` started
from another directory once its 1 s lease expired, and checked: result right,
checkpoints recorded before the kill never ran again, any other ran at most once
more, each call stored exactly once with a loadable output.

Prints how many crash points were tried and recovered correctly, and the
median recovery time (kill -> execution completed; it includes waiting out the
dead runner's 1 s lease and starting a new interpreter). Exit status: 1 if a
recovery was wrong, 2 if none was wrong but the harness could not run or check
some crash point (a child that never reached its kill point, a timeout), else 0;
timings never fail it.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
import traceback
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.recovery import _fi_harness as fi  # noqa: E402

RANDOM_STEP_DELAY = 0.15  # seconds each checkpoint sleeps in randomly killed runs


@dataclass
class Outcome:
    label: str  # table row: the kill point, or "random"
    where: str  # where the process actually died
    problems: list[str] = field(default_factory=list)
    error: str | None = None  # the harness could not run or check this crash point
    recovery: float | None = None  # kill -> completed, seconds
    worker: float | None = None  # the resuming worker process(es), seconds
    tries: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems and self.error is None

    @property
    def wrong(self) -> bool:
        return bool(self.problems)


# -- one crash point -----------------------------------------------------------------------


def _case_dirs(base: Path) -> tuple[Path, Path, Path]:
    case = base / uuid.uuid4().hex[:10]
    project, elsewhere = case / "project", case / "elsewhere"
    project.mkdir(parents=True)
    elsewhere.mkdir()
    return project, elsewhere, case / "ledger.txt"


def _resume_and_verify(
    outcome: Outcome,
    exec_id: str,
    killed_at: float,
    ledger: Path,
    elsewhere: Path,
    n: int,
    point: str | None,
) -> Outcome:
    from kitaru import KitaruClient

    fi.wait_until_orphaned(exec_id)
    before = fi.snapshot(exec_id, ledger)
    if point is None:
        outcome.where = _where_it_died(before)
    if before.status == "running":
        run = fi.resume_in_new_process(exec_id, cwd=elsewhere)
        outcome.worker, outcome.tries = run.seconds, run.tries
        if run.returncode != 0:
            outcome.problems.append(
                f"worker exited {run.returncode}: {run.stderr.strip().splitlines()[-1:]}"
            )
        ended = KitaruClient().executions.get(exec_id).ended_at
        if ended is not None:
            outcome.recovery = ended.timestamp() - killed_at
    outcome.problems.extend(fi.verify(exec_id, n, before, ledger, point=point))
    return outcome


def _where_it_died(before: fi.Snapshot) -> str:
    if before.status == "completed":
        return "after the flow completed"
    for call_id in fi.CALL_IDS:
        if call_id in before.completed:
            continue
        if call_id in before.running:
            return f"marked:{call_id} (shown as running)"
        if before.ledger[f"{call_id} end"]:
            return f"inside:{call_id} (returned, not committed)"
        if before.ledger[f"{call_id} start"]:
            return f"inside:{call_id}"
        return f"before:{call_id}"
    return "after:summarize"


def crash_at(base: Path, point: str, n: int) -> Outcome:
    project, elsewhere, ledger = _case_dirs(base)
    outcome = Outcome(point, point)
    exec_id, killed_at = fi.kill_at_point(ledger, n, point, cwd=project)
    return _resume_and_verify(outcome, exec_id, killed_at, ledger, elsewhere, n, point)


def crash_randomly(base: Path, delay: float, n: int) -> Outcome:
    project, elsewhere, ledger = _case_dirs(base)
    outcome = Outcome("random", "?")
    proc = fi.FlowProcess(
        ledger, n, cwd=project, step_delay=RANDOM_STEP_DELAY, stderr_path=project / "flow.stderr"
    )
    try:
        exec_id = proc.wait_for("EXEC ").split()[1]
        time.sleep(delay)
        if proc.proc.poll() is not None:
            outcome.where = "exited before the kill"
            killed_at = time.time()
        else:
            killed_at = proc.kill()
    finally:
        proc.close()
    return _resume_and_verify(outcome, exec_id, killed_at, ledger, elsewhere, n, None)


def calibrate(base: Path, n: int) -> float:
    """Seconds from the flow's EXEC line to its DONE line with slowed checkpoints."""
    project, _, ledger = _case_dirs(base)
    proc = fi.FlowProcess(ledger, n, cwd=project, step_delay=RANDOM_STEP_DELAY)
    try:
        proc.wait_for("EXEC ")
        started = time.monotonic()
        proc.wait_for("DONE ")
        return time.monotonic() - started
    finally:
        proc.close()


# -- reporting -----------------------------------------------------------------------------


def _median(values: Sequence[float | None]) -> str:
    present = [v for v in values if v is not None]
    return f"{statistics.median(present):.2f}" if present else "-"


def report(outcomes: list[Outcome], elapsed: float, store: str) -> None:
    rows: dict[str, list[Outcome]] = {}
    for outcome in outcomes:
        rows.setdefault(outcome.label, []).append(outcome)
    header = (
        "crash point",
        "tried",
        "ok",
        "wrong",
        "error",
        "median recovery s",
        "median worker s",
    )
    widths = (20, 6, 6, 6, 6, 18, 16)

    def line(cells: Sequence[object]) -> str:
        first, *rest = (str(c) for c in cells)
        return first.ljust(widths[0]) + "".join(
            c.rjust(w) for c, w in zip(rest, widths[1:], strict=True)
        )

    def row(label: str, group: list[Outcome]) -> str:
        return line(
            (
                label,
                len(group),
                sum(o.ok for o in group),
                sum(o.wrong for o in group),
                sum(o.error is not None for o in group),
                _median([o.recovery for o in group]),
                _median([o.worker for o in group]),
            )
        )

    print()
    print(f"Kitaru crash points ({store}; flow of {len(fi.CALL_IDS)} checkpoint calls, 1 s lease)")
    print(line(header))
    print("-" * sum(widths))
    for label, group in rows.items():
        print(row(label, group))
    print("-" * sum(widths))
    print(row("total", outcomes))

    randoms = rows.get("random", [])
    if randoms:
        print()
        print("random kills landed:")
        for where, count in sorted(Counter(o.where for o in randoms).items()):
            print(f"  {count:4d}  {where}")

    recovered = [o.recovery for o in outcomes if o.recovery is not None]
    print()
    print(f"crash points tried:        {len(outcomes)}")
    print(f"recovered correctly:       {sum(o.ok for o in outcomes)}")
    print(f"wrong recoveries:          {sum(o.wrong for o in outcomes)}")
    print(f"harness errors:            {sum(o.error is not None for o in outcomes)}")
    print(
        f"median recovery time:      {_median(recovered)} s (kill -> completed, "
        f"over {len(recovered)} resumed executions)"
    )
    print(f"wall time:                 {elapsed:.1f} s")
    wrong = [o for o in outcomes if o.wrong]
    if wrong:
        print()
        print("WRONG RECOVERIES:")
        for outcome in wrong:
            print(f"  {outcome.label} ({outcome.where}):")
            for problem in outcome.problems:
                print(f"    - {problem}")
    errors = [o for o in outcomes if o.error is not None]
    if errors:
        print()
        print("HARNESS ERRORS (crash point not checked):")
        for outcome in errors:
            print(f"  {outcome.label} ({outcome.where}): {outcome.error}")


# -- main ----------------------------------------------------------------------------------


@contextmanager
def postgres_schema(base_url: str, keep: bool) -> Iterator[str]:
    import sqlalchemy as sa

    from kitaru._store.engine import normalize_url

    schema = f"kt_crash_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(normalize_url(base_url), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    separator = "&" if "?" in base_url else "?"
    try:
        yield f"{base_url}{separator}options=-csearch_path%3D{schema}"
    finally:
        if not keep:
            from kitaru._backend import forget_backends

            forget_backends()
            with admin.connect() as conn:
                conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        admin.dispose()


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench/crash_points.py",
        description="SIGKILL a flow at many crash points, resume each, check the recovery.",
    )
    parser.add_argument("--quick", action="store_true", help="1 round, 4 random kills")
    parser.add_argument("--rounds", type=int, help="kills at every boundary (default 3; quick 1)")
    parser.add_argument("--random", type=int, help="random-delay kills (default 20; quick 4)")
    parser.add_argument("--seed", type=int, default=None, help="seed for the random delays")
    parser.add_argument("--size", type=int, default=50, help="items the flow processes")
    parser.add_argument(
        "--postgres-url", help="run on PostgreSQL (a fresh schema there) instead of SQLite"
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args(argv)
    if args.rounds is None:
        args.rounds = 1 if args.quick else 3
    if args.random is None:
        args.random = 4 if args.quick else 20
    if args.seed is None:
        args.seed = random.randrange(1_000_000)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    base = Path(tempfile.mkdtemp(prefix="kitaru-crash-"))
    for name in list(os.environ):
        if name.startswith("KITARU_"):
            del os.environ[name]
    os.environ["KITARU_CONFIG_PATH"] = str(base / "home")
    rng = random.Random(args.seed)
    outcomes: list[Outcome] = []
    started = time.monotonic()
    store = "SQLite"
    try:
        with _store(args) as url:
            if url is not None:
                os.environ["KITARU_STORE_URL"] = url
                store = "PostgreSQL"
            plan = [p for _ in range(args.rounds) for p in fi.KILL_POINTS]
            span = calibrate(base, args.size) if args.random else 0.0
            total = len(plan) + args.random
            print(
                f"{total} crash points: {len(fi.KILL_POINTS)} boundaries x {args.rounds} "
                f"round(s) + {args.random} random (seed {args.seed}, slowed flow "
                f"{span:.2f} s) on {store}; working in {base}",
                file=sys.stderr,
            )
            cases = [(point, None) for point in plan] + [
                (None, rng.uniform(0.0, span * 1.1)) for _ in range(args.random)
            ]
            for i, (point, delay) in enumerate(cases, 1):
                try:
                    if point is not None:
                        outcome = crash_at(base, point, args.size)
                    else:
                        assert delay is not None
                        outcome = crash_randomly(base, delay, args.size)
                except Exception as exc:
                    outcome = Outcome(point or "random", point or f"delay {delay:.2f} s")
                    outcome.error = repr(exc)
                    traceback.print_exc()
                outcomes.append(outcome)
                status = "ok" if outcome.ok else "WRONG" if outcome.wrong else "ERROR"
                recovery = "-" if outcome.recovery is None else f"{outcome.recovery:.2f} s"
                print(
                    f"[{i:3d}/{total}] {outcome.label:18s} {status:5s} recovery {recovery:>7s}"
                    f"  {outcome.where if point is None else ''}",
                    file=sys.stderr,
                )
    finally:
        if args.keep:
            print(f"kept {base}", file=sys.stderr)
        else:
            shutil.rmtree(base, ignore_errors=True)
    report(outcomes, time.monotonic() - started, store)
    if any(o.wrong for o in outcomes):
        return 1
    return 2 if any(o.error for o in outcomes) else 0


@contextmanager
def _store(args: argparse.Namespace) -> Iterator[str | None]:
    if not args.postgres_url:
        yield None
        return
    with postgres_schema(args.postgres_url, args.keep) as url:
        yield url


if __name__ == "__main__":
    sys.exit(main())

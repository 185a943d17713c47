"""Log-capture benchmark: what capturing output adds to a checkpoint's cost.

Usage::

    .venv/bin/python bench/logs.py [--quick] [--calls N] [--reps K] [--json PATH]
                                   [--dir DIR] [--keep]

Measures, in one run on the embedded SQLite store, the cost of one live
checkpoint call (``@flow(cache=False)``) with log capture on (the default) and
off (as with ``KITARU_CAPTURE_LOGS=0``), twice: durable commits (the default,
``synchronous=FULL``), the headline, then ``KITARU_SQLITE_SYNCHRONOUS=normal``
(no fsync per commit), where disk noise no longer hides capture's CPU cost.
Three checkpoints:

* ``no-op``: returns its input; capture has nothing to record (the control);
* ``print``: ``print()`` one line;
* ``logging``: one ``logging`` WARNING record (no handler configured, so Python's
  last-resort handler prints it, with or without capture).

A checkpoint's cost is ``(median time of flow.run(N).wait() - median time of
flow.run(0).wait()) / N``, so creating and finishing an execution cancels out.
A run ends by making its captured lines durable, so the flow's time includes
writing them.

On and off alternate flow by flow in one process and one store, so drift in
disk-flush time hits both alike. Capture is switched off the way
``KITARU_CAPTURE_LOGS=0`` does it: the variable is set and the taps are not in
place (Kitaru reads the variable when it installs them, at a run's start, and
this bench takes them out again for the "off" runs). Every "off" run is checked
to store no line and every "on" run one line per call.

Output goes to /dev/null while measuring (the terminal's speed is not measured);
the report goes to stdout, progress to stderr. Reporting only: the exit status
is 1 only if the measurement crashed or the on/off switch did not work.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

KINDS = ("noop", "print", "logging")
LABELS = {
    "noop": "no-op (control)",
    "print": "print() one line",
    "logging": "logging.warning() one record",
}
VARIANTS = ("off", "on")
SECTIONS = (
    ("full", "Durable (the default)"),
    ("normal", "Relaxed commits, no fsync each (shows capture's CPU cost without disk noise)"),
)

_progress_stream: TextIO = sys.stderr


def progress(message: str) -> None:
    print(f"  .. {message}", file=_progress_stream, flush=True)


# =============================================================================
# Switching capture
# =============================================================================


def set_capture(on: bool) -> None:
    """Capture on (the default) or off, as ``KITARU_CAPTURE_LOGS=0`` would have it."""
    from kitaru._runtime import logcapture

    os.environ["KITARU_CAPTURE_LOGS"] = "1" if on else "0"
    if on:
        return
    # The variable is read when the taps are installed; take them out again.
    tee_type = getattr(logcapture, "_Tee", None)
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if tee_type is not None and isinstance(stream, tee_type):
            setattr(sys, name, stream._wrapped)
    handler = getattr(logcapture, "_handler", None)
    if handler is not None:
        logging.getLogger().removeHandler(handler)


# =============================================================================
# Measuring
# =============================================================================


def measure(calls: int, reps: int) -> dict[str, Any]:
    from kitaru import KitaruClient, checkpoint, flow

    log = logging.getLogger("bench.logs")

    @checkpoint
    def noop(i: int) -> int:
        return i

    @checkpoint
    def say(i: int) -> int:
        print(f"checkpoint {i} says hello")
        return i

    @checkpoint
    def warn(i: int) -> int:
        log.warning("checkpoint %d warns", i)
        return i

    @flow(cache=False)
    def noop_flow(n: int) -> int:
        return sum(noop(i) for i in range(n))

    @flow(cache=False)
    def print_flow(n: int) -> int:
        return sum(say(i) for i in range(n))

    @flow(cache=False)
    def logging_flow(n: int) -> int:
        return sum(warn(i) for i in range(n))

    flows: dict[str, Callable[..., Any]] = {
        "noop": noop_flow.run,
        "print": print_flow.run,
        "logging": logging_flow.run,
    }
    client = KitaruClient()
    expected = {"noop": 0, "print": calls, "logging": calls}
    wrong: list[str] = []

    def timed(kind: str, variant: str, n: int) -> float:
        set_capture(variant == "on")
        started = time.perf_counter()
        handle = flows[kind](n)
        handle.wait()
        elapsed = time.perf_counter() - started
        if n:
            stored = len(client.executions.logs(handle.exec_id))
            want = expected[kind] if variant == "on" else 0
            if stored != want:
                wrong.append(f"{kind}/capture {variant}: {stored} lines stored, expected {want}")
        return elapsed

    for kind in KINDS:  # warm-up: imports, prepared statements, the log writer thread
        for variant in VARIANTS:
            for n in (0, calls):
                timed(kind, variant, n)

    samples: dict[tuple[str, str, int], list[float]] = {
        (k, v, n): [] for k in KINDS for v in VARIANTS for n in (0, calls)
    }
    for rep in range(reps):
        if rep % max(1, reps // 5) == 0:
            progress(f"rep {rep + 1}/{reps}")
        order = VARIANTS if rep % 2 == 0 else tuple(reversed(VARIANTS))
        for kind in KINDS:
            for variant in order:
                for n in (0, calls):
                    samples[(kind, variant, n)].append(timed(kind, variant, n))
    set_capture(False)

    def cost(kind: str, variant: str) -> float:
        full = statistics.median(samples[(kind, variant, calls)])
        empty = statistics.median(samples[(kind, variant, 0)])
        return (full - empty) / calls

    # Per rep, too: (kind - no-op) on minus off, both within the same rep.
    def per_rep_cost(kind: str, variant: str, rep: int) -> float:
        return (samples[(kind, variant, calls)][rep] - samples[(kind, variant, 0)][rep]) / calls

    def paired_ratio(kind: str) -> list[float]:
        ratios = []
        for r in range(reps):
            off = per_rep_cost(kind, "off", r)
            if off > 0:
                ratios.append(per_rep_cost(kind, "on", r) / off)
        return ratios

    return {
        "cost": {k: {v: cost(k, v) for v in VARIANTS} for k in KINDS},
        "paired_ratios": {k: paired_ratio(k) for k in KINDS},
        "net_per_rep": {  # (kind - no-op) on minus off, within one rep
            kind: [
                (per_rep_cost(kind, "on", r) - per_rep_cost("noop", "on", r))
                - (per_rep_cost(kind, "off", r) - per_rep_cost("noop", "off", r))
                for r in range(reps)
            ]
            for kind in ("print", "logging")
        },
        "switch_problems": wrong,
    }


# =============================================================================
# Report
# =============================================================================


def fmt_ms(seconds: float) -> str:
    return f"{seconds * 1000:.3f} ms"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        return "  " + "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )

    return "\n".join(
        [line(headers), "  " + "  ".join("-" * w for w in widths), *(line(r) for r in rows)]
    )


def report(data: dict[str, Any], title: str) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    rows = []
    for kind in KINDS:
        off, on = data["cost"][kind]["off"], data["cost"][kind]["on"]
        ratio = on / off if off > 0 else float("nan")
        paired = sorted(data["paired_ratios"][kind])
        figures[kind] = {"off_s": off, "on_s": on, "ratio": ratio, "paired_ratios": paired}
        rows.append(
            [
                LABELS[kind],
                fmt_ms(off),
                fmt_ms(on),
                f"{ratio:.2f}x",
                f"{(on - off) * 1e6:+.0f} us",
                f"{statistics.median(paired):.2f}x" if paired else "n/a",
                f"{paired[len(paired) // 4]:.2f}-{paired[(3 * len(paired)) // 4]:.2f}x"
                if paired
                else "n/a",
            ]
        )
    print(f"\n{title}\n")
    print(
        table(
            [
                "checkpoint",
                "capture off",
                "capture on",
                "on/off",
                "on - off",
                "paired",
                "paired IQR",
            ],
            rows,
        )
    )
    noop_off = figures["noop"]["off_s"]
    print(
        "\n  net cost of capturing one line = (kind - no-op) with capture on minus the same "
        "with it off\n  (cancels drift that moves every kind alike; spread: the same per rep):"
    )
    for kind in ("print", "logging"):
        cost = data["cost"]
        net = (cost[kind]["on"] - cost["noop"]["on"]) - (cost[kind]["off"] - cost["noop"]["off"])
        nets = sorted(data["net_per_rep"][kind])
        quart = (nets[len(nets) // 4], nets[(3 * len(nets)) // 4])
        figures[kind]["net_capture_s"] = net
        figures[kind]["net_capture_per_rep_s"] = data["net_per_rep"][kind]
        share = net / noop_off if noop_off > 0 else float("nan")
        print(
            f"    {LABELS[kind]:<30} {net * 1e6:+6.1f} us per line = {share:+.1%} of a no-op "
            f"checkpoint (middle half of reps {quart[0] * 1e6:+.0f}..{quart[1] * 1e6:+.0f} us)"
        )
    problems = data["switch_problems"]
    figures["switch_problems"] = problems
    if problems:
        print(f"  CAPTURE SWITCH DID NOT WORK ({len(problems)} runs), e.g. {problems[0]}")
    else:
        print(
            "  checked: every 'off' run stored no line, every 'on' run one line per "
            "print/logging call"
        )
    return figures


# =============================================================================
# Main
# =============================================================================


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke test: fewer, smaller runs")
    parser.add_argument("--calls", type=int, help="checkpoint calls per flow (default 200; 50)")
    parser.add_argument("--reps", type=int, help="interleaved repetitions (default 25; 6)")
    parser.add_argument("--json", metavar="PATH", help="also write the figures as JSON here")
    parser.add_argument("--dir", help="where to create the temporary store")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args(argv)
    args.calls = args.calls or (50 if args.quick else 200)
    args.reps = args.reps or (6 if args.quick else 25)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    for name in [n for n in os.environ if n.startswith("KITARU_")]:
        del os.environ[name]
    workdir = Path(tempfile.mkdtemp(prefix="kitaru-bench-logs-", dir=args.dir))
    os.environ["KITARU_CONFIG_PATH"] = str(workdir / "home")
    os.chdir(workdir)  # no [tool.kitaru] of the caller
    print(f"kitaru log-capture benchmark: {' '.join([Path(sys.argv[0]).name, *sys.argv[1:]])}")
    print(f"  python {platform.python_version()}, {os.cpu_count()} CPUs, store in {workdir}")
    sys.stdout.flush()

    import kitaru

    real_out, real_err = sys.stdout, sys.stderr
    status = 0
    started = time.monotonic()
    figures: dict[str, Any] = {"calls_per_flow": args.calls, "reps": args.reps}
    try:
        for mode, what in SECTIONS:
            progress(f"synchronous={mode}")
            # Read when the store's engine is created: a store of its own per mode.
            os.environ["KITARU_SQLITE_SYNCHRONOUS"] = mode
            kitaru.configure(
                store_url=f"sqlite:///{workdir / f'store-{mode}.db'}",
                artifacts_root=str(workdir / f"artifacts-{mode}"),
            )
            with open(os.devnull, "w", encoding="utf-8") as sink:
                sys.stdout = sys.stderr = sink
                try:
                    data = measure(args.calls, args.reps)
                finally:
                    set_capture(False)
                    sys.stdout, sys.stderr = real_out, real_err
            title = (
                f"{what}: one live checkpoint call, log capture off vs on\n"
                f"(embedded SQLite synchronous={mode}, @flow(cache=False), {args.calls} calls "
                f"per flow, {args.reps} interleaved reps; 'paired' = median of per-rep on/off)"
            )
            figures[mode] = report(data, title)
            if data["switch_problems"]:
                status = 1
        figures["seconds"] = time.monotonic() - started
        print(f"\n  done in {figures['seconds']:.1f} s")
        if args.json:
            Path(args.json).write_text(json.dumps(figures, indent=2), encoding="utf-8")
    except Exception:
        traceback.print_exc()
        status = 1
    finally:
        if args.keep:
            print(f"  kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return status


if __name__ == "__main__":
    sys.exit(main())

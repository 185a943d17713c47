"""``kitaru worker``: keep resuming orphaned executions until stopped."""

from __future__ import annotations

import logging
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Annotated, Any

import typer
from rich.console import Console

from kitaru._stacks.local import RUNNER_THREAD_PREFIX
from kitaru.cli._output import (
    Output,
    OutputFormat,
    OutputOption,
    command,
    exit_interrupted,
    redact_url,
    seconds_option,
)


@contextmanager
def _worker_logs() -> Iterator[None]:
    """Show the worker's log lines (what it resumed or skipped) on stderr."""
    logger = logging.getLogger("kitaru.worker")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%Y-%m-%d %H:%M:%S"))
    old_level, old_propagate = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
        logger.propagate = old_propagate


@contextmanager
def _stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """First Ctrl-C (or SIGTERM) asks the worker to stop; a second one interrupts at once."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_signal(signum: int, frame: FrameType | None) -> None:
        del frame
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        name = signal.Signals(signum).name
        sys.stderr.write(
            f"{name} received: stopping the worker after the executions it is running "
            "(press Ctrl-C again to stop at once).\n"
        )
        sys.stderr.flush()

    watched = [signal.SIGINT, signal.SIGTERM]
    previous: dict[signal.Signals, Any] = {}
    for sig in watched:
        previous[sig] = signal.signal(sig, on_signal)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _running_threads() -> list[threading.Thread]:
    """The runner threads of the executions this worker started (``kitaru-exec-<id>``).

    Only those: an idle thread pool some flow code left behind never ends by itself,
    and waiting for it would hang the worker.
    """
    current = threading.current_thread()
    return [
        t
        for t in threading.enumerate()
        if t is not current and t.name.startswith(RUNNER_THREAD_PREFIX) and t.is_alive()
    ]


def _abandon(out: Output) -> None:
    message = (
        "Worker interrupted; executions it was running stopped here. Another worker (or "
        "`kitaru executions resume ID`) picks them up once their leases expire."
    )
    exit_interrupted(out, message)


def _poll_interval(value: float) -> float:
    return seconds_option("--poll-interval", value, low=0.01, high=86400.0)


def worker(
    poll_interval: Annotated[
        float,
        typer.Option(
            "--poll-interval",
            callback=_poll_interval,
            metavar="SECONDS",
            help="How often to look for orphaned executions, in seconds (0.01 to 86400).",
        ),
    ] = 1.0,
    once: Annotated[
        bool,
        typer.Option("--once", help="Look once, resume what is orphaned, wait for it, and exit."),
    ] = False,
    schedules: Annotated[
        bool,
        typer.Option(
            "--schedules/--no-schedules",
            help="Also fire due schedule slots (`kitaru schedule`); --no-schedules leaves "
            "them to other workers.",
        ),
    ] = True,
    output: OutputOption = OutputFormat.TEXT,
) -> None:
    """Resume orphaned executions (running, but their process died) in this process.

    Polls the store and picks up every execution whose lease has expired, every
    released `kitaru.sleep()` whose wake-up time has come and every parent whose
    child flow ended, and fires due schedule slots. Safe to run several workers at
    once (each execution and each slot is taken by exactly one). Ctrl-C stops it
    after the executions it is running have finished; Ctrl-C twice stops at once.
    """
    with command("worker", output) as out:
        from kitaru.config import resolve_store_url
        from kitaru.worker import run_worker

        stop = threading.Event()
        banner = f"Kitaru worker on {redact_url(resolve_store_url())}: " + (
            "one pass."
            if once
            else f"polling every {poll_interval:g}s for orphaned executions (Ctrl-C to stop)."
        )
        try:
            with _worker_logs(), _stop_on_signals(stop):
                out.note(banner)  # only once Ctrl-C is handled: it tells people to press it
                resumed = run_worker(
                    poll_interval=poll_interval, once=once, stop=stop, schedules=schedules
                )
                running = _running_threads()
                if running:
                    out.note(f"Waiting for {len(running)} execution(s) to finish...")
                for thread in running:
                    thread.join()
        except KeyboardInterrupt:
            _abandon(out)
        data = {"resumed": resumed, "once": once, "poll_interval": poll_interval}

        def render(console: Console) -> None:
            console.print(f"Worker stopped; it resumed {resumed} execution(s).")

        out.item(data, render)


def register(app: typer.Typer) -> None:
    app.command("worker")(worker)

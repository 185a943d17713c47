"""``kitaru executions logs``: what a flow body and its checkpoints printed and logged.

Registered on the ``executions`` sub-app. Lines are the ones captured while the
execution ran (stdout, stderr and ``logging`` records), oldest first. With
``--follow`` new lines are polled for (by the id of the last line shown) until
the execution finishes; lines written just before it finished are still shown.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated

import typer

from kitaru._store import ExecutionStatus
from kitaru.cli._executions import app as executions_app
from kitaru.cli._executions_show import needs_worker
from kitaru.cli._output import (
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    MAX_COUNT,
    Output,
    OutputFormat,
    OutputOption,
    UsageProblem,
    command,
    document_stdout,
    escape_control,
    seconds_option,
)

if TYPE_CHECKING:
    from kitaru.client import KitaruClient
    from kitaru.client._models import Execution, LogEntry

COMMAND = "executions.logs"
#: How often ``--follow`` asks for new lines while the execution runs (``--interval``).
POLL_SECONDS = 3.0
#: After the execution finished, how long ``--follow`` keeps reading lines its runner
#: may still be writing (captured lines reach the store in batches).
DRAIN_SECONDS = 0.6
#: Lines read per query; a full page is followed by the next one at once.
PAGE = 1000
_BODY = "(flow)"

ExecIdArg = Annotated[
    str, typer.Argument(metavar="EXEC_ID", help="Execution id.", show_default=False)
]


def _client() -> KitaruClient:
    from kitaru.client import KitaruClient

    return KitaruClient()


# --- formatting -----------------------------------------------------------------------


def _timestamp(value: datetime | None) -> str:
    if value is None:
        return "-" * 23
    local = value.astimezone()
    return local.strftime("%Y-%m-%d %H:%M:%S.") + f"{local.microsecond // 1000:03d}"


def where(entry: LogEntry) -> str:
    """The call a line belongs to (its call id), or ``(flow)`` for the flow body."""
    return entry.call_id or entry.checkpoint_name or _BODY


def kind(entry: LogEntry) -> str:
    """``stdout``/``stderr`` for printed lines, the level for ``logging`` records."""
    if entry.stream == "logging":
        return entry.level or "LOG"
    return entry.stream


def format_line(entry: LogEntry, verbosity: int = 0) -> str:
    """One captured line for people: time, call, stream/level, message.

    ``-v`` adds the source (step or runner), ``-vv`` also where the line was
    written (module, file:line). Continuation lines of a multi-line message (a
    traceback) are indented.
    """
    message = entry.message
    if entry.stream == "logging" and entry.logger and entry.logger != "root":
        message = f"{entry.logger}: {message}"
    head = f"{_timestamp(entry.logged_at)}  {where(entry):<12}  {kind(entry):<7}  "
    if verbosity >= 1:
        head += f"{entry.source or '-':<6}  "
    if verbosity >= 2:
        origin = entry.module or "-"
        if entry.filename:
            origin += f" {entry.filename}:{entry.lineno if entry.lineno is not None else '?'}"
        head += f"{origin}  "
    first, *rest = message.split("\n")
    return "\n".join([head + first, *("    " + line for line in rest)])


def entry_dict(entry: LogEntry) -> dict[str, object]:
    """A log entry as JSON, without its null fields (as Kitaru 0.21 prints them)."""
    return {key: value for key, value in entry.to_dict().items() if value is not None}


def _text(line: str) -> str:
    """A line for the terminal: what the execution printed, its control characters
    (escape sequences) shown escaped, never run by the terminal."""
    return escape_control(line)


def _text_writer(verbosity: int) -> Callable[[list[LogEntry]], None]:
    def write(entries: list[LogEntry]) -> None:
        if entries:
            stream = document_stdout()
            stream.write("".join(_text(format_line(e, verbosity)) + "\n" for e in entries))
            stream.flush()

    return write


def _json_line(event: str, item: dict[str, object]) -> str:
    return json.dumps({"command": COMMAND, "event": event, "item": item}, ensure_ascii=False)


def _write_json_lines(entries: list[LogEntry]) -> None:
    if entries:
        stream = document_stdout()
        stream.write("".join(_json_line("log", entry_dict(e)) + "\n" for e in entries))
        stream.flush()


def _write_event(event: str, item: dict[str, object]) -> None:
    stream = document_stdout()
    stream.write(_json_line(event, item) + "\n")
    stream.flush()


def _write_grouped(entries: list[LogEntry], verbosity: int) -> None:
    """Lines under one heading per checkpoint call (the flow body's first), in call order."""
    groups: dict[str, list[LogEntry]] = {}
    for entry in entries:
        groups.setdefault(where(entry), []).append(entry)
    stream = document_stdout()
    for index, (call, lines) in enumerate(groups.items()):
        if index:
            stream.write("\n")
        heading = f"== {call} ({len(lines)} line{'s' if len(lines) != 1 else ''})"
        stream.write(_text(heading) + "\n")
        stream.write("".join("  " + _text(format_line(e, verbosity)) + "\n" for e in lines))
    stream.flush()


# --- reading --------------------------------------------------------------------------


def _check_checkpoint(out: Output, execution: Execution, checkpoint: str) -> None:
    """Fail for a ``--checkpoint`` that names no call of a finished execution."""
    calls = list(execution.checkpoints)
    if any(checkpoint in (c.name, c.call_id) for c in calls):
        return
    known = ", ".join(dict.fromkeys(c.call_id for c in calls)) or "none"
    out.fail(
        "KitaruStateError",
        f"Execution {execution.exec_id} has no checkpoint call named {checkpoint!r} "
        f"(its calls: {known}). Pass a checkpoint name or call id with --checkpoint.",
    )


def _read(
    client: KitaruClient,
    exec_id: str,
    *,
    checkpoint: str | None,
    source: str | None,
    after_id: int | None,
    limit: int | None,
) -> list[LogEntry]:
    """Every line after ``after_id`` (at most ``limit``), a page per query."""
    entries: list[LogEntry] = []
    while limit is None or len(entries) < limit:
        want = PAGE if limit is None else min(PAGE, limit - len(entries))
        page = client.executions.logs(
            exec_id, checkpoint=checkpoint, source=source, after_id=after_id, limit=want
        )
        entries.extend(page)
        if len(page) < want:
            break
        after_id = page[-1].id
    return entries


def _follow(
    out: Output,
    client: KitaruClient,
    exec_id: str,
    *,
    checkpoint: str | None,
    source: str | None,
    interval: float,
    emit: Callable[[list[LogEntry]], None],
) -> tuple[Execution, int]:
    """Print lines as they arrive until the execution finishes."""
    last_id: int | None = None
    shown = 0
    finished_at: float | None = None
    noted: str | None = None
    while True:
        # The status first: lines read after it include everything written before it.
        execution = client.executions.get(exec_id)
        entries = _read(
            client, exec_id, checkpoint=checkpoint, source=source, after_id=last_id, limit=None
        )
        emit(entries)
        if entries:
            last_id = entries[-1].id
            shown += len(entries)
        if execution.status.is_finished:
            if finished_at is None:
                # Measured from when it ended, so following an old execution is instant.
                ended = execution.ended_at
                age = 0.0 if ended is None else (datetime.now(tz=UTC) - ended).total_seconds()
                finished_at = time.monotonic() - max(age, 0.0)
            if not entries and time.monotonic() - finished_at >= DRAIN_SECONDS:
                return execution, shown
            time.sleep(min(0.1, interval))
            continue
        state = "orphaned" if needs_worker(execution) else execution.status.value
        if state != noted and state in ("waiting", "orphaned"):
            if state == "waiting":
                out.note(
                    f"Execution {exec_id} is waiting for input; still following (Ctrl-C to stop)."
                )
            else:
                out.note(
                    f"Execution {exec_id} is orphaned (its runner stopped); still following "
                    f"until someone resumes it (`kitaru executions resume {exec_id}`). "
                    "Ctrl-C to stop."
                )
        noted = state
        time.sleep(interval)


# --- the command ----------------------------------------------------------------------


#: ``--interval`` bounds: a poll at most 100 times a second, at least once an hour.
MIN_INTERVAL = 0.01
MAX_INTERVAL = 3600.0


def _interval(value: float) -> float:
    return seconds_option("--interval", value, low=MIN_INTERVAL, high=MAX_INTERVAL)


class LogSource(StrEnum):
    """Which lines: a checkpoint's (step) or the flow body's (runner)."""

    STEP = "step"
    RUNNER = "runner"


@executions_app.command("logs")
def logs(
    exec_id: ExecIdArg,
    checkpoint: Annotated[
        str | None,
        typer.Option(
            "--checkpoint",
            "-c",
            metavar="NAME",
            help="Only lines of this checkpoint (its name, or one call's id like 'name:2').",
            show_default=False,
        ),
    ] = None,
    source: Annotated[
        LogSource | None,
        typer.Option(
            "--source",
            case_sensitive=False,
            help="Only checkpoint lines (step) or flow body lines (runner); default both.",
            show_default=False,
        ),
    ] = None,
    follow: Annotated[
        bool,
        typer.Option(
            "--follow",
            "-f",
            help=(
                "Keep printing new lines until the execution finishes (a waiting one is "
                "followed until it finishes too; Ctrl-C stops). Exits 0 if it completed, "
                "else 1. With -o json, one JSON document per line as lines arrive "
                "(event 'log'), then one with event 'terminal' (or 'interrupted')."
            ),
        ),
    ] = False,
    interval: Annotated[
        float,
        typer.Option(
            "--interval",
            callback=_interval,
            help=f"With --follow: seconds between polls for new lines ({MIN_INTERVAL:g} to "
            f"{MAX_INTERVAL:g}).",
        ),
    ] = POLL_SECONDS,
    limit: Annotated[
        int | None,
        typer.Option(
            "--limit",
            "-n",
            min=1,
            max=MAX_COUNT,
            help="At most this many lines (the oldest first); with --follow, following "
            "still ends with the execution.",
            show_default=False,
        ),
    ] = None,
    grouped: Annotated[
        bool,
        typer.Option("--grouped", help="Group the lines by checkpoint call (text output only)."),
    ] = False,
    verbose: Annotated[
        int,
        typer.Option(
            "--verbose",
            "-v",
            count=True,
            help="-v also shows each line's source, -vv also where it was written.",
        ),
    ] = 0,
    output: OutputOption = OutputFormat.TEXT,
) -> None:
    """Show what an execution printed and logged, oldest first.

    Each line shows when it was written, the checkpoint call it belongs to
    ((flow) for the flow body), its stream (stdout, stderr) or logging level,
    and the message. Capture is on unless KITARU_CAPTURE_LOGS=0 was set where
    the execution ran.
    """
    with command(COMMAND, output) as out:
        if grouped and out.json:
            raise UsageProblem("--grouped is for text output; drop it with -o json.")
        if grouped and follow:
            raise UsageProblem("--grouped shows finished lines; drop it with --follow.")
        if checkpoint is not None and source is LogSource.RUNNER:
            raise UsageProblem(
                "--checkpoint selects checkpoint (step) lines; drop it with --source runner."
            )
        chosen = None if source is None else source.value
        client = _client()
        exec_id = client.executions.resolve_id(exec_id)  # a short prefix names it too
        if follow:
            _follow_command(
                out,
                client,
                exec_id,
                checkpoint=checkpoint,
                source=chosen,
                interval=interval,
                verbosity=verbose,
                limit=limit,
            )
            return
        execution = client.executions.get(exec_id)
        entries = _read(
            client, exec_id, checkpoint=checkpoint, source=chosen, after_id=None, limit=limit
        )
        if not entries and checkpoint is not None and execution.status.is_finished:
            _check_checkpoint(out, execution, checkpoint)

        def render(_console: object) -> None:
            if not entries:
                what = f" of checkpoint {checkpoint!r}" if checkpoint else ""
                out.note(f"No captured lines{what} in execution {exec_id}.")
                return
            if grouped:
                _write_grouped(entries, verbose)
            else:
                _text_writer(verbose)(entries)

        out.items([entry_dict(e) for e in entries], render)


def _follow_command(
    out: Output,
    client: KitaruClient,
    exec_id: str,
    *,
    checkpoint: str | None,
    source: str | None,
    interval: float,
    verbosity: int,
    limit: int | None,
) -> None:
    """``--follow``: lines as they arrive; exit 0 if the execution completed, else 1.

    With ``limit``, at most that many lines are printed, but following still ends with
    the execution: the terminal event and the exit code say how it ended."""
    write = _write_json_lines if out.json else _text_writer(verbosity)
    printed = 0

    def emit(entries: list[LogEntry]) -> None:
        nonlocal printed
        if limit is not None:
            entries = entries[: max(limit - printed, 0)]
        printed += len(entries)
        write(entries)

    try:
        final, shown = _follow(
            out,
            client,
            exec_id,
            checkpoint=checkpoint,
            source=source,
            interval=interval,
            emit=emit,
        )
    except KeyboardInterrupt:
        if out.json:
            _write_event("interrupted", {"exec_id": exec_id})
        else:
            sys.stderr.write(f"Interrupted; stopped following execution {exec_id}.\n")
        raise typer.Exit(EXIT_INTERRUPTED) from None
    if shown == 0 and checkpoint is not None and final.status.is_finished:
        _check_checkpoint(out, final, checkpoint)
    if out.json:
        _write_event(
            "terminal",
            {
                "exec_id": exec_id,
                "status": final.status.value,
                "failure": None if final.failure is None else final.failure.to_dict(),
            },
        )
    else:
        out.note(f"Execution {exec_id} {final.status.value}.")
    if final.status is not ExecutionStatus.COMPLETED:
        raise typer.Exit(EXIT_ERROR)


__all__ = ["entry_dict", "format_line", "kind", "logs", "where"]

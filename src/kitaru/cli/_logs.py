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
from typing import TYPE_CHECKING, Annotated

import typer

from kitaru.cli._executions import app as executions_app
from kitaru.cli._output import Output, OutputFormat, OutputOption, command

if TYPE_CHECKING:
    from kitaru.client import KitaruClient
    from kitaru.client._models import Execution, LogEntry

COMMAND = "executions logs"
#: How often ``--follow`` asks for new lines while the execution runs.
POLL_SECONDS = 0.25
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


def format_line(entry: LogEntry) -> str:
    """One captured line for people: time, call, stream/level, message.

    Continuation lines of a multi-line message (a traceback) are indented.
    """
    message = entry.message
    if entry.stream == "logging" and entry.logger and entry.logger != "root":
        message = f"{entry.logger}: {message}"
    head = f"{_timestamp(entry.logged_at)}  {where(entry):<12}  {kind(entry):<7}  "
    first, *rest = message.split("\n")
    return "\n".join([head + first, *("    " + line for line in rest)])


def _write_lines(entries: list[LogEntry]) -> None:
    if entries:
        sys.stdout.write("".join(format_line(e) + "\n" for e in entries))
        sys.stdout.flush()


def _write_json_lines(entries: list[LogEntry]) -> None:
    if entries:
        sys.stdout.write(
            "".join(
                json.dumps({"command": COMMAND, "item": e.to_dict()}, ensure_ascii=False) + "\n"
                for e in entries
            )
        )
        sys.stdout.flush()


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
    after_id: int | None,
    limit: int | None,
) -> list[LogEntry]:
    """Every line after ``after_id`` (at most ``limit``), a page per query."""
    entries: list[LogEntry] = []
    while limit is None or len(entries) < limit:
        want = PAGE if limit is None else min(PAGE, limit - len(entries))
        page = client.executions.logs(
            exec_id, checkpoint=checkpoint, source=None, after_id=after_id, limit=want
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
    limit: int | None,
    emit: Callable[[list[LogEntry]], None],
) -> tuple[Execution, int]:
    """Print lines as they arrive until the execution finishes (or ``limit`` lines)."""
    last_id: int | None = None
    shown = 0
    finished_at: float | None = None
    noted: str | None = None
    while True:
        # The status first: lines read after it include everything written before it.
        execution = client.executions.get(exec_id)
        remaining = None if limit is None else limit - shown
        entries = _read(client, exec_id, checkpoint=checkpoint, after_id=last_id, limit=remaining)
        emit(entries)
        if entries:
            last_id = entries[-1].id
            shown += len(entries)
        if limit is not None and shown >= limit:
            return execution, shown
        if execution.status.is_finished:
            if finished_at is None:
                # Measured from when it ended, so following an old execution is instant.
                ended = execution.ended_at
                age = 0.0 if ended is None else (datetime.now(tz=UTC) - ended).total_seconds()
                finished_at = time.monotonic() - max(age, 0.0)
            if not entries and time.monotonic() - finished_at >= DRAIN_SECONDS:
                return execution, shown
            time.sleep(min(0.1, POLL_SECONDS))
            continue
        state = "orphaned" if execution.is_orphaned else execution.status.value
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
        time.sleep(POLL_SECONDS)


# --- the command ----------------------------------------------------------------------


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
    follow: Annotated[
        bool,
        typer.Option(
            "--follow",
            "-f",
            help=(
                "Keep printing new lines until the execution finishes (a waiting one is "
                "followed until it finishes too; Ctrl-C stops). With -o json, one JSON "
                "document per line ({'command', 'item'}) as lines arrive."
            ),
        ),
    ] = False,
    limit: Annotated[
        int | None,
        typer.Option(
            "--limit",
            "-n",
            min=1,
            help="At most this many lines (the oldest first).",
            show_default=False,
        ),
    ] = None,
    output: OutputOption = OutputFormat.TEXT,
) -> None:
    """Show what an execution printed and logged, oldest first.

    Each line shows when it was written, the checkpoint call it belongs to
    ((flow) for the flow body), its stream (stdout, stderr) or logging level,
    and the message. Capture is on unless KITARU_CAPTURE_LOGS=0 was set where
    the execution ran.
    """
    with command(COMMAND, output) as out:
        client = _client()
        exec_id = client.executions.resolve_id(exec_id)  # a short prefix names it too
        if follow:
            emit = _write_json_lines if out.json else _write_lines
            final, shown = _follow(
                out, client, exec_id, checkpoint=checkpoint, limit=limit, emit=emit
            )
            if shown == 0 and checkpoint is not None and final.status.is_finished:
                _check_checkpoint(out, final, checkpoint)
            if limit is None or shown < limit:
                out.note(f"Execution {exec_id} {final.status.value}.")
            return
        execution = client.executions.get(exec_id)
        entries = _read(client, exec_id, checkpoint=checkpoint, after_id=None, limit=limit)
        if not entries and checkpoint is not None and execution.status.is_finished:
            _check_checkpoint(out, execution, checkpoint)

        def render(_console: object) -> None:
            if not entries:
                what = f" of checkpoint {checkpoint!r}" if checkpoint else ""
                out.note(f"No captured lines{what} in execution {exec_id}.")
                return
            _write_lines(entries)

        out.items([e.to_dict() for e in entries], render, exec_id=exec_id)


__all__ = ["format_line", "kind", "logs", "where"]

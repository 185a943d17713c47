"""``kitaru executions replay``: replay executions from a checkpoint.

Registered on the ``executions`` sub-app. Takes Kitaru 0.21's options (several
ids, ``--ids-file``, JSON overrides, ``--skip``, ``--tag``, ``--wait/--no-wait``,
``--on-error``) plus the older ``--override NAME=JSON`` and ``--input NAME=JSON``.
The replays run in threads of this process: even with ``--no-wait`` the command
exits only when they end (or pause at a wait). In JSON mode whatever the
replayed flows print goes to stderr, so stdout holds the JSON document alone.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from kitaru.cli._executions import app as executions_app
from kitaru.cli._output import (
    Output,
    OutputFormat,
    OutputOption,
    UsageProblem,
    command,
    styled_status,
)

if TYPE_CHECKING:
    from kitaru.client import KitaruClient
    from kitaru.replay import ReplaySubmission

COMMAND = "executions replay"


def _json_option(text: str | None, option: str) -> dict[str, Any] | None:
    if text is None:
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageProblem(f"{option}: {text!r} is not valid JSON ({exc.msg}).") from None
    if not isinstance(value, dict):
        raise UsageProblem(
            f"{option} expects a JSON object, e.g. {option} '{{\"name\": ...}}', got {text!r}."
        )
    return value


def _assignments(values: list[str] | None, option: str, what: str) -> dict[str, Any]:
    parsed: dict[str, Any] = {}
    for raw in values or []:
        key, sep, text = raw.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UsageProblem(f"{option} expects {what}=JSON, got {raw!r}.")
        try:
            parsed[key] = json.loads(text)
        except json.JSONDecodeError as exc:
            raise UsageProblem(
                f"{option} {key}: the value {text!r} is not valid JSON ({exc.msg}). "
                f"Quote strings as JSON, e.g. {option} '{key}=\"text\"'."
            ) from None
    return parsed


def _ids_from_file(path: Path) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageProblem(f"--ids-file {str(path)!r} cannot be read: {exc.strerror}.") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageProblem(f"--ids-file {str(path)!r} is not valid JSON ({exc.msg}).") from None
    if isinstance(data, dict) and "exec_ids" in data:
        data = data["exec_ids"]
    if not isinstance(data, list) or not all(isinstance(i, str) for i in data):
        raise UsageProblem(
            f"--ids-file {str(path)!r} must hold a JSON list of execution ids or "
            '{"exec_ids": [...]}.'
        )
    return list(data)


def _skips(values: list[str] | None) -> list[str] | None:
    if not values:
        return None
    return [part.strip() for value in values for part in value.split(",")]


def _render(submission: ReplaySubmission, client: KitaruClient, console: Console) -> None:
    from kitaru.cli._executions_show import render_execution

    if submission.wait and len(submission.results) == 1 and not submission.failures:
        render_execution(client.executions.get(submission.results[0].replay_exec_id), console)
        console.print()
    if submission.results:
        table = Table(title=f"Replays from {escape(submission.at)}")
        table.add_column("Source", no_wrap=True)
        table.add_column("Replay", no_wrap=True)
        table.add_column("Status", no_wrap=True)
        for row in submission.results:
            status = "running" if row.status == "submitted" else row.status
            table.add_row(row.original_exec_ref, row.replay_exec_id, styled_status(status))
        console.print(table)
    for title, rows in (("Skipped", submission.skipped), ("Failed", submission.failures)):
        if rows:
            table = Table(title=title)
            table.add_column("Source", no_wrap=True)
            table.add_column("Reason")
            for item in rows:
                table.add_row(item.original_exec_ref, escape(item.reason))
            console.print(table)
    summary = submission.summary
    console.print(
        f"Submission {submission.submission_id}: {summary.submitted} submitted, "
        f"{summary.completed} completed, {summary.failed} failed, {summary.skipped} skipped.",
        soft_wrap=True,
    )


def _linger(out: Output, client: KitaruClient, submission: ReplaySubmission) -> None:
    """Keep this process (which runs the replays) alive until they end or wait."""
    from kitaru._store import ExecutionStatus
    from kitaru.cli._executions import _wait_for_run
    from kitaru.client._prompt import let_go_here

    waiting = [
        row.replay_exec_id
        for row in submission.results
        if row.handle is not None
        and _wait_for_run(out, client, row.replay_exec_id).status is ExecutionStatus.WAITING
    ]
    if waiting:
        let_go_here(waiting)


@executions_app.command("replay")
def replay(
    at: Annotated[
        str,
        typer.Option(
            "--at",
            help=(
                "Checkpoint name, invocation id or call id to run live from; earlier "
                "checkpoints reuse the source's outputs."
            ),
            show_default=False,
        ),
    ],
    exec_ids: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="[EXEC_ID]...",
            help="Executions to replay (also see --ids-file).",
            show_default=False,
        ),
    ] = None,
    ids_file: Annotated[
        Path | None,
        typer.Option(
            "--ids-file",
            help='JSON file with a list of execution ids, or {"exec_ids": [...]}.',
            show_default=False,
        ),
    ] = None,
    flow_overrides: Annotated[
        str | None,
        typer.Option(
            "--flow-overrides",
            metavar="JSON",
            help="JSON object {flow parameter: value} merged over the recorded inputs.",
        ),
    ] = None,
    checkpoint_overrides: Annotated[
        str | None,
        typer.Option(
            "--checkpoint-overrides",
            metavar="JSON",
            help=(
                'JSON object {checkpoint name: {"output"|"input"|"code"|"model": ...}} for '
                "every call of that checkpoint."
            ),
        ),
    ] = None,
    invocation_overrides: Annotated[
        str | None,
        typer.Option(
            "--invocation-overrides",
            metavar="JSON",
            help="JSON object {call id: entry} for one call; wins over --checkpoint-overrides.",
        ),
    ] = None,
    skip: Annotated[
        list[str] | None,
        typer.Option(
            "--skip",
            metavar="A,B",
            help="Calls after --at that reuse their recorded output instead of running.",
        ),
    ] = None,
    tag: Annotated[
        str | None, typer.Option("--tag", help="Tag the replay executions with this label.")
    ] = None,
    wait: Annotated[
        bool | None,
        typer.Option(
            "--wait/--no-wait",
            help=(
                "Print when the replays have finished (default for one id) or as soon as "
                "they have started (default for several)."
            ),
            show_default=False,
        ),
    ] = None,
    on_error: Annotated[
        str | None,
        typer.Option(
            "--on-error",
            metavar="collect|fail",
            help="Stop at the first source that fails (default for one id) or list it.",
        ),
    ] = None,
    override: Annotated[
        list[str] | None,
        typer.Option(
            "--override",
            metavar="NAME_OR_CALL_ID=JSON",
            help="Replace a checkpoint's recorded output with this JSON value; repeatable.",
        ),
    ] = None,
    input_: Annotated[
        list[str] | None,
        typer.Option(
            "--input",
            metavar="NAME=JSON",
            help="Change a flow input (a parameter of the flow) to this JSON value; repeatable.",
        ),
    ] = None,
    output: OutputOption = OutputFormat.TEXT,
) -> None:
    """Replay executions from a checkpoint, each as a new execution.

    Checkpoints before --at reuse the source's recorded outputs (or the override
    values); --at and everything after it run live. Sources are never modified.
    With --on-error fail (the default for one id) a failed replay exits 1; with
    collect (the default for several) failures are listed in the result.
    """
    with command(COMMAND, output) as out:
        if on_error is not None and on_error not in ("collect", "fail"):
            raise UsageProblem(f"--on-error must be 'collect' or 'fail', got {on_error!r}.")
        ids = list(exec_ids or [])
        if ids_file is not None:
            ids += _ids_from_file(ids_file)
        flows = {
            **(_json_option(flow_overrides, "--flow-overrides") or {}),
            **_assignments(input_, "--input", "NAME"),
        }
        checkpoints = _json_option(checkpoint_overrides, "--checkpoint-overrides")
        invocations = _json_option(invocation_overrides, "--invocation-overrides")
        legacy = {
            f"checkpoint.{key}": value
            for key, value in _assignments(override, "--override", "NAME_OR_CALL_ID").items()
        }
        from kitaru.client import KitaruClient

        client = KitaruClient()
        if client.connection is not None and wait is not False:
            out.note(
                "Through a server, a worker runs the replays (`kitaru worker` connected to "
                "it, or `kitaru server start --worker`); waiting for them (--no-wait returns "
                "at once)..."
            )
        # In JSON mode `command()` already sends the replayed flows' prints to stderr.
        submission = client.executions.replay(
            ids,
            at=at,
            flow_overrides=flows or None,
            checkpoint_overrides=checkpoints,
            invocation_overrides=invocations,
            skip=_skips(skip),
            tag=tag,
            wait=wait,
            on_error=on_error,  # type: ignore[arg-type]
            overrides=legacy or None,
        )
        out.item(submission.to_json(), lambda console: _render(submission, client, console))
        if not submission.wait:
            out.note("The replays run in this process; exiting when they finish.")
            _linger(out, client, submission)
        if submission.summary.failed:
            # Collected, not raised (--on-error collect): the failures are part of the
            # result, which was printed whole, so the command itself succeeded.
            out.note(
                f"{submission.summary.failed} replay(s) failed: see 'failures' "
                "(--on-error fail stops at the first one with exit code 1)."
            )

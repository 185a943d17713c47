"""``kitaru executions ...``: inspect and control executions."""

from __future__ import annotations

import json
import sys
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from kitaru._store import ExecutionStatus
from kitaru.cli._executions_show import (
    DEFAULT_CALLS,
    CallsOption,
    exec_status,
    execution_item,
    executions_table,
    parse_calls,
    render_execution,
    runner_died_waiting,
    summary_item,
)
from kitaru.cli._output import (
    DEFAULT_PAGE_SIZE,
    EXIT_ERROR,
    MAX_COUNT,
    Output,
    OutputFormat,
    OutputOption,
    PageOption,
    SizeOption,
    UsageProblem,
    command,
    escape_control,
    exit_interrupted,
    fmt_duration,
    fmt_time,
    page_of,
)

if TYPE_CHECKING:
    from kitaru.client import KitaruClient
    from kitaru.client._models import Execution, PendingWait
    from kitaru.client._prompt import PromptOutcome
    from kitaru.errors import KitaruError

app = typer.Typer(
    help=(
        "Inspect and control executions: list them, show a checkpoint timeline, resume a "
        "crashed one, retry a failed one, replay one from a checkpoint, cancel or delete."
    ),
    no_args_is_help=True,
)

ExecIdArg = Annotated[
    str, typer.Argument(metavar="EXEC_ID", help="Execution id.", show_default=False)
]
NoWaitOption = Annotated[
    bool,
    typer.Option(
        "--no-wait",
        help=(
            "Print the execution as soon as it has started instead of when it has finished. "
            "It still runs in this process, so the command exits when the run ends."
        ),
    ),
]


def _client() -> KitaruClient:
    from kitaru.client import KitaruClient

    return KitaruClient()


def _now() -> datetime:
    return datetime.now(tz=UTC)


# --- commands -------------------------------------------------------------------------


@app.command("list")
def list_executions(
    flow: Annotated[
        str | None, typer.Option("--flow", help="Only executions of this flow (its name).")
    ] = None,
    status: Annotated[
        list[ExecutionStatus] | None,
        typer.Option(
            "--status",
            case_sensitive=False,
            metavar="STATUS",
            help=(
                "Only executions with this status (running, waiting, completed, failed, "
                "cancelled); repeat for several."
            ),
        ),
    ] = None,
    limit: Annotated[
        int | None,
        typer.Option(
            "--limit",
            "-n",
            min=1,
            max=MAX_COUNT,
            help="Only the N newest executions (instead of --page/--size).",
            show_default=False,
        ),
    ] = None,
    page: PageOption = None,
    size: SizeOption = None,
    schedule: Annotated[
        str | None,
        typer.Option("--schedule", help="Only executions this schedule started (its name)."),
    ] = None,
    output: OutputOption = OutputFormat.TEXT,
) -> None:
    """List executions, newest first, a page at a time.

    Orphaned executions (running, but their process died) are marked; resume them
    with `kitaru executions resume ID` or let `kitaru worker` do it.
    """
    with command("executions list", output) as out:
        if limit is not None and (page is not None or size is not None):
            raise UsageProblem(
                "--limit takes the N newest executions; do not combine it with --page/--size."
            )
        if limit is not None:
            page, size = 1, limit
        page = page or 1
        size = size or DEFAULT_PAGE_SIZE
        client = _client()
        statuses = list(status) if status else None
        by_schedule: dict[str, Any] = {} if schedule is None else {"schedule": schedule}
        executions = client.executions.list(
            flow=flow, status=statuses, page=page, size=size, **by_schedule
        )
        # One more row after this page tells whether there is a next one.
        has_more = limit is None and bool(
            client.executions.list(
                flow=flow, status=statuses, page=page * size + 1, size=1, **by_schedule
            )
        )

        def render(console: Console) -> None:
            if not executions:
                what = "No executions" + (f" of flow {flow!r}" if flow else "")
                if statuses:
                    what += " with status " + "/".join(s.value for s in statuses)
                console.print(escape(what + (" on this page." if page > 1 else ".")))
                return
            console.print(executions_table(executions))
            footer = f"Page {page}, {len(executions)} shown."
            if has_more:
                footer += f" More: --page {page + 1}."
            console.print(footer, style="dim")

        out.items([summary_item(e) for e in executions], render)


@app.command("get")
def get(
    exec_id: ExecIdArg,
    calls: CallsOption = str(DEFAULT_CALLS),
    output: OutputOption = OutputFormat.TEXT,
) -> None:
    """Show one execution: its details, failure and checkpoint timeline.

    The timeline lists checkpoint calls in order with their status (completed,
    failed, running, cached from another execution, reused by a replay), duration,
    attempts and type, after the counts by status. A long timeline shows its first
    and last calls (--calls N, or --calls all for every one); -o json has them all.
    A waiting execution also lists the waits it is paused at.
    """
    with command("executions get", output) as out:
        shown = parse_calls(calls)
        execution = _client().executions.get(exec_id)

        def render(console: Console) -> None:
            render_execution(execution, console, calls=shown)
            if execution.pending_waits:
                console.print()
                console.print(
                    pending_waits_table(
                        execution.pending_waits, title="Pending waits", with_exec=False
                    )
                )
                console.print(_answer_hint(execution.exec_id), style="dim", soft_wrap=True)

        out.item(execution_item(execution), render)


def _interrupted(out: Output, exec_id: str, *, printed: bool = False) -> NoReturn:
    """Ctrl-C while this process runs an execution: leave it as a crash would."""
    message = (
        f"Interrupted; execution {exec_id} stopped in this process. Resume it with "
        f"`kitaru executions resume {exec_id}` once its lease expires, or run `kitaru worker`."
    )
    exit_interrupted(out, message, json_error=not printed)


def _wait_for_run(out: Output, client: KitaruClient, exec_id: str) -> Execution:
    """Block until the run ends: finished, or paused at a wait. Through a server, say
    once (after a while) when no worker has taken it: nothing else would."""
    from kitaru.client import _remote_client as _remote
    from kitaru.errors import KitaruTimeoutError

    started, hinted = time.monotonic(), client.connection is None
    while True:
        try:
            return client.executions.wait(exec_id, timeout=0.5)
        except KitaruTimeoutError:
            execution = client.executions.get(exec_id)
            if execution.status is ExecutionStatus.WAITING:
                return execution
            if not hinted and time.monotonic() - started >= _remote.NO_WORKER_HINT_AFTER:
                hinted = True
                if _remote.handed_off(execution):
                    out.note(_remote.no_worker_hint(exec_id))


def _finish_run(
    out: Output, client: KitaruClient, started: Execution, *, wait: bool, verb: str
) -> None:
    """Print a started execution, or wait for it and print its final state.

    The run happens in a thread of this process, so even with ``--no-wait`` the
    process lives until the run ends (or pauses at a wait); Ctrl-C leaves the
    execution as a crash would, for ``resume`` or a worker to pick up.
    """
    exec_id = started.exec_id
    if not wait and client.connection is not None:  # a worker of the server runs it
        out.item(execution_item(started), lambda console: render_execution(started, console))
        out.note(
            f"Handed execution {exec_id} to the server: a `kitaru worker` on its store runs "
            f"it. Follow it with `kitaru executions get {exec_id}`."
        )
        return
    if not wait:
        out.item(execution_item(started), lambda console: render_execution(started, console))
        out.note(f"{verb} execution {exec_id} in this process; exiting when it finishes.")
        try:
            if _wait_for_run(out, client, exec_id).status is ExecutionStatus.WAITING:
                from kitaru.client._prompt import let_go_here

                let_go_here([exec_id])
        except KeyboardInterrupt:
            _interrupted(out, exec_id, printed=True)
        return
    out.note(f"{verb} execution {exec_id}; waiting for it to finish (Ctrl-C to stop)...")
    try:
        final = _wait_for_run(out, client, exec_id)
    except KeyboardInterrupt:
        _interrupted(out, exec_id)
    _fail_in_json(out, final)
    out.item(execution_item(final), lambda console: render_execution(final, console))
    if final.status is ExecutionStatus.WAITING:
        # Don't hold this process until the wait's timeout: release it now; input
        # resumes the execution wherever it is given.
        from kitaru.client._prompt import let_go_here

        let_go_here([exec_id])
        out.note(_still_waiting(final))
    elif final.status is not ExecutionStatus.COMPLETED:
        if not out.json:
            reason = final.failure.message if final.failure and final.failure.message else ""
            sys.stderr.write(
                f"Error: execution {exec_id} {final.status.value}"
                + (f": {escape_control(' '.join(reason.split()))}" if reason else ".")
                + "\n"
            )
        raise typer.Exit(EXIT_ERROR)


def _still_waiting(final: Execution) -> str:
    """What a waiting execution waits for, and what continues it."""
    exec_id = final.exec_id
    if final.status_reason == "sleeping":
        return (
            f"Execution {exec_id} is sleeping (kitaru.sleep); a `kitaru worker` wakes it when "
            "its time comes."
        )
    if final.status_reason == "waiting_for_child":
        return (
            f"Execution {exec_id} is waiting for a child execution; it continues when the "
            "child finishes (a `kitaru worker` resumes children whose process is gone)."
        )
    return f"Execution {exec_id} is waiting for input; it continues once it gets it."


def _run_error(final: Execution) -> KitaruError:
    """The typed error ``FlowHandle.wait()`` raises for an execution that ended so."""
    from kitaru.handle import failure_error

    failure: dict[str, Any] = {}
    if final.failure is not None:
        failure = {
            "origin": final.failure.origin.value,
            "message": final.failure.message,
            "exception_type": final.failure.exception_type,
            "checkpoint": final.failure.checkpoint,
        }
    return failure_error(final.exec_id, final.flow_name or "?", final.status, failure)


@app.command("resume")
def resume(
    exec_id: Annotated[
        str | None,
        typer.Argument(metavar="EXEC_ID", help="Execution id.", show_default=False),
    ] = None,
    exec_id_option: Annotated[
        str | None,
        typer.Option(
            "--exec-id", metavar="EXEC_ID", help="Execution id (as an option).", show_default=False
        ),
    ] = None,
    no_wait: NoWaitOption = False,
    output: OutputOption = OutputFormat.TEXT,
) -> None:
    """Continue an execution whose process died (its lease expired), in this process.

    Completed checkpoints are not run again; the flow continues from the first one
    without a recorded result. Exits 1 if the execution does not complete.
    """
    with command("executions resume", output) as out:
        if exec_id is not None and exec_id_option is not None and exec_id != exec_id_option:
            raise UsageProblem(
                f"Two different executions given ({exec_id} and --exec-id {exec_id_option}); "
                "pass one."
            )
        target = exec_id or exec_id_option
        if target is None:
            raise UsageProblem("Missing EXEC_ID: pass the execution to resume (or --exec-id ID).")
        client = _client()
        started = client.executions.resume(target, wait=False)
        _finish_run(out, client, started, wait=not no_wait, verb="Resuming")


@app.command("retry")
def retry(
    exec_id: ExecIdArg, no_wait: NoWaitOption = False, output: OutputOption = OutputFormat.TEXT
) -> None:
    """Run a failed execution again under the same id.

    Completed checkpoints are reused; the failed checkpoint and everything after it
    run again. Exits 1 if the execution does not complete.
    """
    with command("executions retry", output) as out:
        client = _client()
        started = client.executions.retry(exec_id, wait=False)
        _finish_run(out, client, started, wait=not no_wait, verb="Retrying")


@app.command("cancel")
def cancel(exec_id: ExecIdArg, output: OutputOption = OutputFormat.TEXT) -> None:
    """Cancel a running or waiting execution; its runner stops at the next checkpoint."""
    with command("executions cancel", output) as out:
        execution = _client().executions.cancel(exec_id)

        def render(console: Console) -> None:
            console.print(
                f"Cancelled execution {execution.exec_id} ({escape(execution.flow_name or '-')})."
            )

        out.item(execution_item(execution), render)


def _stdin_is_tty() -> bool:
    try:
        return sys.stdin is not None and sys.stdin.isatty()
    except (AttributeError, ValueError):
        return False


@app.command("delete")
def delete(
    exec_id: ExecIdArg,
    yes: Annotated[
        bool, typer.Option("--yes", "-y", help="Do not ask for confirmation (needed in scripts).")
    ] = False,
    recursive: Annotated[
        bool,
        typer.Option("--recursive", help="Also delete its child flows' executions (needed then)."),
    ] = False,
    output: OutputOption = OutputFormat.TEXT,
) -> None:
    """Delete an execution's record and the artifacts nothing else uses.

    Asks for confirmation; without a terminal (scripts, CI) pass --yes. An
    execution that started child flows is deleted only with --recursive.
    """
    with command("executions delete", output) as out:
        client = _client()
        execution = client.executions.get(exec_id)
        if not yes:
            if not _stdin_is_tty():
                raise UsageProblem(
                    f"Not deleting execution {exec_id} without confirmation: stdin is not a "
                    "terminal. Pass --yes to delete it."
                )
            confirmed = typer.confirm(
                f"Delete execution {exec_id} ({execution.flow_name}, "
                f"{execution.status.value}) and its artifacts?",
                default=False,
                err=True,
            )
            if not confirmed:
                out.fail("Aborted", f"Aborted; execution {exec_id} was not deleted.")
        client.executions.delete(exec_id, recursive=recursive)
        data = {
            "exec_id": exec_id,
            "flow_name": execution.flow_name,
            "status": execution.status.value,
            "deleted": True,
        }
        out.item(
            data,
            lambda console: console.print(
                f"Deleted execution {exec_id} ({escape(execution.flow_name or '-')})."
            ),
        )


# --- waits: list pending ones, answer them ----------------------------------------------


def _answer_hint(exec_id: str | None) -> str:
    target = exec_id or "EXEC_ID"
    return (
        f"Answer with `kitaru executions input {target} --value JSON [--wait NAME]`, "
        f"abort with `--abort`, or answer at a prompt with `--interactive`."
    )


def _since(wait: PendingWait) -> str:
    if wait.entered_waiting_at is None:
        return "-"
    age = max((_now() - wait.entered_waiting_at).total_seconds(), 0.0)
    return f"{fmt_time(wait.entered_waiting_at)} ({fmt_duration(age)} ago)"


def _wait_dict(wait: PendingWait) -> dict[str, Any]:
    from kitaru.client._prompt import schema_summary

    return {**wait.to_dict(), "expects": schema_summary(wait.schema)}


def pending_waits_table(
    pending: list[PendingWait], *, title: str | None = None, with_exec: bool = True
) -> Table:
    from kitaru.client._prompt import schema_summary

    table = Table(title=title, title_justify="left")
    if with_exec:
        table.add_column("Execution", no_wrap=True)
    table.add_column("Wait", no_wrap=True)
    table.add_column("Question")
    table.add_column("Expects")
    table.add_column("Metadata")
    table.add_column("Since", no_wrap=True)
    for wait in pending:
        row = [
            escape(wait.wait_id),
            escape(wait.question or "-"),
            escape(schema_summary(wait.schema)),
            escape(json.dumps(wait.metadata, default=str, sort_keys=True))
            if wait.metadata
            else "-",
            _since(wait),
        ]
        table.add_row(*([wait.exec_id, *row] if with_exec else row))
    return table


OptionalExecIdArg = Annotated[
    str | None,
    typer.Argument(
        metavar="EXEC_ID",
        help=(
            "Execution id; without it, the only pending wait in the store is answered "
            "(with --interactive: every waiting execution is asked about)."
        ),
        show_default=False,
    ),
]


@app.command("waits")
def list_waits(
    exec_id: Annotated[
        str | None,
        typer.Argument(
            metavar="EXEC_ID",
            help="Only this execution's waits (default: every waiting execution).",
            show_default=False,
        ),
    ] = None,
    page: PageOption = None,
    size: SizeOption = None,
    output: OutputOption = OutputFormat.TEXT,
) -> None:
    """List pending waits: what each waiting execution asks for, and since when.

    Shows the wait's name, its question, the type of answer it expects and its
    metadata. Answer one with `kitaru executions input EXEC_ID --value JSON`.
    """
    with command("executions waits", output) as out:
        client = _client()
        pending = page_of(client.executions.pending_waits(exec_id), page, size)
        status = client.executions.get(exec_id).status if exec_id and not pending else None

        def render(console: Console) -> None:
            if not pending:
                if exec_id is None:
                    console.print("No executions are waiting for input.")
                else:
                    assert status is not None
                    console.print(
                        f"Execution {exec_id} has no pending wait (it is {status.value})."
                    )
                return
            console.print(pending_waits_table(pending, with_exec=exec_id is None))
            console.print(_answer_hint(exec_id), style="dim", soft_wrap=True)

        out.items([_wait_dict(w) for w in pending], render)


def _target_wait(pending: list[PendingWait], wait: str | None) -> PendingWait | None:
    """The pending wait an input will go to (None when the client must decide/refuse)."""
    if wait is not None:
        matches = [w for w in pending if wait in (w.wait_id, w.name)]
        return matches[-1] if matches else None
    return pending[0] if len(pending) == 1 else None


def _settle(client: KitaruClient, exec_id: str) -> None:
    """Block until a run in this process finished or paused at a wait (checked often)."""
    from kitaru.errors import KitaruTimeoutError

    while True:
        try:
            client.executions.wait(exec_id, timeout=0.05)
            return
        except KitaruTimeoutError:
            if client.executions.get(exec_id).status is ExecutionStatus.WAITING:
                return


def _run_here(out: Output, client: KitaruClient, exec_id: str) -> Execution:
    """Wait for a run this command started to finish or pause, then let go of its wait."""
    from kitaru.client._prompt import let_go_here

    out.note(
        f"Resumed execution {exec_id} in this process; waiting for it to finish or to reach "
        "its next wait (Ctrl-C to stop)..."
    )
    try:
        _settle(client, exec_id)
        let_go_here([exec_id])
    except KeyboardInterrupt:
        _interrupted(out, exec_id)
    return client.executions.get(exec_id)


def _fail_in_json(out: Output, final: Execution) -> None:
    """In JSON mode, an execution this command ran that ended failed or cancelled fails
    the command before anything is printed: its error document on stderr, stdout empty
    (contract §6). Text mode prints the execution, then ``_fail_if_unsuccessful``."""
    if out.json and final.status in (ExecutionStatus.FAILED, ExecutionStatus.CANCELLED):
        error = _run_error(final)
        out.fail(type(error).__name__, str(error))


def _fail_if_unsuccessful(out: Output, final: Execution) -> None:
    """Exit 1 when an execution this command ran ended failed or cancelled (as resume does)."""
    if final.status not in (ExecutionStatus.FAILED, ExecutionStatus.CANCELLED):
        return
    if not out.json:  # the JSON document already carries the status and failure
        reason = final.failure.message if final.failure and final.failure.message else ""
        sys.stderr.write(
            f"Error: execution {final.exec_id} {final.status.value} after it was resumed here"
            + (f": {escape_control(' '.join(reason.split()))}" if reason else ".")
            + "\n"
        )
    raise typer.Exit(EXIT_ERROR)


def _state_note(out: Output, final: Execution, *, ran_here: bool, no_resume: bool) -> None:
    from kitaru.client import _remote_client as _remote

    exec_id = final.exec_id
    if _remote.handed_off(final):  # through a server, with --no-resume: not waited for
        out.note(_remote.no_worker_hint(exec_id))
        return
    if final.status is ExecutionStatus.WAITING:
        if final.pending_wait is not None:
            out.note(
                f"Execution {exec_id} is waiting again, at {final.pending_wait.wait_id!r}. "
                + _answer_hint(exec_id)
            )
        elif runner_died_waiting(final):
            out.note(
                f"Execution {exec_id} has its answer, but its runner ({final.lease_owner}) "
                f"died: continue it with `kitaru executions resume {exec_id}` or `kitaru worker`."
            )
        elif final.lease_owner is not None and not ran_here:
            out.note(
                f"Execution {exec_id} has its answer; its runner ({final.lease_owner}) picks it "
                "up. If that process is gone, `kitaru worker` (or `kitaru executions resume "
                f"{exec_id}`) continues it once the runner's lease has expired."
            )
        elif no_resume:
            out.note(
                f"Execution {exec_id} stays waiting with no runner (--no-resume): resume it "
                f"with `kitaru executions resume {exec_id}` or let `kitaru worker` pick it up."
            )
        return
    if final.status is ExecutionStatus.RUNNING and not ran_here:
        out.note(f"Execution {exec_id} continues in the process that is running it.")
    elif final.status is ExecutionStatus.COMPLETED:
        out.note(f"Execution {exec_id} completed.")


@app.command("input")
def input_(
    exec_id: OptionalExecIdArg = None,
    value: Annotated[
        str | None,
        typer.Option(
            "--value",
            metavar="JSON",
            help=(
                "The answer, as JSON (true, 3, '{\"a\": 1}'); text that is not JSON is taken "
                "as a string. Omit it for a plain continue gate (a wait without schema)."
            ),
            show_default=False,
        ),
    ] = None,
    wait: Annotated[
        str | None,
        typer.Option(
            "--wait",
            metavar="NAME",
            help="Which pending wait (its name or id); needed when there are several.",
            show_default=False,
        ),
    ] = None,
    abort: Annotated[
        bool,
        typer.Option(
            "--abort",
            help="Abort the wait instead: kitaru.wait() raises KitaruWaitAbortedError.",
        ),
    ] = False,
    interactive: Annotated[
        bool,
        typer.Option(
            "--interactive",
            "-i",
            help=(
                "Prompt for each pending wait of EXEC_ID, or of every waiting execution "
                "when no id is given (answers are read from stdin)."
            ),
        ),
    ] = False,
    no_resume: Annotated[
        bool,
        typer.Option(
            "--no-resume",
            help=(
                "Only record the answer. An execution whose runner let go stays waiting "
                "until `kitaru executions resume` or a `kitaru worker` continues it."
            ),
        ),
    ] = False,
    output: OutputOption = OutputFormat.TEXT,
) -> None:
    """Answer (or abort) a pending wait of a waiting execution.

    The answer is validated against the wait's schema; an invalid one is refused
    with the details and nothing changes. A runner still waiting wakes at once.
    An execution whose runner let go (its wait timed out) is resumed in this
    process until it finishes or reaches its next wait, unless --no-resume.
    Exits 1 if the execution resumed here fails.
    """
    with command("executions input", output) as out:
        if interactive:
            if value is not None or abort:
                raise UsageProblem(
                    "--interactive asks for each answer at a prompt; do not combine it with "
                    "--value or --abort."
                )
            if wait is not None:
                raise UsageProblem(
                    "--interactive prompts for every pending wait; use --wait NAME with "
                    "--value or --abort to answer one."
                )
            _input_interactive(out, exec_id, resume=not no_resume)
            return
        if exec_id is None:
            exec_id = _only_waiting_execution(wait)
        if abort and value is not None:
            raise UsageProblem("--abort resolves the wait without an answer; drop --value.")
        _input_one(out, exec_id, wait=wait, value=value, abort=abort, no_resume=no_resume)


def _only_waiting_execution(wait: str | None) -> str:
    """No EXEC_ID: the execution of the only pending wait in the store (0.21's rule),
    or of the only one named ``wait``."""
    pending = _client().executions.pending_waits(None)
    if wait is not None:
        pending = [w for w in pending if wait in (w.name, w.wait_id)]
    if len(pending) == 1:
        return str(pending[0].exec_id)
    which = "" if wait is None else f" named {wait!r}"
    if not pending:
        raise UsageProblem(f"No execution is waiting for input{which}; nothing to answer.")
    listed = ", ".join(f"{w.exec_id} ({w.name or w.wait_id})" for w in pending[:5])
    more = f" and {len(pending) - 5} more" if len(pending) > 5 else ""
    raise UsageProblem(
        f"{len(pending)} waits{which} are pending: {listed}{more}. Give the EXEC_ID (and "
        "--wait NAME) to answer one, or use --interactive to be asked about each."
    )


def _input_one(
    out: Output,
    exec_id: str,
    *,
    wait: str | None,
    value: str | None,
    abort: bool,
    no_resume: bool,
) -> None:
    from kitaru._backend import get_backend
    from kitaru._runtime import control
    from kitaru.cli._input_support import settle_after_answer, value_candidates
    from kitaru.client import _remote_client as _remote
    from kitaru.client._prompt import recorded_answer, schema_summary
    from kitaru.errors import KitaruWaitValidationError

    client = _client()
    exec_id = client.executions.resolve_id(exec_id)  # a short prefix names it too
    before = client.executions.get(exec_id)
    pending = client.executions.pending_waits(exec_id)
    target = _target_wait(pending, wait)
    if not abort and value is None and target is not None and target.schema is not None:
        raise UsageProblem(
            f"Wait {target.wait_id!r} of execution {exec_id} expects "
            f"{schema_summary(target.schema)}; pass it with --value JSON (or --abort)."
        )
    answer: Any = None
    # Record the answer, then resume here only if no runner holds the execution; the
    # client would do the same with resume=True, but this way we know who runs it.
    if abort:
        client.executions.abort_wait(exec_id, wait=wait, resume=False)
    elif value is None:
        client.executions.input(exec_id, wait=wait, value=None, resume=False)
    else:
        candidates = value_candidates(value, target, exec_id)
        for index, candidate in enumerate(candidates):
            try:
                client.executions.input(exec_id, wait=wait, value=candidate, resume=False)
            except KitaruWaitValidationError:
                if index == len(candidates) - 1:
                    raise
                continue
            answer = candidate
            break
    if target is None:  # the client accepted it, so it was the only pending wait
        target = pending[0] if pending else None
    remote = client.connection is not None  # a server's worker resumes it, not this process
    ran_here = not no_resume and not remote and control.resume_released(get_backend(), exec_id)
    # No runner held it: the server handed it to its workers, as a remote retry or resume
    # does. Wait for one to run it (to its end or next wait), saying once if none does.
    handed = remote and not no_resume and _remote.handed_off(client.executions.get(exec_id))
    if ran_here:
        final = _run_here(out, client, exec_id)
    elif handed:
        try:
            final = _wait_for_run(out, client, exec_id)
        except KeyboardInterrupt:
            _interrupted(out, exec_id)
    else:
        final = settle_after_answer(client, exec_id, None if target is None else target.wait_id)
    if answer is not None and target is not None:
        # As validated and stored (through a server: as the server recorded it).
        answer = recorded_answer(exec_id, target.wait_id, backend=client._backend)
    outcome = "aborted" if abort else "answered"
    # 0.21's item is the execution; what this input did is under "input".
    data = {
        **execution_item(final),
        "input": {
            "wait_id": None if target is None else target.wait_id,
            "name": None if target is None else target.name,
            "outcome": outcome,
            "value": answer,
            "resumed": final.run_count > before.run_count,
            "ran_here": ran_here,
        },
    }

    def render(console: Console) -> None:
        which = f"wait {target.wait_id!r}" if target is not None else "the wait"
        if abort:
            console.print(f"Aborted {which} of execution {exec_id}.")
        else:
            shown = "" if value is None else f" with {json.dumps(answer, default=str)}"
            console.print(escape(f"Answered {which} of execution {exec_id}{shown}."))
        console.print(f"Status: {exec_status(final)}")

    if ran_here or handed:
        _fail_in_json(out, final)
    out.item(data, render)
    _state_note(out, final, ran_here=ran_here, no_resume=no_resume)
    if ran_here or handed:
        _fail_if_unsuccessful(out, final)


def _input_interactive(out: Output, exec_id: str | None, *, resume: bool) -> None:
    from kitaru.client._prompt import let_go_here, prompt_waits
    from kitaru.errors import KitaruStateError

    client = _client()
    if exec_id is not None:
        exec_id = client.executions.resolve_id(exec_id)  # a short prefix names it too
    if exec_id is not None and not client.executions.pending_waits(exec_id):
        status = client.executions.get(exec_id).status
        raise KitaruStateError(f"Execution {exec_id} has no pending wait (it is {status.value}).")
    outcomes: list[PromptOutcome] = []
    asked: set[str] = set()
    started_here: set[str] = set()
    try:
        while True:
            prompt_round = prompt_waits(exec_id, skip=asked, resume=resume)
            outcomes.extend(prompt_round.outcomes)
            asked |= {o.key for o in prompt_round.outcomes}
            touched = {o.exec_id for o in prompt_round.outcomes if o.outcome != "skipped"}
            started_here |= {o.exec_id for o in prompt_round.outcomes if o.ran_here}
            for ran in sorted(touched & started_here):
                _settle(client, ran)
            if prompt_round.closed or not prompt_round.outcomes:
                break
            fresh = [
                w
                for w in client.executions.pending_waits(exec_id)
                if f"{w.exec_id}:{w.wait_id}" not in asked
            ]
            if not fresh:
                break
        let_go_here(sorted(started_here))
    except KeyboardInterrupt:
        let_go_here(sorted(started_here), timeout=2.0)
        raise
    finals: dict[str, Execution] = {
        e: client.executions.get(e) for e in sorted({o.exec_id for o in outcomes})
    }
    items = [{**o.to_dict(), "status": finals[o.exec_id].status.value} for o in outcomes]

    def render(console: Console) -> None:
        if not outcomes:
            console.print("No executions are waiting for input.")
            return
        table = Table()
        table.add_column("Execution", no_wrap=True)
        table.add_column("Wait", no_wrap=True)
        table.add_column("Outcome", no_wrap=True)
        table.add_column("Value")
        table.add_column("Status now", no_wrap=True)
        for o in outcomes:
            shown = "-" if o.outcome != "answered" else json.dumps(o.value, default=str)
            table.add_row(
                o.exec_id,
                escape(o.wait_id),
                escape(o.outcome + (f": {o.message}" if o.message else "")),
                escape(shown),
                exec_status(finals[o.exec_id]),
            )
        console.print(table)

    failed_here = [
        e
        for e in sorted(started_here)
        if finals.get(e) is not None
        and finals[e].status in (ExecutionStatus.FAILED, ExecutionStatus.CANCELLED)
    ]
    # Several executions, each with its own outcome: the list is the answer even when
    # one this command resumed failed (its status says so; the exit code is 1).
    out.items(items, render)
    if failed_here:
        _fail_if_unsuccessful(out, finals[failed_here[0]])

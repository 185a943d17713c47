"""The root Typer application; command groups attach themselves here."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import typer
from typer._click.exceptions import ClickException, NoArgsIsHelpError
from typer.core import TyperGroup

from kitaru._version import __version__
from kitaru.cli._output import (
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    OutputFormat,
    StdoutUnwritable,
    command_name,
    debug_enabled,
    escape_undecodable_output,
    guarded,
    print_error,
    report_stdout_failure,
    stdout_error,
    warnings_as_lines,
)
from kitaru.errors import KitaruError, public_type_name


def _sniff_format(args: Sequence[str]) -> OutputFormat:
    """The ``-o/--output`` value in raw arguments (for errors raised before parsing)."""
    value = ""
    for index, token in enumerate(args):
        if token == "--":
            break
        if token in ("-o", "--output") and index + 1 < len(args):
            value = args[index + 1]
        elif token.startswith("--output="):
            value = token.partition("=")[2]
        elif token.startswith("-o") and not token.startswith("--") and len(token) > 2:
            value = token[2:].lstrip("=")
    return OutputFormat.JSON if value.strip().lower() == "json" else OutputFormat.TEXT


class KitaruGroup(TyperGroup):
    """The root group: one error line (or JSON) and an exit code, never a traceback.

    Commands handle their own Kitaru errors (see ``_output.command``); this catches
    what happens before a command runs (unknown command, bad option value, missing
    argument) and anything that escaped a command.
    """

    def _command_name(self, args: Sequence[str]) -> str:
        names: list[str] = []
        current: Any = self
        for token in args:
            commands = getattr(current, "commands", None)
            if token.startswith("-") or not isinstance(commands, dict) or token not in commands:
                break
            names.append(token)
            current = commands[token]
        return command_name(" ".join(names))

    def main(  # type: ignore[override]
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        argv = list(sys.argv[1:] if args is None else args)
        escape_undecodable_output()
        with warnings_as_lines(), _stdout_failures_told_apart():
            code = self._run(argv, prog_name, complete_var, **extra)
        code = self._flush_stdout(argv, code)
        if standalone_mode:
            sys.exit(code)
        return code

    def _flush_stdout(self, argv: list[str], code: int) -> int:
        """Flush what is left for stdout: a failure is an error (exit 1) reported once,
        and the unwritable rest is dropped so that the interpreter's exit does not
        fail on it again with a traceback."""
        try:
            sys.stdout.flush()
        except OSError as exc:
            if code == 0:
                report_stdout_failure(
                    self._command_name(argv), _sniff_format(argv), stdout_error(exc)
                )
                code = EXIT_ERROR
            _drop_stdout()
        return code

    def _run(
        self, argv: list[str], prog_name: str | None, complete_var: str | None, **extra: Any
    ) -> int:
        code: int
        try:
            result = super().main(
                args=argv,
                prog_name=prog_name or "kitaru",
                complete_var=complete_var,
                standalone_mode=False,
                **extra,
            )
            code = result if isinstance(result, int) else 0
        except NoArgsIsHelpError as exc:
            # A group run without a subcommand (bare `kitaru` too) shows its help: not
            # an error, so exit 0 as Kitaru 0.21 does.
            message = exc.format_message()
            if message:
                typer.echo(message)
            code = 0
        except ClickException as exc:
            ctx = getattr(exc, "ctx", None)
            name = (
                command_name(ctx.command_path.removeprefix(ctx.find_root().info_name or ""))
                if ctx is not None
                else self._command_name(argv)
            )
            message = exc.format_message()
            if ctx is not None and ctx.command.get_help_option(ctx) is not None:
                message = f"{message.rstrip('.')}. Try '{ctx.command_path} --help'."
            print_error(name, _sniff_format(argv), "UsageError", message)
            # Every failure exits 1, bad command-line input included (Click's is 2).
            code = EXIT_ERROR if exc.exit_code else 0
        except typer.Abort:
            print_error(self._command_name(argv), _sniff_format(argv), "Aborted", "Aborted.")
            code = EXIT_ERROR
        except KeyboardInterrupt:
            print_error(
                self._command_name(argv), _sniff_format(argv), "Interrupted", "Interrupted."
            )
            code = EXIT_INTERRUPTED
        except StdoutUnwritable as exc:
            report_stdout_failure(self._command_name(argv), _sniff_format(argv), exc)
            code = EXIT_ERROR
        except KitaruError as exc:
            if debug_enabled():
                raise
            print_error(
                self._command_name(argv), _sniff_format(argv), public_type_name(exc), str(exc)
            )
            code = EXIT_ERROR
        except Exception as exc:
            if debug_enabled():
                raise
            print_error(
                self._command_name(argv),
                _sniff_format(argv),
                type(exc).__name__,
                f"Unexpected internal error ({type(exc).__name__}: {exc}). This is a bug in "
                f"Kitaru; re-run with KITARU_DEBUG=1 to see the traceback and please report it.",
            )
            code = EXIT_ERROR
        return code


@contextmanager
def _stdout_failures_told_apart() -> Iterator[None]:
    """While a command runs, a failed write to stdout (help and version included) is a
    ``StdoutUnwritable`` error, not an internal one."""
    saved = sys.stdout
    if saved is None:
        yield
        return
    sys.stdout = guarded(saved)
    try:
        yield
    finally:
        sys.stdout = saved


def _drop_stdout() -> None:
    """Point the process's stdout at /dev/null once it cannot be written: what is still
    buffered for it would otherwise fail again when the interpreter exits."""
    stdout = sys.__stdout__
    if stdout is None or sys.stdout is not stdout:
        return  # not the process's own stdout (a test's capture): nothing to drop
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass


app = typer.Typer(
    name="kitaru",
    cls=KitaruGroup,
    help=(
        "Kitaru: durable execution for Python AI agents.\n\n"
        "Inspect and control executions of your @flow functions: list them, see their "
        "checkpoint timeline, resume, retry or replay them, and manage stacks. "
        "Every command accepts -o json for scripts."
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    # Help renders as written: no Rich markup (it swallowed "[tool.kitaru]").
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"kitaru {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False,
        "--version",
        "-V",
        callback=_show_version,
        is_eager=True,
        help="Print the Kitaru version and exit.",
    ),
) -> None:
    """Kitaru: durable execution for Python AI agents."""


def _register() -> None:
    import kitaru.cli._logs
    import kitaru.cli._replay  # noqa: F401  (adds `executions replay`)
    from kitaru.cli._analysis import register as register_analysis
    from kitaru.cli._analytics import app as analytics_app
    from kitaru.cli._artifacts import app as artifacts_app
    from kitaru.cli._auth import app as auth_app
    from kitaru.cli._clean import app as clean_app
    from kitaru.cli._executions import app as executions_app
    from kitaru.cli._info import register as register_info
    from kitaru.cli._init import register as register_init
    from kitaru.cli._log_store import app as log_store_app
    from kitaru.cli._models import app as models_app
    from kitaru.cli._schedules import app as schedules_app
    from kitaru.cli._secrets import app as secrets_app
    from kitaru.cli._server import register as register_server
    from kitaru.cli._stacks import app as stacks_app
    from kitaru.cli._status import register as register_status
    from kitaru.cli._worker import register as register_worker

    register_init(app)
    register_status(app)
    register_info(app)
    app.add_typer(executions_app, name="executions")
    app.add_typer(artifacts_app, name="artifacts")
    app.add_typer(stacks_app, name="stack")
    app.add_typer(schedules_app, name="schedule")
    register_worker(app)
    app.add_typer(clean_app, name="clean")
    register_analysis(executions_app)
    register_server(app)
    app.add_typer(auth_app, name="auth")
    app.add_typer(models_app, name="model")
    app.add_typer(secrets_app, name="secrets")
    app.add_typer(log_store_app, name="log-store")
    app.add_typer(analytics_app, name="analytics")


_register()


def main() -> None:
    app()

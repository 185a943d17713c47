"""Shared output layer of the CLI: tables for people, ``-o json`` for scripts.

Every command builds an :class:`Output` for its name and chosen format and
prints through it. In JSON mode stdout carries exactly one JSON document:

* one item: ``{"command": "stack.show", "item": {...}}``
* a list: ``{"command": "executions.list", "items": [...], "count": N}``

``command`` is the command path joined by dots, hyphens as underscores
(``executions.diff_matrix``), as Kitaru 0.21 prints it. While a JSON-mode
command runs, whatever flows running in this process print goes to stderr
(still captured in the execution's logs), so stdout holds the document alone.

An error goes to stderr, so stdout stays empty: in JSON mode as one document
``{"command": ..., "error": {"message": ..., "type": ...}}``, in text mode as a
single ``Error: <message>`` line. Every failure, bad command-line input
included, exits with 1; no traceback is ever shown (set ``KITARU_DEBUG=1``).

Text that is not valid Unicode (lone surrogates, from bytes that do not decode)
is printed escaped (``\udcff``): streams use ``backslashreplace`` and JSON
documents carry the escape as text, so they stay valid UTF-8 JSON.

Text output never writes the control characters of stored text (a checkpoint's
printed lines, an exception message, names) to the terminal: they are shown
escaped (``\\x1b``), so a stored escape sequence cannot retitle, clear or recolour
the user's terminal. Consoles made here (:func:`make_console`) and the error and
warning lines do it; JSON keeps the exact text (JSON escapes control characters).
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, NoReturn, TextIO

import typer
from rich.console import Console
from rich.markup import escape
from rich.segment import Segment
from rich.text import Text

from kitaru.errors import KitaruError, KitaruRuntimeError, public_type_name

EXIT_ERROR = 1
#: Bad command-line input exits 1 as well (Kitaru 0.21's contract; Click's own is 2).
EXIT_USAGE = 1
EXIT_INTERRUPTED = 130

DEBUG_ENV = "KITARU_DEBUG"


class OutputFormat(StrEnum):
    """How a command prints its result."""

    TEXT = "text"
    JSON = "json"
    #: Our name before Kitaru 0.21's ``text``; still accepted on the command line.
    TABLE = "text"


_FORMAT_NAMES = {"text": OutputFormat.TEXT, "table": OutputFormat.TEXT, "json": OutputFormat.JSON}


def parse_format(value: str | OutputFormat) -> OutputFormat:
    """``text`` or ``json`` (any case; ``table`` is an old name of ``text``)."""
    if isinstance(value, OutputFormat):
        return value
    fmt = _FORMAT_NAMES.get(str(value).strip().lower())
    if fmt is None:
        raise typer.BadParameter(f"{value!r} is not one of 'text', 'json'.")
    return fmt


OutputOption = Annotated[
    OutputFormat,
    typer.Option(
        "--output",
        "-o",
        parser=parse_format,
        metavar="[text|json]",
        help="Output format: 'text' for people, 'json' for scripts (only JSON on stdout).",
    ),
]


DEFAULT_PAGE_SIZE = 20
#: The largest count an option takes (--limit, --page, --size, --max-scan, ...): values
#: reach store queries, where SQLite and PostgreSQL take 64-bit integers, and
#: page x size must stay below that too.
MAX_COUNT = 1_000_000_000

PageOption = Annotated[
    int | None,
    typer.Option(
        "--page",
        min=1,
        max=MAX_COUNT,
        help="Which page, from 1 (default 1).",
        show_default=False,
    ),
]
SizeOption = Annotated[
    int | None,
    typer.Option(
        "--size",
        min=1,
        max=MAX_COUNT,
        help=f"Items per page (default {DEFAULT_PAGE_SIZE}).",
        show_default=False,
    ),
]


def seconds_option(name: str, value: float, *, low: float, high: float) -> float:
    """A number of seconds from the command line, refused unless finite and in range.

    (Click's FloatRange lets NaN through, and an infinite wait overflows later.)
    """
    if not math.isfinite(value) or not low <= value <= high:
        raise typer.BadParameter(
            f"{name} takes a number of seconds from {low:g} to {high:g}, got {value!r}."
        )
    return value


def page_of(items: Sequence[Any], page: int | None, size: int | None) -> list[Any]:
    """One 1-based page of ``items``; a page past the end is empty."""
    page = page or 1
    size = size or DEFAULT_PAGE_SIZE
    return list(items[(page - 1) * size : page * size])


def command_name(path: str) -> str:
    """A command path, dotted as 0.21 names it: groups keep their names, a command's
    own name takes ``_`` for ``-`` (``executions diff-matrix`` ->
    ``executions.diff_matrix``, ``log-store show`` -> ``log-store.show``)."""
    parts = path.replace(".", " ").split()
    if not parts:
        return "kitaru"
    return ".".join([*parts[:-1], parts[-1].replace("-", "_")])


class UsageProblem(Exception):
    """Bad command-line input found by a command itself (exit code 1)."""


def debug_enabled() -> bool:
    return os.environ.get(DEBUG_ENV, "").strip().lower() not in ("", "0", "false", "no")


_CONTROL_RE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def escape_control(text: str) -> str:
    """``text`` with its control characters (C0 but newline and tab, DEL, C1; ESC
    among them) written visibly as ``\\x1b``: stored text must not drive the terminal."""
    if not _CONTROL_RE.search(text):
        return text
    return _CONTROL_RE.sub(lambda m: f"\\x{ord(m[0]):02x}", text)


class SafeConsole(Console):
    """A Rich console that shows control characters in what it prints escaped.

    Strings are escaped before layout (so tables measure what is shown); the
    segments written are checked once more for ``Text`` built elsewhere. Rich's own
    styling and cursor codes are added after that, so colours still work.
    """

    def render_str(self, text: str, **kwargs: Any) -> Text:
        return super().render_str(escape_control(text), **kwargs)

    def _render_buffer(self, buffer: Iterable[Segment]) -> str:
        return super()._render_buffer(_escaped_segments(buffer))


def _escaped_segments(buffer: Iterable[Segment]) -> Iterator[Segment]:
    for text, style, control in buffer:
        if control is None and _CONTROL_RE.search(text):
            text = escape_control(text)
        yield Segment(text, style, control)


class StdoutUnwritable(KitaruRuntimeError):
    """Writing the command's output to stdout failed (a full disk, a closed pipe).

    ``reader_gone``: the pipe's reader closed it (``kitaru ... | head``); that is no
    error to tell anyone about, only a reason to stop.
    """

    def __init__(self, message: str, *, reader_gone: bool = False) -> None:
        super().__init__(message)
        self.reader_gone = reader_gone


class _GuardedStream:
    """A stream whose failed writes raise :class:`StdoutUnwritable`: a broken stdout is
    told apart from the command's own OS errors (shown as internal errors)."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except OSError as exc:
            raise stdout_error(exc) from None

    def flush(self) -> None:
        try:
            self._stream.flush()
        except OSError as exc:
            raise stdout_error(exc) from None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def stdout_error(exc: OSError) -> StdoutUnwritable:
    reason = exc.strerror or str(exc)
    return StdoutUnwritable(
        f"Cannot write the output to stdout: {reason}. Check where stdout goes (a full "
        "disk, a closed pipe or a file that cannot grow) and run the command again.",
        reader_gone=isinstance(exc, BrokenPipeError),
    )


def report_stdout_failure(command: str, fmt: OutputFormat, error: StdoutUnwritable) -> None:
    """Say on stderr that stdout failed (not when its reader just stopped reading)."""
    if not error.reader_gone:
        print_error(command, fmt, public_type_name(error), str(error))


def guarded(stream: TextIO) -> TextIO:
    """``stream`` (stdout) with its write failures as :class:`StdoutUnwritable`."""
    if isinstance(stream, _GuardedStream):
        return stream
    return _GuardedStream(stream)  # type: ignore[return-value]


def make_console(*, stderr: bool = False) -> Console:
    """A Rich console on the current stdout/stderr (control characters shown escaped).

    When the stream is not a terminal (a pipe, a file, a test) tables are not
    squeezed into 80 columns (``COLUMNS`` only widens them), so ids stay whole and
    greppable.
    """
    stream = sys.stderr if stderr else guarded(sys.stdout)
    try:
        is_tty = stream.isatty()
    except (AttributeError, ValueError):
        is_tty = False
    width: int | None = None
    if not is_tty:
        try:
            columns = int(os.environ.get("COLUMNS", "0"))
        except ValueError:
            columns = 0
        width = max(columns, 240)
    return SafeConsole(file=stream, width=width, highlight=False)


def _one_line(message: str) -> str:
    return " ".join(message.split()) or "(no message)"


def _text_line(message: str) -> str:
    """One line of text output: whitespace collapsed, control characters escaped."""
    return escape_control(_one_line(message))


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    return str(value)


_SURROGATE_RE = re.compile("[\ud800-\udfff]")


def _finite(value: Any) -> Any:
    """``value`` with every NaN or infinite float as None: strict JSON has no NaN (the
    server answers null for them too)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def dumps(document: Mapping[str, Any]) -> str:
    try:
        text = json.dumps(
            document, indent=2, default=_json_default, ensure_ascii=False, allow_nan=False
        )
    except ValueError:  # a NaN or an infinity somewhere: written as null
        text = json.dumps(_finite(document), indent=2, default=_json_default, ensure_ascii=False)
    # Lone surrogates can only sit inside JSON strings here; write each as the text
    # "\udcff" (an escaped backslash + "udcff"), which any UTF-8 JSON reader accepts.
    if _SURROGATE_RE.search(text):
        text = _SURROGATE_RE.sub(lambda m: f"\\\\u{ord(m[0]):04x}", text)
    return text


#: The real stdout while a JSON-mode command sends flows' prints to stderr.
_document_stdout: TextIO | None = None


def document_stdout() -> TextIO:
    """Where documents go: the real stdout, even while flows print to stderr (a failed
    write raises :class:`StdoutUnwritable`)."""
    return guarded(_document_stdout if _document_stdout is not None else sys.stdout)


def write_json(document: Mapping[str, Any], *, stderr: bool = False) -> None:
    stream = sys.stderr if stderr else document_stdout()
    stream.write(dumps(document) + "\n")
    stream.flush()


@contextmanager
def flow_prints_to_stderr(active: bool) -> Iterator[None]:
    """While active, what runs in this process prints to stderr; documents keep stdout.

    A JSON-mode command that runs flows (resume, retry, input, replay, worker)
    must leave stdout to its JSON: the checkpoints' ``print()`` lines go to
    stderr instead, and are still captured as the execution's stdout lines.
    """
    global _document_stdout
    if not active or _document_stdout is not None:
        yield
        return
    from kitaru._runtime.logcapture import stdout_into

    saved = sys.stdout
    _document_stdout = saved
    sys.stdout = stdout_into(sys.stderr)
    try:
        yield
    finally:
        sys.stdout = saved
        _document_stdout = None


def escape_undecodable_output() -> None:
    """Print lone surrogates (undecodable bytes, e.g. from argv) escaped instead of failing."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            with suppress(ValueError, OSError):  # a closed or unusual stream
                reconfigure(errors="backslashreplace")


@contextmanager
def warnings_as_lines() -> Iterator[None]:
    """Show Kitaru's configuration warnings as one ``Warning: ...`` line on stderr."""
    import warnings

    from kitaru._pyproject import KitaruConfigWarning

    with warnings.catch_warnings():
        warnings.simplefilter("default", KitaruConfigWarning)
        shown = warnings.showwarning

        def show(
            message: Warning | str,
            category: type[Warning],
            filename: str,
            lineno: int,
            file: Any = None,
            line: str | None = None,
        ) -> None:
            if not issubclass(category, KitaruConfigWarning):
                shown(message, category, filename, lineno, file, line)
                return
            sys.stderr.write(f"Warning: {_text_line(str(message))}\n")
            sys.stderr.flush()

        warnings.showwarning = show
        yield


def error_document(command: str, error_type: str, message: str) -> dict[str, Any]:
    return {"command": command, "error": {"message": _one_line(message), "type": error_type}}


def print_error(command: str, fmt: OutputFormat, error_type: str, message: str) -> None:
    """The one place that prints an error, on stderr: one line, or one JSON document."""
    if fmt is OutputFormat.JSON:
        write_json(error_document(command, error_type, message), stderr=True)
    else:
        sys.stderr.write(f"Error: {_text_line(message)}\n")
        sys.stderr.flush()


class Output:
    """Where one command prints its result, in the format the user chose."""

    def __init__(self, command: str, fmt: OutputFormat) -> None:
        self.command = command_name(command)
        self.format = parse_format(fmt)
        self._console: Console | None = None
        self._err_console: Console | None = None

    @property
    def json(self) -> bool:
        return self.format is OutputFormat.JSON

    @property
    def console(self) -> Console:
        if self._console is None:
            self._console = make_console()
        return self._console

    @property
    def err_console(self) -> Console:
        if self._err_console is None:
            self._err_console = make_console(stderr=True)
        return self._err_console

    def item(self, data: Mapping[str, Any], render: Callable[[Console], None]) -> None:
        """Print one item: ``render`` draws it for people, JSON gets ``data``."""
        if self.json:
            write_json({"command": self.command, "item": dict(data)})
        else:
            render(self.console)

    def items(
        self,
        data: Sequence[Mapping[str, Any]],
        render: Callable[[Console], None],
        **_extra: Any,
    ) -> None:
        """Print a list: exactly ``command``, ``items`` and ``count`` in JSON.

        ``_extra`` (paging details callers used to add) is ignored: the envelope
        has exactly these keys, as in Kitaru 0.21.
        """
        if self.json:
            document: dict[str, Any] = {
                "command": self.command,
                "items": [dict(d) for d in data],
                "count": len(data),
            }
            write_json(document)
        else:
            render(self.console)

    def say(self, message: str) -> None:
        """A line for people on stdout (Rich markup allowed); silent in JSON mode."""
        if not self.json:
            self.console.print(message, soft_wrap=True)

    def note(self, message: str) -> None:
        """Progress or hints for people on stderr (Rich markup allowed); silent in JSON mode."""
        if not self.json:
            self.err_console.print(message, soft_wrap=True)

    def fail(self, error_type: str, message: str, *, code: int = EXIT_ERROR) -> NoReturn:
        print_error(self.command, self.format, error_type, message)
        raise typer.Exit(code)


@contextmanager
def command(name: str, fmt: OutputFormat) -> Iterator[Output]:
    """Run a command body: turn every expected failure into one line and an exit code.

    In JSON mode the body runs with :func:`flow_prints_to_stderr`, so flows it
    runs in this process cannot write into the JSON document's stdout.
    """
    out = Output(name, fmt)
    try:
        with flow_prints_to_stderr(out.json):
            yield out
    except typer.Exit:
        raise
    except StdoutUnwritable as exc:
        report_stdout_failure(out.command, out.format, exc)
        raise typer.Exit(EXIT_ERROR) from None
    except KitaruError as exc:
        if debug_enabled():
            raise
        out.fail(public_type_name(exc), str(exc) or type(exc).__name__)
    except UsageProblem as exc:
        out.fail("UsageError", str(exc), code=EXIT_USAGE)
    except typer.BadParameter as exc:
        out.fail("UsageError", exc.format_message(), code=EXIT_USAGE)
    except KeyboardInterrupt:
        out.fail("Interrupted", "Interrupted.", code=EXIT_INTERRUPTED)


# --- formatting helpers ---------------------------------------------------------

_PASSWORD_RE = re.compile(r"(?P<head>://[^/:@]*:)(?P<password>[^@/]*)(?P<tail>@)")


def exit_interrupted(out: Output, message: str, *, json_error: bool = True) -> NoReturn:
    """Ctrl-C while this process runs executions: report it and leave them as a crash would.

    Runs live in non-daemon threads, so a normal exit would wait for them; the
    executions' leases expire and ``resume`` or a worker picks them up.
    """
    if out.json and json_error:
        write_json(error_document(out.command, "Interrupted", message), stderr=True)
    else:
        sys.stderr.write(f"Error: {_text_line(message)}\n")
    with suppress(OSError, StdoutUnwritable):  # a broken stdout must not stop the exit
        sys.stdout.flush()
    sys.stderr.flush()
    os._exit(EXIT_INTERRUPTED)


def redact_url(url: str) -> str:
    """Hide the password of a URL (``postgresql://user:***@host/db``)."""
    return _PASSWORD_RE.sub(lambda m: f"{m['head']}***{m['tail']}", url)


def fmt_time(value: datetime | None) -> str:
    """A timestamp in the local timezone, to the second; '-' if unknown."""
    if value is None:
        return "-"
    return value.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def fmt_duration(seconds: float | None) -> str:
    """``12ms``, ``3.45s``, ``2m 05s``, ``1h 02m``; '-' if unknown."""
    if seconds is None:
        return "-"
    if seconds < 0.001:
        return "<1ms"
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:.2f}s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


_STATUS_STYLES = {
    "completed": "green",
    "cached": "cyan",
    "reused": "blue",
    "running": "yellow",
    "waiting": "magenta",
    "failed": "red",
    "cancelled": "bright_black",
}


def styled_status(status: str, *, suffix: str = "") -> str:
    """Rich markup for a status word (colours only show on a terminal)."""
    style = _STATUS_STYLES.get(status, "")
    text = escape(status + suffix)
    return f"[{style}]{text}[/{style}]" if style else text


__all__ = [
    "EXIT_ERROR",
    "EXIT_INTERRUPTED",
    "EXIT_USAGE",
    "MAX_COUNT",
    "Output",
    "OutputFormat",
    "OutputOption",
    "PageOption",
    "SafeConsole",
    "SizeOption",
    "StdoutUnwritable",
    "UsageProblem",
    "command",
    "command_name",
    "debug_enabled",
    "document_stdout",
    "dumps",
    "escape_control",
    "escape_undecodable_output",
    "flow_prints_to_stderr",
    "fmt_duration",
    "fmt_time",
    "guarded",
    "make_console",
    "page_of",
    "parse_format",
    "print_error",
    "redact_url",
    "report_stdout_failure",
    "seconds_option",
    "stdout_error",
    "styled_status",
    "warnings_as_lines",
    "write_json",
]

"""The ``kitaru-mcp`` server: registers ``_tools`` on the ``mcp`` SDK's MCPServer."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from kitaru.adapters._requires import require

require("mcp", extra="mcp", feature="kitaru-mcp")

from mcp.server.mcpserver import MCPServer  # noqa: E402
from mcp.server.mcpserver.exceptions import ToolError  # noqa: E402
from mcp.types import ToolAnnotations  # noqa: E402

from kitaru._version import __version__  # noqa: E402
from kitaru.mcp import _tools  # noqa: E402

_INSTRUCTIONS = """\
Kitaru runs durable Python agent flows (@flow / @checkpoint). Use these tools to list and
inspect executions, start a flow (kitaru_executions_run with target 'file.py:flow' or
'package.module:flow' and JSON inputs), answer a waiting execution (kitaru_executions_input),
retry, resume, replay or cancel one, and read logs and artifacts. Errors come back as tool
errors starting with the Kitaru error type."""

#: (tool name, function, description, read-only?)
_TOOLS: list[tuple[str, Callable[..., Any], str, bool]] = [
    (
        "kitaru_executions_list",
        _tools.executions_list,
        "List executions, newest first. Filter by flow name and status "
        "(running, waiting, completed, failed, cancelled).",
        True,
    ),
    (
        "kitaru_executions_get",
        _tools.executions_get,
        "One execution with its checkpoint calls, artifacts and pending waits.",
        True,
    ),
    (
        "kitaru_executions_latest",
        _tools.executions_latest,
        "The newest execution (optionally of one flow / with one status).",
        True,
    ),
    (
        "kitaru_executions_run",
        _tools.executions_run,
        "Start a flow. target is 'path/to/file.py:flow_name' or 'package.module:flow_name'; "
        "inputs are the flow's keyword arguments as JSON. With wait=true, returns once the "
        "execution completes, fails, is cancelled or waits for input (or after timeout "
        "seconds). The execution runs inside this server process.",
        False,
    ),
    (
        "kitaru_executions_cancel",
        _tools.executions_cancel,
        "Cancel a running or waiting execution.",
        False,
    ),
    (
        "kitaru_executions_input",
        _tools.executions_input,
        "Answer a pending wait of an execution with a JSON value (wait: its name; may be "
        "omitted when only one wait is pending). The execution continues.",
        False,
    ),
    (
        "kitaru_executions_abort_wait",
        _tools.executions_abort_wait,
        "Abort a pending wait: the flow's kitaru.wait() raises KitaruWaitAbortedError.",
        False,
    ),
    (
        "kitaru_executions_resume",
        _tools.executions_resume,
        "Continue an execution whose runner died; completed checkpoints are reused.",
        False,
    ),
    (
        "kitaru_executions_retry",
        _tools.executions_retry,
        "Re-run a failed execution (same id); completed checkpoints are reused.",
        False,
    ),
    (
        "kitaru_executions_replay",
        _tools.executions_replay,
        "Replay an execution from checkpoint `at` as a new execution, with optional "
        "flow/checkpoint/invocation overrides and skips.",
        False,
    ),
    (
        "kitaru_executions_delete",
        _tools.executions_delete,
        "Delete a finished execution and the artifacts nothing else uses. An execution "
        "that started child flows is deleted only with recursive=true, which deletes its "
        "child executions too.",
        False,
    ),
    (
        "kitaru_executions_statistics",
        _tools.executions_statistics,
        "Execution statistics grouped by status|flow|stack|tag|time:<unit>|metadata:<key> "
        "with metrics like 'd:duration:avg'.",
        True,
    ),
    (
        "get_execution_logs",
        _tools.execution_logs,
        "Captured log lines of an execution (source 'step' for checkpoint lines, 'runner' "
        "for the flow body, null for both).",
        True,
    ),
    (
        "kitaru_artifacts_list",
        _tools.artifacts_list,
        "Artifacts of an execution (outputs and kitaru.save values).",
        True,
    ),
    (
        "kitaru_artifacts_get",
        _tools.artifacts_get,
        "One artifact's description; include_value=true also returns its value as JSON "
        "(never for pickled values).",
        True,
    ),
    ("kitaru_stacks_list", _tools.stacks_list, "The configured stacks.", True),
    (
        "kitaru_status",
        _tools.status,
        "Kitaru's version, store, active stack, settings and server connection.",
        True,
    ),
]


def _as_tool_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """Every failure becomes a tool error naming the exception type (not an opaque crash)."""

    @functools.wraps(func)
    def call(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except ToolError:
            raise
        except Exception as exc:
            raise ToolError(f"{type(exc).__name__}: {exc}") from exc

    return call


def build_server() -> MCPServer:
    server: MCPServer = MCPServer(
        name="kitaru", version=__version__, instructions=_INSTRUCTIONS, log_level="WARNING"
    )
    for name, func, description, read_only in _TOOLS:
        server.add_tool(
            _as_tool_errors(func),
            name=name,
            description=description,
            annotations=ToolAnnotations(readOnlyHint=read_only),
        )
    return server


def main() -> None:
    build_server().run("stdio")

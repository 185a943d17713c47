"""Answering pending waits at a terminal (``handle.wait()`` and ``--interactive``).

Also the small helpers the CLI's ``executions input``/``waits`` commands share
with the prompt: parsing a typed answer, summarising a wait's JSON schema for
people, and, for a process about to exit, letting go of the waits its own
runners sit at (the execution stays ``waiting`` and resumes on input).
"""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TextIO

from kitaru._backend import get_backend
from kitaru._runtime import control, waits
from kitaru._runtime.driver import get_live
from kitaru._store import ExecutionStatus
from kitaru.errors import KitaruError, KitaruWaitValidationError

if TYPE_CHECKING:
    from kitaru._backend import Backend
    from kitaru._store import WaitRecord

ABORT_WORD = "!abort"


def parse_answer(text: str) -> Any:
    """JSON when it parses (true, 3, {"a": 1}); otherwise the text itself."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def answer_candidates(text: str) -> list[Any]:
    """What ``text`` may mean, most likely first: its JSON value, then the raw text.

    ``42`` is tried as the number 42 and, should the wait expect a string, as
    ``"42"``; text that is not JSON is only the text itself.
    """
    parsed = parse_answer(text)
    return [parsed] if isinstance(parsed, str) else [parsed, text]


def give_text_answer(give: Callable[[Any], Any], text: str) -> tuple[Any, Any]:
    """Call ``give(value)`` with each reading of ``text`` until one validates.

    Returns ``(value used, what give returned)``; when no reading validates,
    raises the validation error of the first (the JSON reading).
    """
    first_error: KitaruWaitValidationError | None = None
    for candidate in answer_candidates(text):
        try:
            return candidate, give(candidate)
        except KitaruWaitValidationError as exc:
            first_error = first_error or exc
    assert first_error is not None
    raise first_error


def recorded_answer(exec_id: str, wait_id: str, *, backend: Backend | None = None) -> Any:
    """The answer stored for a wait, as JSON data (``true`` for an input of ``"yes"``)."""
    backend = get_backend() if backend is None else backend
    record = backend.store.get_wait(exec_id, wait_id)
    return None if record is None else record.value


# --- describing a wait ----------------------------------------------------------------

_TYPE_NAMES = {
    "boolean": "bool",
    "integer": "int",
    "number": "float",
    "string": "str",
    "object": "dict",
    "array": "list",
    "null": "None",
}


def schema_summary(schema: dict[str, Any] | None, *, max_fields: int = 6) -> str:
    """A short, human reading of a wait's JSON schema: ``bool``, ``list[Plan]``, ...

    ``None`` (no schema) is a plain continue gate that takes no value.
    """
    if schema is None:
        return "no value (continue gate)"
    defs: dict[str, Any] = dict(schema.get("$defs") or {})

    def resolve(node: dict[str, Any]) -> dict[str, Any]:
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            target = defs.get(ref.removeprefix("#/$defs/"))
            if isinstance(target, dict):
                return target
        return node

    def name(node: Any, depth: int) -> str:
        if not isinstance(node, dict):
            return "any"
        node = resolve(node)
        if "enum" in node:
            return " | ".join(json.dumps(v) for v in node["enum"])
        if "const" in node:
            return json.dumps(node["const"])
        for key in ("anyOf", "oneOf"):
            if key in node:
                return " | ".join(name(option, depth) for option in node[key])
        kind = node.get("type")
        if kind == "array":
            return f"list[{name(node.get('items'), depth)}]"
        if kind == "object":
            title = node.get("title")
            properties = node.get("properties")
            if isinstance(properties, dict) and properties and title:
                if depth > 0:
                    return str(title)
                required = set(node.get("required") or ())
                fields = [
                    f"{field}{'' if field in required else '?'}: {name(spec, depth + 1)}"
                    for field, spec in list(properties.items())[:max_fields]
                ]
                if len(properties) > max_fields:
                    fields.append("...")
                return f"{title} {{{', '.join(fields)}}}"
            values = node.get("additionalProperties")
            if isinstance(values, dict):
                return f"dict[str, {name(values, depth + 1)}]"
            return str(title) if title and title != "object" else "dict"
        if isinstance(kind, list):
            return " | ".join(_TYPE_NAMES.get(str(k), str(k)) for k in kind)
        if isinstance(kind, str):
            return _TYPE_NAMES.get(kind, kind)
        return "any"

    return name(schema, 0)


# --- this process's runners -----------------------------------------------------------


def let_go_here(exec_ids: set[str] | list[str], *, timeout: float = 10.0) -> None:
    """Release the waits this process's runners of ``exec_ids`` sit at, then let them end.

    For a process about to exit: instead of keeping a thread blocked until
    each wait's ``timeout``, the executions stay ``waiting`` with no runner
    (as after a timeout) and resume when input arrives. Runners still busy
    with checkpoints are left to finish (or to reach a wait and release it).
    """
    import time

    deadline = time.monotonic() + timeout
    backend = get_backend()
    for exec_id in exec_ids:
        live = get_live(exec_id)
        if live is None:
            continue
        waits.let_go(exec_id)
        try:
            while not live.done.wait(0.05):
                status = backend.store.get_status(exec_id)
                if status is not ExecutionStatus.WAITING:
                    break  # still running checkpoints (or finished): do not wait here
                if time.monotonic() >= deadline:
                    break
        finally:
            waits.keep(exec_id)


# --- the prompt -----------------------------------------------------------------------


@dataclass(frozen=True)
class PromptOutcome:
    """What happened to one wait offered at the prompt."""

    exec_id: str
    wait_id: str
    name: str | None
    outcome: str  # "answered", "aborted", "skipped" or "failed"
    value: Any = None
    message: str | None = None
    #: This process resumed the execution after the answer (its runner had let go).
    ran_here: bool = False

    @property
    def key(self) -> str:
        return f"{self.exec_id}:{self.wait_id}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "exec_id": self.exec_id,
            "wait_id": self.wait_id,
            "name": self.name,
            "outcome": self.outcome,
            "value": self.value,
            "message": self.message,
            "ran_here": self.ran_here,
        }


@dataclass
class PromptRound:
    outcomes: list[PromptOutcome]
    #: stdin ended: nothing more can be asked.
    closed: bool = False


def _describe(wait: WaitRecord) -> str:
    lines = [
        f"\nExecution {wait.exec_id} is waiting at {wait.wait_id!r}"
        + (f": {wait.question}" if wait.question else ".")
    ]
    if wait.json_schema is None:
        lines.append("  (a continue gate: press Enter to continue)")
    else:
        lines.append(f"  expects: {schema_summary(wait.json_schema)}")
    if wait.metadata:
        lines.append(f"  metadata: {json.dumps(wait.metadata, default=str, sort_keys=True)}")
    return "\n".join(lines)


def prompt_waits(
    exec_id: str | None,
    *,
    skip: set[str] | None = None,
    resume: bool = True,
    stdin: TextIO | None = None,
    stderr: TextIO | None = None,
    backend: Backend | None = None,
) -> PromptRound:
    """Ask for each pending wait of ``exec_id`` (or of every waiting execution).

    Reads answers from ``stdin`` (JSON or text), writes prompts to ``stderr``.
    An empty line skips a wait (continues a plain gate); ``!abort`` aborts it.
    Invalid input is explained and asked for again. Waits whose
    ``exec_id:wait_id`` key is in ``skip`` are not offered.
    """
    stdin = sys.stdin if stdin is None else stdin
    stderr = sys.stderr if stderr is None else stderr
    backend = get_backend() if backend is None else backend
    result = PromptRound(outcomes=[])
    for wait in backend.store.pending_waits(exec_id):
        key = f"{wait.exec_id}:{wait.wait_id}"
        if skip and key in skip:
            continue
        print(_describe(wait), file=stderr)

        def give(value: Any, *, abort: bool = False, wait: WaitRecord = wait) -> Any:
            return control.give_input(
                backend,
                wait.exec_id,
                wait=wait.wait_id,
                value=value,
                abort=abort,
                resume_if_released=False,
            )

        while True:
            print(
                f"  answer (JSON or text, empty to skip, {ABORT_WORD} to abort) > ",
                end="",
                file=stderr,
            )
            stderr.flush()
            line = stdin.readline()
            if not line:
                print("", file=stderr)
                result.closed = True
                result.outcomes.append(
                    PromptOutcome(wait.exec_id, wait.wait_id, wait.name, "skipped")
                )
                return result
            text = line.rstrip("\r\n")
            outcome: PromptOutcome
            try:
                if text.strip() == ABORT_WORD:
                    give(None, abort=True)
                    outcome = PromptOutcome(wait.exec_id, wait.wait_id, wait.name, "aborted")
                elif not text.strip():
                    if wait.json_schema is not None:
                        outcome = PromptOutcome(wait.exec_id, wait.wait_id, wait.name, "skipped")
                    else:
                        give(None)
                        outcome = PromptOutcome(wait.exec_id, wait.wait_id, wait.name, "answered")
                else:
                    give_text_answer(give, text)
                    outcome = PromptOutcome(
                        wait.exec_id,
                        wait.wait_id,
                        wait.name,
                        "answered",
                        recorded_answer(wait.exec_id, wait.wait_id, backend=backend),
                    )
            except KitaruWaitValidationError as exc:
                print(f"  invalid: {exc}", file=stderr)
                continue
            except KitaruError as exc:
                # Answered elsewhere meanwhile, cancelled, ...: say so and move on.
                print(f"  {exc}", file=stderr)
                outcome = PromptOutcome(
                    wait.exec_id, wait.wait_id, wait.name, "failed", message=str(exc)
                )
            if resume and outcome.outcome in ("answered", "aborted"):
                ran_here = control.resume_released(backend, wait.exec_id)
                outcome = dataclasses.replace(outcome, ran_here=ran_here)
            result.outcomes.append(outcome)
            break
    return result


def prompt_pending_waits(exec_id: str | None, *, skip: set[str] | None = None) -> set[str]:
    """Ask for each pending wait on stdin; returns the ``exec_id:wait_id`` keys offered."""
    return {outcome.key for outcome in prompt_waits(exec_id, skip=skip).outcomes}

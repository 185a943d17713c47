"""Helpers of ``kitaru executions input``: reading ``--value``, and settling after an answer."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from kitaru._store import CallStatus, ExecutionStatus
from kitaru.cli._output import UsageProblem

if TYPE_CHECKING:
    from kitaru.client import KitaruClient
    from kitaru.client._models import Execution, PendingWait

#: How long ``input`` waits for an answered execution to move on before printing it.
SETTLE_SECONDS = 5.0
#: A checkpoint running this long after the answer is a long one: print, don't wait.
LONG_CALL_SECONDS = 0.5
_POLL_SECONDS = 0.05


def _accepts_text(schema: dict[str, Any] | None, defs: dict[str, Any] | None = None) -> bool:
    """Whether a wait's JSON schema takes a plain string (so unquoted text may be one)."""
    if not isinstance(schema, dict):
        return False
    defs = defs if defs is not None else dict(schema.get("$defs") or {})
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        return _accepts_text(defs.get(ref.removeprefix("#/$defs/")), defs)
    kind = schema.get("type")
    if kind == "string" or (isinstance(kind, list) and "string" in kind):
        return True
    return any(
        _accepts_text(option, defs)
        for key in ("anyOf", "oneOf")
        for option in schema.get(key) or []
    )


def value_candidates(text: str, target: PendingWait | None, exec_id: str) -> list[Any]:
    """What ``--value TEXT`` may mean, most likely first; text that is not JSON is refused.

    ``--value`` is JSON: ``yes`` is not ``true``. Only a wait that takes a string
    also accepts unquoted text (``--value hello``) as that string, and a JSON
    number for a string wait is tried as its text (``42`` -> ``"42"``).
    """
    from kitaru.client._prompt import schema_summary

    takes_text = target is not None and _accepts_text(target.schema)
    try:
        parsed = json.loads(text)
    except json.JSONDecodeError:
        if takes_text or target is None:
            # No target: the client refuses the input for its own reason (no such
            # pending wait, already answered, several pending), which says more.
            return [text]
        expects = "" if target is None else f" (wait {target.wait_id!r} expects "
        expects += "" if target is None else f"{schema_summary(target.schema)})"
        raise UsageProblem(
            f"--value {text!r} is not JSON{expects}. Pass a JSON value for execution "
            f"{exec_id}: true or false for a yes/no question, a number, or a string in "
            f"quotes (--value '\"{text}\"')."
        ) from None
    except ValueError as exc:  # JSON, but Python will not read it (a 5,000-digit number)
        if takes_text:
            return [text]
        raise UsageProblem(
            f"--value cannot be read for execution {exec_id}: {exc}. Pass a smaller number, "
            "or the number as text if the wait takes text."
        ) from None
    if takes_text and not isinstance(parsed, str):
        return [parsed, text]
    return [parsed]


def _long_call_running(execution: Execution, now: datetime) -> bool:
    return any(
        call.call_status is CallStatus.RUNNING
        and call.started_at is not None
        and (now - call.started_at).total_seconds() >= LONG_CALL_SECONDS
        for call in execution.checkpoints
    )


def _settled(execution: Execution, answered: str | None) -> bool:
    if execution.status.is_finished:
        return True
    if execution.status is ExecutionStatus.WAITING:
        if any(w.wait_id != answered for w in execution.pending_waits):
            return True  # paused at a new wait
        # Answered, but no runner to pick it up (let go, --no-resume, or died): it will
        # not move by itself, so waiting here would only delay the output.
        lease = execution.lease_expires_at
        return execution.lease_owner is None or lease is None or lease < datetime.now(tz=UTC)
    return _long_call_running(execution, datetime.now(tz=UTC))


def settle_after_answer(
    client: KitaruClient,
    exec_id: str,
    answered: str | None,
    *,
    timeout: float = SETTLE_SECONDS,
) -> Execution:
    """The execution once its runner has taken the answer and moved on (bounded).

    Returns when it finished, paused at another wait, is inside a long checkpoint,
    cannot move without a runner, or after ``timeout``: so ``input`` does not print
    ``waiting`` for an execution that completes a moment later.
    """
    deadline = time.monotonic() + timeout
    while True:
        execution = client.executions.get(exec_id)
        if _settled(execution, answered) or time.monotonic() >= deadline:
            return execution
        time.sleep(_POLL_SECONDS)


__all__ = ["settle_after_answer", "value_candidates"]

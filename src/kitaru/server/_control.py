"""Control operations as the server does them: it changes state, a worker runs the code.

The server never runs flow code (that would load cloudpickled inputs and the
flow's module in the server process). ``retry`` and ``resume`` claim the
execution with a lease that has already run out, which is exactly what an
orphan looks like: any ``kitaru worker`` on the same store picks it up and runs
it. Wait input is coerced as the flow's type would coerce it (``_lax``), then
checked against the wait's JSON schema with ``jsonschema``; the runner turns the
stored JSON into the schema's type where the flow runs.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import jsonschema

from kitaru._lax_answers import coerce, format_problems, with_defaults
from kitaru._limits import check_wait_input
from kitaru._runtime.control import MAX_INPUT_DETAILS, input_refused, pick_wait, shown_problems
from kitaru._store import ExecutionRecord, ExecutionStatus, WaitStatus
from kitaru.client._remote_client import HANDOFF_OWNER
from kitaru.client._remote_waits import refuse_non_finite
from kitaru.errors import KitaruStateError, KitaruWaitValidationError

if TYPE_CHECKING:
    from kitaru._backend import Backend

_ACTIVE = (ExecutionStatus.RUNNING, ExecutionStatus.WAITING)


def _hand_off(backend: Backend, record: ExecutionRecord, from_status: ExecutionStatus) -> None:
    claimed = backend.store.claim(
        record.id,
        owner=HANDOFF_OWNER,
        lease_seconds=0.0,
        from_status=(from_status,),
        expected_fence=record.fence,
        require_expired_lease=False,
        count_run=False,  # the worker that takes it over counts the run
    )
    if claimed is None:
        raise KitaruStateError(
            f"Execution {record.id} changed while the server was handing it over (another "
            "client or a runner took it); read it again."
        )


def retry(backend: Backend, exec_id: str) -> None:
    record = backend.store.require_execution(exec_id)
    if record.status is not ExecutionStatus.FAILED:
        raise KitaruStateError(
            f"Execution {exec_id} is {record.status.value}; only failed executions can be "
            "retried (resume a crashed one, replay a finished one)."
        )
    _hand_off(backend, record, ExecutionStatus.FAILED)


def resume(backend: Backend, exec_id: str, *, gone_owner: str | None = None) -> None:
    """Hand the execution to the workers if nothing runs it.

    ``gone_owner``: a client found this lease owner's process gone on its own machine
    (the server cannot check a pid there); a lease held by exactly that owner then no
    longer counts, as a local resume takes over from a dead runner of its machine at once.
    """
    record = backend.store.require_execution(exec_id)
    now = time.time()
    lease_held = record.lease_expires_at is not None and record.lease_expires_at > now
    if lease_held and gone_owner is not None and gone_owner == record.lease_owner:
        lease_held = False
    resumable = record.status in (
        ExecutionStatus.FAILED,
        ExecutionStatus.CANCELLED,
    ) and bool((record.failure or {}).get("resumable"))
    if resumable:
        _hand_off(backend, record, record.status)
        return
    if record.status is ExecutionStatus.RUNNING:
        if lease_held:
            raise KitaruStateError(
                f"Execution {exec_id} is running under {record.lease_owner}; there is nothing "
                "to resume. If that process is gone, resume once its lease has expired."
            )
        _hand_off(backend, record, ExecutionStatus.RUNNING)
        return
    if record.status is ExecutionStatus.WAITING:
        pending = [w for w in backend.store.waits(exec_id) if w.status is WaitStatus.PENDING]
        if pending:
            names = ", ".join(w.wait_id for w in pending)
            raise KitaruStateError(
                f"Execution {exec_id} is waiting for input ({names}); answer or abort its "
                "waits to continue it."
            )
        if lease_held:
            raise KitaruStateError(
                f"Execution {exec_id} is held by its runner {record.lease_owner}; it continues "
                "by itself."
            )
        _hand_off(backend, record, ExecutionStatus.WAITING)
        return
    hint = (
        f"use `kitaru executions retry {exec_id}`"
        if record.status is ExecutionStatus.FAILED
        else "replay it to run it again from a checkpoint"
    )
    raise KitaruStateError(
        f"Execution {exec_id} is {record.status.value}; only running executions whose runner "
        f"died, or waiting ones, can be resumed: {hint}."
    )


def give_input(
    backend: Backend, exec_id: str, *, wait: str | None, value: Any, abort: bool = False
) -> None:
    """Validate and record the answer; the runner continues the execution, or a worker
    when no runner holds it (see ``_hand_off_answered``)."""
    chosen = pick_wait(backend, exec_id, wait)
    stored: Any = None
    if not abort:
        if chosen.json_schema is not None:
            # Coerced first as the flow's own type would coerce it (see _lax).
            stored, refused = coerce(value, chosen.json_schema)
            _validate(stored, chosen.json_schema, wait_id=chosen.wait_id, exec_id=exec_id)
            # A date, time or UUID in text the type cannot read: the JSON schema checks
            # no format, and the runner would fail on it after a 200.
            unreadable = format_problems(refused, stored)
            if unreadable:
                details = [
                    {"path": path, "message": message, "keyword": "format"}
                    for path, message in unreadable[:MAX_INPUT_DETAILS]
                ]
                raise input_refused(chosen.wait_id, exec_id, shown_problems(unreadable), details)
            stored = with_defaults(stored, chosen.json_schema)
        elif chosen.schema_pickle is None and value is not None:
            raise KitaruWaitValidationError(
                f"Wait {chosen.wait_id!r} of execution {exec_id} is a plain continue gate "
                f"(schema=None); give no value (got {value!r})."
            )
        # JSON has no NaN or Infinity: stored, the runner would read back something else.
        refuse_non_finite(stored, wait=chosen.wait_id, exec_id=exec_id)
        check_wait_input(stored, wait_id=chosen.wait_id, exec_id=exec_id)
    status = WaitStatus.ABORTED if abort else WaitStatus.ANSWERED
    if not backend.store.answer_wait(exec_id, chosen.wait_id, status=status, value=stored):
        raise KitaruStateError(
            f"Wait {chosen.wait_id!r} of execution {exec_id} was answered by someone else first."
        )
    _hand_off_answered(backend, exec_id)


def _hand_off_answered(backend: Backend, exec_id: str) -> None:
    """Hand an answered execution that no runner holds (its runner let go at the wait) to
    the workers, as ``resume`` does: a client then sees that it waits for a worker
    (``handed_off``) rather than an execution that looks paused for good. A runner that
    still holds its lease takes the answer itself: then nothing changes here."""
    record = backend.store.get_execution(exec_id)
    if record is None or record.status is not ExecutionStatus.WAITING:
        return
    if any(w.status is WaitStatus.PENDING for w in backend.store.waits(exec_id)):
        return  # still paused at another wait (a body at a wait is at no sleep)
    backend.store.claim(
        record.id,
        owner=HANDOFF_OWNER,
        lease_seconds=0.0,
        from_status=(ExecutionStatus.WAITING,),
        expected_fence=record.fence,
        require_expired_lease=True,  # never from a live runner
        count_run=False,  # the worker that takes it over counts the run
    )


def _validate(value: Any, schema: dict[str, Any], *, wait_id: str, exec_id: str) -> None:
    """Every problem of ``value`` against the wait's JSON schema, in one error."""
    try:
        validator_cls = jsonschema.validators.validator_for(schema)
        validator_cls.check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise KitaruStateError(
            f"Wait {wait_id!r} of execution {exec_id} has an invalid JSON schema "
            f"({exc.message}); answer it with the Python client where the flow's code is."
        ) from None
    problems = sorted(validator_cls(schema).iter_errors(value), key=lambda e: list(e.path))
    if problems:
        shown = shown_problems((e.absolute_path, e.message) for e in problems)
        details = [_detail(e) for e in problems[:MAX_INPUT_DETAILS]]
        raise input_refused(wait_id, exec_id, shown, details)


def _detail(error: jsonschema.ValidationError) -> dict[str, Any]:
    """One problem, with the path of the field it is about.

    A missing property is reported by jsonschema on the object that lacks it; the path
    names the property itself, so a form shows the problem next to that field.
    """
    path: list[str | int] = list(error.absolute_path)
    if error.validator == "required" and isinstance(error.instance, dict):
        for name in error.validator_value:
            if name not in error.instance and error.message == f"{name!r} is a required property":
                path.append(name)
                break
    return {"path": path, "message": error.message, "keyword": str(error.validator)}


def hand_off_replay(backend: Backend, prepared: Any) -> None:
    """Write a prepared replay as an execution no runner holds: a worker runs it."""
    record = prepared.record
    record.lease_owner = HANDOFF_OWNER
    record.lease_expires_at = time.time()
    # The hand-over is not a run: the worker's claim counts the first one (run 1), as a
    # replay run where it was submitted starts at run 1.
    record.run_count = 0
    backend.store.create_execution(
        record,
        prepared.inputs,
        calls=prepared.reused,
        artifacts=prepared.artifacts,
        waits=prepared.waits,
    )

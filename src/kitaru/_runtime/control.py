"""Starting, resuming, retrying, cancelling and deleting executions.

Every operation validates first and changes stored state last, so a refused
request (unknown id, wrong status, bad override, missing code) leaves the
store exactly as it was.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import itertools
import time
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from kitaru._blobs import BlobLocationError, SerializationError
from kitaru._blobs.inputs import PackedInputs, pack
from kitaru._limits import check_flow_inputs, check_wait_input
from kitaru._runtime.driver import LiveExecution, get_live, register_live, run_execution
from kitaru._runtime.leases import RUNNER_ID, lease_seconds, runner_gone
from kitaru._runtime.loader import load_flow
from kitaru._runtime.waits import to_json, type_adapter, wake
from kitaru._stacks.local import launch_local
from kitaru._store import ArtifactRecord, ExecutionRecord, ExecutionStatus, WaitStatus
from kitaru.errors import (
    KitaruBackendError,
    KitaruStateError,
    KitaruUsageError,
    KitaruWaitValidationError,
)

if TYPE_CHECKING:
    from kitaru._backend import Backend
    from kitaru._store.records_extra import WaitRecord
    from kitaru.flow import Flow

_ACTIVE = (ExecutionStatus.RUNNING, ExecutionStatus.WAITING)


def start(
    backend: Backend,
    record: ExecutionRecord,
    flow: Flow[Any, Any],
    args: tuple[Any, ...],
    kwargs: Mapping[str, Any],
    *,
    fresh: bool = False,
) -> LiveExecution:
    """Run a claimed execution's body on the local stack (a thread of this process)."""
    live = register_live(record.id)
    live.fence, live.flow_name = record.fence, record.flow_name
    launch_local(
        record.id,
        functools.partial(
            run_execution,
            backend,
            record,
            flow.func,
            args,
            kwargs,
            live=live,
            fresh=fresh,
        ),
    )
    return live


def _inputs(backend: Backend, record: ExecutionRecord) -> tuple[tuple[Any, ...], dict[str, Any]]:
    if record.inputs_artifact_id is None:
        return (), {}
    args, kwargs = backend.load_artifact(record.inputs_artifact_id)
    return tuple(args), dict(kwargs)


def pack_inputs(
    args: tuple[Any, ...],
    kwargs: Mapping[str, Any],
    *,
    what: str,
    signature: inspect.Signature | None = None,
    check_size: bool = True,
) -> PackedInputs:
    """A new execution's inputs, serialized and checked against the size limit.

    Nothing is written yet: a refused input leaves no trace in the store.
    """
    try:
        packed = pack(tuple(args), dict(kwargs), arg_names=_positional_names(signature))
    except SerializationError as exc:
        raise KitaruUsageError(f"{what} cannot be stored: {exc}") from None
    if check_size:
        check_flow_inputs(packed.size, packed.sizes(), what=what)
    return packed


def store_inputs(backend: Backend, exec_id: str, packed: PackedInputs) -> ArtifactRecord:
    """Write packed inputs (a blob when large) so any process can run the body again."""
    return backend.store_serialized(
        packed.serialized(), exec_id=exec_id, call_id=None, name="inputs", kind="flow_inputs"
    )


def inputs_artifact(
    backend: Backend,
    exec_id: str,
    args: tuple[Any, ...],
    kwargs: Mapping[str, Any],
    *,
    what: str,
    signature: inspect.Signature | None = None,
) -> ArtifactRecord:
    """A new execution's inputs, checked and stored (see :func:`pack_inputs`)."""
    packed = pack_inputs(args, kwargs, what=what, signature=signature)
    return store_inputs(backend, exec_id, packed)


def _positional_names(signature: inspect.Signature | None) -> tuple[str, ...]:
    if signature is None:
        return ()
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return tuple(p.name for p in signature.parameters.values() if p.kind in positional)


def new_running_record(
    exec_id: str,
    *,
    flow_name: str,
    flow_ref: dict[str, Any],
    stack: str,
    config: dict[str, Any],
    inputs: ArtifactRecord,
    now: float,
    original_exec_id: str | None = None,
    replay_plan: dict[str, Any] | None = None,
) -> ExecutionRecord:
    """The record of an execution created running, owned by this process (first run)."""
    return ExecutionRecord(
        id=exec_id,
        flow_name=flow_name,
        flow_ref=flow_ref,
        status=ExecutionStatus.RUNNING,
        stack=stack,
        config=config,
        created_at=now,
        inputs_artifact_id=inputs.id,
        original_exec_id=original_exec_id,
        replay_plan=replay_plan,
        started_at=now,
        run_count=1,
        lease_owner=RUNNER_ID,
        lease_expires_at=now + lease_seconds(),
    )


def resume(backend: Backend, exec_id: str) -> LiveExecution:
    """Continue an execution whose runner died, in this process.

    Also continues one its runner stopped: failed because the store or the disk
    failed under it, or cancelled by Ctrl-C (their failure is ``resumable``). A
    runner's lease is waited out only when its process may still be running:
    one of this machine that is gone (or this process, no longer running it)
    is taken over at once.
    """
    record = backend.store.require_execution(exec_id)
    now = time.time()
    if record.status is ExecutionStatus.WAITING:
        _refuse_pending_waits(backend, record)
    if _resumable_stop(record):
        return _claim_and_start(
            backend, record, from_status=(record.status,), require_expired_lease=False
        )
    lease_held = record.lease_expires_at is not None and record.lease_expires_at > now
    if lease_held and record.status in _ACTIVE and _runner_gone(record):
        # The fence still guards the claim: of several resumers, one wins.
        return _claim_and_start(backend, record, from_status=_ACTIVE, require_expired_lease=False)
    if record.status is ExecutionStatus.RUNNING:
        if lease_held:
            assert record.lease_expires_at is not None
            raise KitaruStateError(
                f"Execution {exec_id} is running under {record.lease_owner} (its lease is "
                f"valid for another {record.lease_expires_at - now:.0f} s); there is nothing "
                "to resume. If that process is gone, resume once the lease has expired."
            )
    elif record.status is not ExecutionStatus.WAITING:
        hint = {
            ExecutionStatus.FAILED: f"use `kitaru executions retry {exec_id}`",
            ExecutionStatus.COMPLETED: "replay it to run it again from a checkpoint",
            ExecutionStatus.CANCELLED: "replay it to run it again from a checkpoint",
        }[record.status]
        raise KitaruStateError(
            f"Execution {exec_id} is {record.status.value}; only running executions whose "
            f"runner died, or waiting ones, can be resumed: {hint}."
        )
    return _claim_and_start(backend, record, from_status=_ACTIVE, require_expired_lease=True)


def _refuse_pending_waits(backend: Backend, record: ExecutionRecord) -> None:
    """A waiting execution resumes once its input arrives, not before (0.21's contract:
    ``resume`` of an execution with pending waits is a ``KitaruStateError``)."""
    pending = [w.wait_id for w in backend.store.waits(record.id) if w.status is WaitStatus.PENDING]
    if pending:
        names = ", ".join(repr(name) for name in pending)
        which = "waits" if len(pending) > 1 else "wait"
        raise KitaruStateError(
            f"Execution {record.id} is waiting for input ({which} {names}); there is "
            f"nothing to resume yet. Give the input with `kitaru executions input "
            f"{record.id} --value JSON` (or KitaruClient().executions.input(...)): the "
            "execution continues by itself then."
        )


def _resumable_stop(record: ExecutionRecord) -> bool:
    """Failed or cancelled in a way that ``resume`` may continue (see driver, interrupt)."""
    finished = record.status in (ExecutionStatus.FAILED, ExecutionStatus.CANCELLED)
    return finished and bool((record.failure or {}).get("resumable"))


def runner_is_gone(record: ExecutionRecord) -> bool:
    """Whether the process holding ``record``'s lease is certainly not running it."""
    return _runner_gone(record)


def _runner_gone(record: ExecutionRecord) -> bool:
    """The process holding the lease is certainly not running the execution any more."""
    owner = record.lease_owner
    if owner is None:
        return True
    if owner == RUNNER_ID:
        # Ours, but not running here: its runner thread ended without a record.
        live = get_live(record.id)
        return live is None or live.done.is_set()
    return runner_gone(owner)


def retry(backend: Backend, exec_id: str, *, cancelled_too: bool = False) -> LiveExecution:
    """Run a failed execution again under the same id, reusing completed checkpoints.

    ``cancelled_too``: a cancelled one as well (a child whose parent is retried past it:
    the parent needs its result; users retry failed executions only)."""
    record = backend.store.require_execution(exec_id)
    allowed = (ExecutionStatus.FAILED, ExecutionStatus.CANCELLED) if cancelled_too else _FAILED
    if record.status not in allowed:
        raise KitaruStateError(
            f"Execution {exec_id} is {record.status.value}; only failed executions can be "
            "retried (resume a crashed one, replay a finished one)."
        )
    return _claim_and_start(backend, record, from_status=allowed, require_expired_lease=False)


_FAILED = (ExecutionStatus.FAILED,)


def _claim_and_start(
    backend: Backend,
    record: ExecutionRecord,
    *,
    from_status: tuple[ExecutionStatus, ...],
    require_expired_lease: bool,
) -> LiveExecution:
    # Load the code and inputs before claiming: if they are missing, nothing changes.
    flow = load_flow(record.flow_ref, exec_id=record.id)
    args, kwargs = _inputs(backend, record)
    remote = prepare_remote(backend, record)  # a ray stack's execution runs there again
    try:
        claimed = backend.store.claim(
            record.id,
            owner=RUNNER_ID,
            lease_seconds=lease_seconds(),
            from_status=from_status,
            expected_fence=record.fence,
            require_expired_lease=require_expired_lease,
        )
    except KitaruBackendError as exc:
        raise KitaruBackendError(
            f"Could not take over execution {record.id} to run it here: {exc}. Nothing "
            "changed; try again once the store accepts writes (e.g. after freeing disk space)."
        ) from exc
    if claimed is None:
        raise KitaruStateError(
            f"Execution {record.id} was taken by another process just now; it is running there."
        )
    if remote is not None:
        from kitaru._stacks.ray import hand_over

        hand_over(remote, claimed)
        return LiveExecution(claimed.id, fence=claimed.fence, flow_name=claimed.flow_name)
    return start(backend, claimed, flow, args, kwargs)


def prepare_remote(backend: Backend, record: ExecutionRecord) -> Any:
    """The prepared launch of an execution whose stack is a ray stack, else None.

    Checks and connects only (nothing is written): call it before changing the store.
    """
    if record.stack == "local":
        return None
    from kitaru._stacks.ray import prepare_again

    return prepare_again(backend, record)


def cancel(backend: Backend, exec_id: str) -> None:
    record = backend.store.require_execution(exec_id)
    if record.status not in _ACTIVE:
        raise KitaruStateError(
            f"Execution {exec_id} is already {record.status.value}; only running or "
            "waiting executions can be cancelled."
        )
    changed = backend.store.finish_execution(
        exec_id,
        status=ExecutionStatus.CANCELLED,
        failure={"origin": "runtime", "message": "cancelled by request"},
        only_if_status=_ACTIVE,
    )
    if not changed:
        raise KitaruStateError(f"Execution {exec_id} finished before it could be cancelled.")
    live = get_live(exec_id)
    if live is not None:
        live.cancel.set()
        for wait in backend.store.waits(exec_id):
            wake(exec_id, wait.wait_id)  # a runner blocked in kitaru.wait() stops now
    # A cancelled parent's running children are cancelled too (and theirs).
    for child in backend.store.children(exec_id):
        if child.status in _ACTIVE:
            with contextlib.suppress(KitaruStateError):
                cancel(backend, child.id)


def interrupt(backend: Backend, live: LiveExecution) -> bool:
    """Stop an execution running in this process because its user pressed Ctrl-C.

    Recorded ``cancelled`` with a resumable failure (see ``resume``) and no lease,
    so it can be resumed at once; fenced, so it never touches a run another
    process took over. The runner stops at its next boundary, and a checkpoint
    still running never records its output (the runner's writes need a running
    execution). False when the execution had ended or moved on already.
    """
    changed = backend.store.finish_execution(
        live.exec_id,
        status=ExecutionStatus.CANCELLED,
        failure=dict(INTERRUPTED_FAILURE),
        only_if_status=_ACTIVE,
        fence=live.fence,
    )
    live.cancel.set()
    if changed:
        for wait in backend.store.waits(live.exec_id):
            wake(live.exec_id, wait.wait_id)
    return changed


#: The failure record of an execution stopped by Ctrl-C in the process running it.
INTERRUPTED_FAILURE: dict[str, Any] = {
    "origin": "runtime",
    "reason": "interrupted",
    "message": "interrupted by the user (Ctrl-C)",
    "retryable": False,
    "resumable": True,
}


def delete(backend: Backend, exec_id: str, *, recursive: bool = False) -> None:
    record = backend.store.require_execution(exec_id)
    children = backend.store.children(exec_id)
    if children and not recursive:
        raise KitaruStateError(
            f"Execution {exec_id} has {len(children)} child execution(s) "
            f"({', '.join(c.id for c in children[:5])}{', ...' if len(children) > 5 else ''}); "
            "delete them with it by passing recursive=True "
            f"(`kitaru executions delete {exec_id} --recursive`)."
        )
    for child in children:  # refused (e.g. still running) before the parent changes
        delete(backend, child.id, recursive=True)
    if record.status in _ACTIVE and (
        record.lease_expires_at is None or record.lease_expires_at > time.time()
    ):
        raise KitaruStateError(
            f"Execution {exec_id} is {record.status.value}; cancel it first "
            f"(`kitaru executions cancel {exec_id}`), then delete it."
        )
    # A record pointing outside the artifact root (moved root, or tampered with) stops the
    # delete before anything changes: Kitaru never removes files outside its root.
    for artifact in backend.store.list_artifacts(exec_id=exec_id):
        if artifact.uri is not None:
            backend.blobs.check_uri(artifact.uri, "delete")
    refused: list[BlobLocationError] = []
    for uri in backend.store.delete_execution(exec_id):
        try:
            backend.blobs.delete(uri)
        except BlobLocationError as exc:  # a reused artifact of an older execution
            refused.append(exc)
    if refused:
        raise refused[0]


# Replays are planned and started by kitaru._runtime.replaying.


# -- input to waits --------------------------------------------------------------------


def pick_wait(backend: Backend, exec_id: str, wait: str | None) -> WaitRecord:
    """The pending wait ``wait`` names (or the only one); typed errors otherwise."""
    record = backend.store.require_execution(exec_id)
    waits = backend.store.waits(exec_id)
    if wait is not None:
        # A name may be reached several times (a wait in a loop: ids name, name:2, ...):
        # it then names the one still pending. A wait id names one wait.
        matches = [w for w in waits if wait in (w.wait_id, w.name)]
        if not matches:
            known = ", ".join(w.wait_id for w in waits) or "(none)"
            raise KitaruStateError(
                f"Execution {exec_id} has no wait named {wait!r}; its waits: {known}."
            )
        open_ones = [w for w in matches if w.status is WaitStatus.PENDING]
        if len(open_ones) > 1:
            open_ones = [w for w in open_ones if w.wait_id == wait] or open_ones
        if len(open_ones) > 1:
            ids = ", ".join(w.wait_id for w in open_ones)
            raise KitaruStateError(
                f"Execution {exec_id} has several pending waits named {wait!r} ({ids}); "
                "pass the wait id of the one to answer."
            )
        chosen = open_ones[0] if open_ones else max(matches, key=lambda w: w.created_at)
        if chosen.status is not WaitStatus.PENDING:
            raise KitaruStateError(
                f"Wait {chosen.wait_id!r} of execution {exec_id} was already {chosen.status.value}."
            )
        if record.status is not ExecutionStatus.WAITING:
            raise KitaruStateError(
                f"Execution {exec_id} is {record.status.value}, not waiting for input."
            )
        return chosen
    pending = [w for w in waits if w.status is WaitStatus.PENDING]
    if record.status is not ExecutionStatus.WAITING or not pending:
        raise KitaruStateError(
            f"Execution {exec_id} has no pending wait (it is {record.status.value})."
        )
    if len(pending) > 1:
        names = ", ".join(w.wait_id for w in pending)
        raise KitaruUsageError(
            f"Execution {exec_id} has several pending waits ({names}); pass wait=."
        )
    return pending[0]


def _schema_type(backend: Backend, exec_id: str, wait: WaitRecord) -> Any:
    import cloudpickle

    assert wait.schema_pickle is not None
    try:
        return cloudpickle.loads(wait.schema_pickle)
    except Exception:
        # The schema's module may need the flow's project on sys.path.
        record = backend.store.require_execution(exec_id)
        try:
            load_flow(record.flow_ref, exec_id=exec_id)
            return cloudpickle.loads(wait.schema_pickle)
        except Exception as exc:
            raise KitaruStateError(
                f"Cannot load the schema of wait {wait.wait_id!r} (execution {exec_id}) to "
                f"validate the input: {exc}. Give input from the flow's project directory."
            ) from None


#: Problems an answer refused for its schema lists at most: enough for any form, and a
#: bound on the answer to a huge invalid value.
MAX_INPUT_DETAILS = 50


def shown_problems(problems: Iterable[tuple[Iterable[Any], str]]) -> str:
    """The first problems of a refused answer in words: ``path: message; ...``."""
    return "; ".join(
        f"{'/'.join(str(p) for p in path) or '(the value)'}: {message}"
        for path, message in itertools.islice(problems, 5)
    )


def input_refused(
    wait_id: str, exec_id: str, shown: str, details: list[dict[str, Any]]
) -> KitaruWaitValidationError:
    """The error for an answer that does not match its wait's schema (here or on the
    server): the problems in words, and one by one in ``details``."""
    return KitaruWaitValidationError(
        f"Input for wait {wait_id!r} of execution {exec_id} does not match its schema: "
        f"{shown}. The execution is still waiting; send a corrected value.",
        details=details[:MAX_INPUT_DETAILS],
    )


def _validated(adapter: Any, value: Any, wait_id: str, exec_id: str) -> Any:
    """``value`` validated by the wait's type as Pydantic does (``"3"`` becomes 3 for an
    int, defaults are filled in); every problem is listed in ``details``."""
    try:
        return adapter.validate_python(value)
    except Exception as exc:  # pydantic.ValidationError, and friends
        errors = getattr(exc, "errors", None)
        problems = errors() if callable(errors) else []
        details: list[dict[str, Any]] = [
            {
                "path": [p for p in problem.get("loc", ()) if isinstance(p, str | int)],
                "message": str(problem.get("msg", "")),
                "keyword": str(problem.get("type", "")),
            }
            for problem in problems[:MAX_INPUT_DETAILS]
        ]
        shown = shown_problems((d["path"], d["message"]) for d in details)
        raise input_refused(wait_id, exec_id, shown or str(exc), details) from None


def give_input(
    backend: Backend,
    exec_id: str,
    *,
    wait: str | None,
    value: Any = None,
    abort: bool = False,
    resume_if_released: bool = True,
) -> WaitRecord:
    """Validate and record the answer to a pending wait, then wake or resume the runner."""
    chosen = pick_wait(backend, exec_id, wait)
    stored_value: Any = None
    if not abort and chosen.schema_pickle is not None:
        adapter = type_adapter(_schema_type(backend, exec_id, chosen))
        stored_value = to_json(adapter, _validated(adapter, value, chosen.wait_id, exec_id))
    elif not abort and chosen.json_schema is None and value is not None:
        raise KitaruWaitValidationError(
            f"Wait {chosen.wait_id!r} of execution {exec_id} is a plain continue gate "
            f"(schema=None); give no value (got {value!r})."
        )
    if not abort:
        check_wait_input(stored_value, wait_id=chosen.wait_id, exec_id=exec_id)
        # As through a server: JSON cannot carry NaN or Infinity (PostgreSQL refuses the
        # stored answer), so every store refuses them alike, before anything is recorded.
        from kitaru.client._remote_waits import refuse_non_finite

        refuse_non_finite(stored_value, wait=chosen.wait_id, exec_id=exec_id)
    status = WaitStatus.ABORTED if abort else WaitStatus.ANSWERED
    if not backend.store.answer_wait(exec_id, chosen.wait_id, status=status, value=stored_value):
        raise KitaruStateError(
            f"Wait {chosen.wait_id!r} of execution {exec_id} was answered by someone else first."
        )
    wake(exec_id, chosen.wait_id)
    if resume_if_released:
        resume_released(backend, exec_id)
    return chosen


def resume_released(backend: Backend, exec_id: str) -> bool:
    """Resume a waiting execution in this process if no runner holds it.

    True when this process took it; False when a runner (here or elsewhere)
    still holds it, when it is not waiting, or when another process (a worker,
    another input) resumed it first.
    """
    record = backend.store.get_execution(exec_id)
    if record is None or record.status is not ExecutionStatus.WAITING:
        return False
    held = record.lease_expires_at is not None and record.lease_expires_at >= time.time()
    if held and not _runner_gone(record):  # a runner of this machine that exited holds none
        return False
    try:
        resume(backend, exec_id)
    except KitaruStateError:
        return False
    return True

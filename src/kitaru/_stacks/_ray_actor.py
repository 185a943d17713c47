"""The worker side of the ray stack: the actor that runs one execution.

Its ``__init__`` starts the run in a thread and returns, so Ray restarting the
actor after its process died (``max_restarts``) is exactly a resume: the new
process claims the execution once the dead runner's lease is gone (at once when
that runner was a process of this machine) and runs the body again, reusing
every checkpoint the store recorded. The actor removes itself (no restart)
when the run ends: completed, failed, cancelled or parked at a wait.

A cancel is seen through the lease renewal, as for local runners; in-flight
isolated Ray tasks are cancelled, and a body that does not reach a checkpoint
boundary within a grace period ends with its process.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from kitaru._store import ExecutionRecord, Store

logger = logging.getLogger("kitaru")

#: After a cancel, how long the body gets to reach a checkpoint boundary (seconds).
CANCEL_GRACE: Final = 5.0


class ExecutionActor:
    """One execution on the cluster; see the module docstring."""

    def __init__(self, payload: dict[str, Any]) -> None:
        os.environ.update(payload["env"])
        os.environ["KITARU_STORE_URL"] = payload["store_url"]
        os.environ["KITARU_ARTIFACTS_ROOT"] = payload["artifacts_root"]
        self._payload = payload
        self._thread = threading.Thread(target=self._main, name="kitaru-ray-exec", daemon=True)
        self._thread.start()

    def ready(self) -> bool:
        return True

    def _main(self) -> None:
        try:
            run_dispatched(self._payload)
        except BaseException:
            logger.exception("Kitaru's Ray runner for %s stopped", self._payload["exec_id"])
        finally:
            _remove_self()


def _remove_self() -> None:
    import ray

    try:
        ray.kill(ray.get_runtime_context().current_actor, no_restart=True)
    except Exception:  # pragma: no cover - the process ends with the cluster anyway
        os._exit(0)


def run_dispatched(payload: dict[str, Any]) -> None:
    """Claim the execution and run it here; return when this run ends."""
    from kitaru._backend import get_backend
    from kitaru._runtime.control import _inputs
    from kitaru._runtime.driver import register_live, run_execution
    from kitaru._runtime.loader import load_flow
    from kitaru._stacks import _ray_isolated

    backend = get_backend()
    exec_id = payload["exec_id"]
    record = _claim(backend.store, exec_id, int(payload["fence"]))
    if record is None:
        return
    live = register_live(exec_id)
    live.fence, live.flow_name = record.fence, record.flow_name
    try:
        ref = remap_flow_ref(record.flow_ref, payload.get("code_root"))
        flow = load_flow(ref, exec_id=exec_id)
        _pickle_script_by_value(ref)
        args, kwargs = _inputs(backend, record)
    except Exception as exc:
        _fail_to_start(backend.store, record, exc)
        return
    _ray_isolated.enable(
        num_cpus=payload.get("num_cpus", 1),
        num_gpus=payload.get("num_gpus", 0),
        resources=payload.get("resources") or {},
        env=payload.get("env") or {},
    )
    threading.Thread(
        target=_enforce_cancel, args=(live,), name="kitaru-ray-cancel", daemon=True
    ).start()
    run_execution(backend, record, flow.func, args, kwargs, live=live)


def _claim(store: Store, exec_id: str, fence: int) -> ExecutionRecord | None:
    """Take the execution over: at once if nobody ran it since dispatch, else once the
    previous runner is certainly gone. None when it ended or another process took it."""
    from kitaru._runtime.leases import RUNNER_ID, lease_seconds, runner_gone
    from kitaru._store import ExecutionStatus

    waited_for: int | None = None
    while True:
        record = store.get_execution(exec_id)
        if record is None or record.status is not ExecutionStatus.RUNNING:
            return None  # finished, cancelled, or parked at a wait: nothing to run
        if waited_for is not None and record.fence != waited_for:
            return None  # someone else (a worker, another restart) took it meanwhile
        now = time.time()
        free = (
            record.fence == fence
            or record.lease_owner is None
            or record.lease_expires_at is None
            or record.lease_expires_at < now
            or runner_gone(record.lease_owner)
        )
        if free:
            claimed = store.claim(
                exec_id,
                owner=RUNNER_ID,
                lease_seconds=lease_seconds(),
                from_status=(ExecutionStatus.RUNNING,),
                expected_fence=record.fence,
                require_expired_lease=False,
            )
            if claimed is None:
                return None
            return claimed
        # A runner on another node may still be running it: wait out its lease.
        waited_for = record.fence
        assert record.lease_expires_at is not None
        time.sleep(min(1.0, max(0.05, record.lease_expires_at - now)))


def remap_flow_ref(ref: dict[str, Any], code_root: str | None) -> dict[str, Any]:
    """The flow's reference with paths under the shipped code root moved to the copy here."""
    if not code_root:
        return ref
    here = Path.cwd()
    root = Path(code_root)
    out = dict(ref)
    for key in ("file", "module_root", "project_root", "cwd"):
        value = ref.get(key)
        if not value:
            continue
        try:
            relative = Path(value).relative_to(root)
        except ValueError:
            continue
        out[key] = str(here / relative)
    return out


def _pickle_script_by_value(ref: dict[str, Any]) -> None:
    """Functions of a flow script travel to isolated tasks by value (no module there)."""
    import sys

    if ref.get("module") not in ("__main__", "__mp_main__"):
        return
    module = sys.modules.get("__mp_main__")
    if module is None:
        return
    import cloudpickle

    with contextlib.suppress(ValueError):
        cloudpickle.register_pickle_by_value(module)


def _fail_to_start(store: Store, record: ExecutionRecord, exc: Exception) -> None:
    from kitaru._store import ExecutionStatus

    store.finish_execution(
        record.id,
        status=ExecutionStatus.FAILED,
        failure={
            "origin": "runtime",
            "checkpoint": None,
            "exception_type": type(exc).__name__,
            "message": f"Could not start the execution on the Ray cluster: {exc}",
        },
        only_if_status=(ExecutionStatus.RUNNING,),
        fence=record.fence,
    )


def _enforce_cancel(live: Any) -> None:
    """Once cancelled: stop in-flight Ray tasks; end the process if the body lingers."""
    while not live.cancel.wait(0.5):
        if live.done.is_set():
            return
    if live.done.is_set():
        return
    from kitaru._stacks import _ray_isolated

    _ray_isolated.cancel_all()
    if not live.done.wait(CANCEL_GRACE):
        logger.warning("Execution %s was cancelled; stopping its Ray actor.", live.exec_id)
        _remove_self()


__all__ = ["ExecutionActor", "remap_flow_ref", "run_dispatched"]

"""Watch a dispatched execution's actor start; record why, when Ray cannot start it.

``RayLaunch.launch`` creates a detached actor and returns: Ray sets up the actor's
runtime env (pip packages, the shipped code) and starts its process later. When
that setup fails (a requirement that does not exist, a broken wheel), Ray gives up
after a few tries, and nothing of Kitaru ever ran: the execution would show
``running`` until its dispatch lease ran out, with no reason. The process that
dispatched it waits for the actor's first answer in a daemon thread instead, and
records Ray's error as the execution's failure, fenced: once the actor has claimed
the execution (the fence moved on), whatever happens next is its runner's to record.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any

from kitaru._store import ExecutionStatus
from kitaru.errors import FailureOrigin

if TYPE_CHECKING:
    from kitaru._store import ExecutionRecord, Store

logger = logging.getLogger("kitaru")

#: The most characters of Ray's error kept in the failure (pip's output can be long).
_MAX_DETAIL = 4000


def watch_start(
    actor: Any, record: ExecutionRecord, store: Store, stack_name: str, timeout: float
) -> threading.Thread:
    """Wait (in a daemon thread) for ``actor`` to answer; record a failure if it cannot."""
    thread = threading.Thread(
        target=_watch,
        args=(actor, record, store, stack_name, timeout),
        name=f"kitaru-ray-watch-{record.id[:8]}",
        daemon=True,
    )
    thread.start()
    return thread


def _watch(
    actor: Any, record: ExecutionRecord, store: Store, stack_name: str, timeout: float
) -> None:
    import ray

    try:
        ray.get(actor.ready.remote(), timeout=timeout)
        return
    except ray.exceptions.RuntimeEnvSetupError as exc:
        failure = _start_failure(record.id, stack_name, exc)
    except Exception:
        # A timeout, or an actor that died starting (a lost node): Ray restarts it, or
        # its dispatch lease runs out and a worker takes the execution up as an orphan.
        return
    try:
        store.finish_execution(
            record.id,
            status=ExecutionStatus.FAILED,
            failure=failure,
            only_if_status=(ExecutionStatus.RUNNING,),
            fence=record.fence,
        )
    except Exception:  # the store is down: the dispatch lease runs out as a fallback
        logger.debug("Could not record that execution %s did not start", record.id, exc_info=True)


def _start_failure(exec_id: str, stack_name: str, exc: BaseException) -> dict[str, Any]:
    """The failure record of an execution whose runtime env Ray could not set up."""
    detail = " ".join(str(exc).split())
    if len(detail) > _MAX_DETAIL:
        detail = detail[:_MAX_DETAIL] + " …"
    return {
        "origin": FailureOrigin.RUNTIME.value,
        "exception_type": type(exc).__name__,
        "message": (
            f"Ray could not set up the runtime env of execution {exec_id} on ray stack "
            f"{stack_name!r}: {detail}. Fix the image's requirements or the stack's runtime "
            f"env, then run it again with `kitaru executions retry {exec_id}`."
        ),
        "retryable": False,
    }

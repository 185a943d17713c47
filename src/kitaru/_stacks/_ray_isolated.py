"""``runtime="isolated"`` checkpoints of an execution running on a ray stack.

Each attempt runs as its own Ray task (placed anywhere in the cluster, with the
stack's ``num_cpus``/``num_gpus``/``resources``), so ``.submit()``/``.map()`` of isolated
checkpoints fan out across the nodes. Inputs and outputs go through the
artifact store, exactly as for the local isolated runtime: the task runs the
same child code and returns its report; the execution's runner records the
outcome under its own fence. A task whose worker dies fails that attempt
(``IsolatedCheckpointError``) and the checkpoint's retries take over.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import tempfile
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Mapping

    from kitaru._runtime.context import CheckpointFrame
    from kitaru._runtime.execution import CheckpointSpec, ExecutionContext

_POLL_SECONDS = 0.05
_resources: dict[str, Any] | None = None
#: The environment the execution's actor was given (its image's secret-looking
#: values among it): each task gets it too, as an argument, never in Ray's env_vars.
_actor_env: dict[str, str] = {}
_in_flight: set[Any] = set()
_lock = threading.Lock()


def enable(
    *,
    num_cpus: float,
    num_gpus: float,
    resources: dict[str, float],
    env: dict[str, str] | None = None,
) -> None:
    """In an execution's Ray actor: run isolated checkpoints as Ray tasks from now on,
    each with the actor's own ``env`` (what the execution's process has, they have)."""
    global _resources, _actor_env
    _actor_env = dict(env or {})
    _resources = {"num_cpus": num_cpus, "num_gpus": num_gpus}
    if resources:
        _resources["resources"] = dict(resources)


def enabled() -> bool:
    return _resources is not None


def cancel_all() -> None:
    """Stop every isolated task this process started that is still running."""
    import ray

    with _lock:
        refs = list(_in_flight)
    for ref in refs:
        with contextlib.suppress(Exception):
            ray.cancel(ref, force=True)


def run_isolated_on_ray(
    ctx: ExecutionContext,
    spec: CheckpointSpec,
    args: tuple[Any, ...],
    kwargs: Mapping[str, Any],
    frame: CheckpointFrame,
) -> Any:
    """One attempt of ``spec`` as a Ray task; its value, or the attempt's error."""
    import cloudpickle
    import ray

    from kitaru._blobs.pickle_policy import ENV_ALLOW_PICKLE, pickle_setting
    from kitaru._runtime import events
    from kitaru._runtime.isolated import IsolatedCheckpointError, _replay_output, outcome
    from kitaru.client._remote_store import runner_env

    assert _resources is not None
    backend = ctx.backend
    try:
        payload = cloudpickle.dumps((spec.func, tuple(args), dict(kwargs)))
    except Exception as exc:
        raise IsolatedCheckpointError(
            f"Cannot send checkpoint {spec.name!r} to a Ray task: its function or inputs "
            f"cannot be pickled ({type(exc).__name__}: {exc})."
        ) from exc
    uri, sha = backend.blobs.put(payload)
    env = {
        **_actor_env,
        "KITARU_STORE_URL": backend.store.url,
        "KITARU_ARTIFACTS_ROOT": backend.artifacts_root,
        ENV_ALLOW_PICKLE: "1" if pickle_setting()[0] else "0",
        **events.child_env(frame),
        **runner_env(backend.store),  # a Kitaru server's key: a task argument, not env_vars
    }
    task = _remote_task().options(max_retries=0, **_resources)
    ref = task.remote([uri, sha, ctx.exec_id, frame.call_id, spec.name], env)
    with _lock:
        _in_flight.add(ref)
    try:
        while True:
            ready, _ = ray.wait([ref], timeout=_POLL_SECONDS)
            if ready:
                break
            if ctx.cancel_event.is_set():
                with contextlib.suppress(Exception):
                    ray.cancel(ref, force=True)
                ctx.check_cancelled()
        try:
            report, out, err = ray.get(ref)
        except Exception as exc:  # the task's worker died, or Ray could not run it
            raise IsolatedCheckpointError(
                f"The Ray task of checkpoint {spec.name!r} failed: "
                f"{type(exc).__name__}: {str(exc).strip().splitlines()[-1] if str(exc) else ''}"
            ) from None
    finally:
        with _lock:
            _in_flight.discard(ref)
    _replay_output(out, err)
    events.child_reported(frame, report.get("event_next_index"))
    return outcome(backend, spec, frame, report, "the Ray task")


def _remote_task() -> Any:
    """The Ray remote function, made once per process (each one is exported to the GCS)."""
    global _task
    if _task is None:
        import ray

        _task = ray.remote(_isolated_task)
    return _task


_task: Any = None


def _isolated_task(argv: list[str], env: dict[str, str]) -> tuple[dict[str, Any], str, str]:
    """On a Ray worker: the isolated child's work; returns (report, stdout, stderr)."""
    from kitaru._runtime.isolated import child_main

    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    out, err = io.StringIO(), io.StringIO()
    try:
        with tempfile.TemporaryDirectory(prefix="kitaru-ray-isolated-") as workdir:
            report_path = Path(workdir) / "report.json"
            uri, sha, exec_id, call_id, name = argv
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                child_main([uri, sha, str(report_path), exec_id, call_id, name])
            report: dict[str, Any] = json.loads(report_path.read_text())
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return report, out.getvalue(), err.getvalue()


__all__ = ["cancel_all", "enable", "enabled", "run_isolated_on_ray"]

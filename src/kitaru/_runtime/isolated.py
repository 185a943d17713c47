"""``@checkpoint(runtime="isolated")``: each call runs in its own OS process.

The parent writes the function and its inputs (cloudpickle) to the blob store,
starts ``python -m kitaru._runtime.isolated_child`` and waits. The child runs the
function and writes its output to the blob store, plus a small JSON report
(output reference, ``kitaru.log`` metadata, ``kitaru.save`` artifacts) to a
file the parent named. Everything durable is then recorded by the parent, in
the usual single transaction, so fencing and exactly-once bookkeeping are the
same as for inline calls.

A child that raises, calls ``os._exit``, segfaults or runs out of memory only
fails that attempt: the parent raises ``IsolatedCheckpointError`` and the
normal retry loop takes over. The child's stdout and stderr are replayed into
the parent's streams, so log capture files them under the right call.

A flow defined in a script (``python script.py``) that another process resumes or
retries runs there as ``__mp_main__`` (see ``loader``): the child then loads that
script the same way before unpickling the call, as multiprocessing's spawn does.
"""

from __future__ import annotations

import asyncio
import base64
import inspect
import json
import os
import signal
import subprocess
import sys
import tempfile
import traceback
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from kitaru._blobs import Serialized, deserialize, serialize
from kitaru._blobs.pickle_policy import ENV_ALLOW_PICKLE, pickle_setting
from kitaru._parent_death import parent_env
from kitaru._runtime import events
from kitaru._store import ArtifactRecord

if TYPE_CHECKING:
    from collections.abc import Mapping

    from kitaru._backend import Backend
    from kitaru._runtime.context import CheckpointFrame
    from kitaru._runtime.execution import CheckpointSpec, ExecutionContext

_POLL_SECONDS = 0.05
#: The child checks that its runner (this process) is still its parent.
ENV_PARENT = "KITARU_ISOLATED_PARENT"


class IsolatedCheckpointError(RuntimeError):
    """The isolated process of a checkpoint call failed or died."""


def run_isolated(
    ctx: ExecutionContext,
    spec: CheckpointSpec,
    args: tuple[Any, ...],
    kwargs: Mapping[str, Any],
    frame: CheckpointFrame,
) -> Any:
    """Run one attempt of ``spec`` in a child process and return its value."""

    from kitaru.client._remote_store import runner_env

    backend = ctx.backend
    try:
        script_flow = ctx.record.flow_ref.get("module") == "__main__"
        payload = _dumps_call(spec.func, tuple(args), dict(kwargs), script_flow=script_flow)
    except Exception as exc:
        raise IsolatedCheckpointError(
            f"Cannot send checkpoint {spec.name!r} to an isolated process: its function or "
            f"inputs cannot be pickled ({type(exc).__name__}: {exc})."
        ) from exc
    uri, sha = backend.blobs.put(payload)
    with tempfile.TemporaryDirectory(prefix="kitaru-isolated-") as workdir:
        report_path = Path(workdir) / "report.json"
        env = dict(os.environ)
        env["KITARU_STORE_URL"] = backend.store.url
        env["KITARU_ARTIFACTS_ROOT"] = backend.artifacts_root
        env.update(runner_env(backend.store))  # a server's key, if recording through one
        # configure(allow_pickle=...) is process-local: the child must store its output
        # under the same rule the parent will load it with.
        env[ENV_ALLOW_PICKLE] = "1" if pickle_setting()[0] else "0"
        # The child must import what the parent could (the flow's modules, scripts' dirs).
        env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
        env.update(events.child_env(frame))  # the child's events continue this attempt's
        # If this runner dies, its child dies too: a resume runs the call again, and two
        # copies must not overlap (see child_main).
        env.update(parent_env(ENV_PARENT))
        command = [
            sys.executable,
            "-m",
            "kitaru._runtime.isolated_child",
            uri,
            sha,
            str(report_path),
            ctx.exec_id,
            frame.call_id,
            spec.name,
        ]
        child = subprocess.Popen(
            command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        try:
            while True:
                try:
                    out, err = child.communicate(timeout=_POLL_SECONDS)
                    break
                except subprocess.TimeoutExpired:
                    if ctx.cancel_event.is_set():
                        child.kill()
                        child.communicate()
                        ctx.check_cancelled()
        except BaseException:
            child.kill()
            child.wait()
            raise
        _replay_output(out, err)
        report = _read_report(report_path)
    if report is not None:
        events.child_reported(frame, report.get("event_next_index"))
    if child.returncode != 0 or report is None:
        raise IsolatedCheckpointError(_describe_exit(spec.name, child.returncode, err, report))
    return outcome(backend, spec, frame, report, "the isolated process")


def outcome(
    backend: Backend,
    spec: CheckpointSpec,
    frame: CheckpointFrame,
    report: dict[str, Any],
    where: str,
) -> Any:
    """What an isolated attempt's report says: its value, or its exception raised here.

    ``where`` names what ran it ("the isolated process", "the Ray task").
    """
    if not report.get("ok"):
        located = IsolatedCheckpointError(
            f"{report.get('exception_type')}: {report.get('message')}\n"
            f"(raised in {where} of checkpoint {spec.name!r})\n"
            f"{report.get('traceback', '')}"
        )
        original = _unpickle_exception(report.get("exception_pickle"))
        if original is not None:
            # The same exception type as inline, so `except ValueError:` works alike.
            raise original from located
        raise located
    frame.metadata.update(report.get("metadata") or {})
    for saved in report.get("saves") or []:
        frame.saves.append(_artifact_from_json(saved))
    output = report["output"]
    data = backend.blobs.get(output["uri"], output["sha256"])
    return deserialize(Serialized(output["serializer"], output["type_path"], data))


def _unpickle_exception(encoded: str | None) -> BaseException | None:
    if not encoded:
        return None
    import pickle

    try:
        error = pickle.loads(base64.b64decode(encoded))
    except Exception:  # a class this process cannot import: keep the wrapper
        return None
    return error if isinstance(error, Exception) else None


def _pickle_exception(exc: BaseException) -> str | None:
    import cloudpickle

    try:
        return base64.b64encode(cloudpickle.dumps(exc)).decode()
    except Exception:
        return None


def _replay_output(out: str, err: str) -> None:
    if out:
        sys.stdout.write(out)
    if err:
        sys.stderr.write(err)


def _read_report(path: Path) -> dict[str, Any] | None:
    try:
        return cast("dict[str, Any]", json.loads(path.read_text()))
    except (OSError, ValueError):
        return None


def _describe_exit(name: str, code: int, err: str, report: dict[str, Any] | None) -> str:
    if code < 0:
        try:
            how = f"was killed by signal {signal.Signals(-code).name}"
        except ValueError:
            how = f"was killed by signal {-code}"
    elif code != 0:
        how = f"exited with code {code}"
    else:
        how = "exited without reporting a result"
    tail = "\n".join(err.strip().splitlines()[-5:])
    hint = " (out of memory?)" if code in (-signal.SIGKILL, 137) else ""
    return f"The isolated process of checkpoint {name!r} {how}{hint}." + (
        f"\n{tail}" if tail else ""
    )


def _artifact_to_json(record: ArtifactRecord) -> dict[str, Any]:
    data = asdict(record)
    if record.inline_data is not None:
        data["inline_data"] = base64.b64encode(record.inline_data).decode()
    return data


def _artifact_from_json(data: dict[str, Any]) -> ArtifactRecord:
    values = dict(data)
    if values.get("inline_data") is not None:
        values["inline_data"] = base64.b64decode(values["inline_data"])
    return ArtifactRecord(**values)


# -- the child ------------------------------------------------------------------------


class _ChildContext:
    """What ``kitaru.log``/``kitaru.save`` need from an execution, in the child."""

    def __init__(self, exec_id: str) -> None:
        from kitaru._backend import get_backend

        self.exec_id = exec_id
        self.backend = get_backend()


#: The module of a flow script that a resuming process loaded (see ``loader``), as a
#: pickle that refers to it spells it. A fresh run's script is ``__main__``, which
#: cloudpickle sends by value; ``__mp_main__`` it sends by reference.
_SCRIPT_MODULE = b"__mp_main__"


def _load_flow_script(ctx: _ChildContext) -> None:
    """Load the execution's flow script as its runner did, so the payload's references to
    ``__mp_main__`` (its helpers, classes, the checkpoint itself) resolve here.

    Only for payloads that name ``__mp_main__`` (a substring test, so a call of a
    module's flow pays nothing; a false hit costs one read of the execution).
    """
    record = ctx.backend.store.get_execution(ctx.exec_id)
    ref = record.flow_ref if record is not None else {}
    if ref.get("module") == "__main__":
        from kitaru._runtime.loader import load_script_main

        load_script_main(ref, exec_id=ctx.exec_id)


def _dumps_call(
    func: Any, args: tuple[Any, ...], kwargs: dict[str, Any], *, script_flow: bool
) -> bytes:
    """The call, pickled; classes of a flow script run as ``python script.py`` by reference.

    cloudpickle sends ``__main__``'s classes by value: the child would rebuild a copy
    that is not the script's class, which values then cannot be stored without pickle
    (nor pass ``isinstance`` against it). Sent by name, the child loads the script, as a
    resumed run's child does, and uses the class itself. Only for a flow of the script
    (``script_flow``): the child loads the flow's script, no other.
    """
    import io

    import cloudpickle

    main = sys.modules.get("__main__")
    if not script_flow or not getattr(main, "__file__", None):  # python -c, a REPL
        return cast("bytes", cloudpickle.dumps((func, args, kwargs)))

    class _Pickler(cloudpickle.Pickler):  # type: ignore[misc]
        def reducer_override(self, obj: Any) -> Any:
            if isinstance(obj, type) and obj.__module__ == "__main__":
                found: Any = main
                for part in obj.__qualname__.split("."):
                    found = getattr(found, part, None)
                if found is obj:
                    return _script_class, (obj.__qualname__,)
            return super().reducer_override(obj)

    buffer = io.BytesIO()
    _Pickler(buffer).dump((func, args, kwargs))
    return buffer.getvalue()


def _script_class(qualname: str) -> type:
    """The class ``qualname`` of the flow script this child loaded (see ``_dumps_call``)."""
    found: Any = sys.modules["__mp_main__"]
    for part in qualname.split("."):
        found = getattr(found, part)
    return cast("type", found)


#: What a payload that needs the flow's script holds (see ``child_main``).
_NEEDS_SCRIPT = (_SCRIPT_MODULE, _script_class.__name__.encode())


def child_main(argv: list[str]) -> int:
    """Run the pickled call named by ``argv`` and write the report; see the module docstring."""
    uri, sha, report_path, exec_id, call_id, name = argv
    import pickle

    from kitaru._runtime.context import CheckpointFrame, current_checkpoint, current_execution

    ctx = _ChildContext(exec_id)
    report: dict[str, Any]
    frame = CheckpointFrame(exec_id, call_id, name, 1)
    try:
        payload = ctx.backend.blobs.get(uri, sha)
        if any(marker in payload for marker in _NEEDS_SCRIPT):
            _load_flow_script(ctx)
        func, args, kwargs = pickle.loads(payload)
        current_execution.set(cast("ExecutionContext", ctx))
        current_checkpoint.set(frame)
        value = func(*args, **kwargs)
        if inspect.isawaitable(value):  # an async checkpoint
            value = asyncio.run(value)  # type: ignore[arg-type]
        serialized = serialize(value)
        out_uri, out_sha = ctx.backend.blobs.put(serialized.data)
        report = {
            "ok": True,
            "output": {
                "uri": out_uri,
                "sha256": out_sha,
                "serializer": serialized.serializer,
                "type_path": serialized.type_path,
            },
            "metadata": frame.metadata,
            "saves": [_artifact_to_json(a) for a in frame.saves],
        }
    except Exception as exc:
        report = {
            "ok": False,
            "exception_type": type(exc).__qualname__,
            "message": str(exc),
            "traceback": traceback.format_exc(),
            "exception_pickle": _pickle_exception(exc),
        }
    report["event_next_index"] = events.child_finished(frame)
    sys.stdout.flush()
    sys.stderr.flush()
    Path(report_path).write_text(json.dumps(report))
    return 0

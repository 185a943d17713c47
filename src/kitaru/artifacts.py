"""``kitaru.save()`` and ``kitaru.load()``: named artifacts beside checkpoint outputs."""

from __future__ import annotations

from typing import Any

from kitaru._runtime.context import current_checkpoint, current_execution
from kitaru.errors import KitaruContextError, KitaruRuntimeError, KitaruUsageError

ARTIFACT_TYPES = ("prompt", "response", "context", "input", "output", "blob")
_TAG_COLLECTIONS = (list, tuple, set, frozenset)


def save(name: str, value: Any, *, type: str = "output", tags: list[str] | None = None) -> None:
    """Store ``value`` under ``name`` for this execution.

    Inside a checkpoint the artifact is written with the call's result; in the
    flow body it is recorded like a checkpoint call, so a resumed body does not
    save it twice. ``type`` is one of prompt, response, context, input, output, blob.
    """
    if not isinstance(name, str) or not name:
        raise KitaruUsageError(f"kitaru.save() needs a non-empty name, got {name!r}.")
    if type not in ARTIFACT_TYPES:
        raise KitaruUsageError(
            f"kitaru.save({name!r}, type={type!r}): type must be one of "
            f"{', '.join(ARTIFACT_TYPES)}."
        )
    # A collection of strings: a bare string (iterable, as its characters) is refused.
    tag_list = [] if tags is None else list(tags) if isinstance(tags, _TAG_COLLECTIONS) else None
    if tag_list is None or not all(isinstance(tag, str) for tag in tag_list):
        raise KitaruUsageError(f"kitaru.save({name!r}, tags=...) takes a list of strings.")
    ctx = current_execution.get()
    if ctx is None:
        raise KitaruContextError(
            f"kitaru.save({name!r}) was called outside a running flow; call it in a "
            "checkpoint or a flow body."
        )
    frame = current_checkpoint.get()
    if frame is None:
        ctx.save_in_body(name, value, type=type, tags=tag_list)
        return
    # Every save is kept, as in the flow body and in 0.21: loading a name saved twice is
    # then ambiguous (KitaruRuntimeError) rather than silently the last value.
    frame.saves.append(
        ctx.saved_artifact(name, value, call_id=frame.call_id, type=type, tags=tag_list)
    )


def load(exec_id: str, name: str) -> Any:
    """A checkpoint's output (by checkpoint name or call id) or a saved artifact (by name);
    ``"result"``, when nothing else has that name, is the flow's return value.

    ``exec_id`` not a UUID → ``KitaruUsageError``; no match, or several →
    ``KitaruRuntimeError`` (Kitaru 0.21's types).
    """
    import uuid  # here: importing it costs every script's start-up a few ms

    from kitaru._backend import get_backend
    from kitaru._runtime.execution import SAVE_CALL_TYPE

    try:
        exec_id = str(uuid.UUID(str(exec_id)))  # as stored: lower case, with dashes
    except ValueError:
        raise KitaruUsageError(
            f"kitaru.load({exec_id!r}, {name!r}): the execution id must be a UUID, as "
            "shown by `kitaru executions list`."
        ) from None
    backend = get_backend()
    store = backend.store
    store.require_execution(exec_id)
    saved = store.list_artifacts(exec_id=exec_id, name=name, kind="saved")
    with_output = [
        call
        for call in store.calls(exec_id)
        if call.type != SAVE_CALL_TYPE and call.artifact is not None and call.status.has_output
    ]
    # By checkpoint name first; a call id ("name:2", an explicit id=) picks one call.
    outputs = [call for call in with_output if call.name == name] or [
        call for call in with_output if call.call_id == name
    ]
    matches = [f"saved artifact {a.id} (type {a.type})" for a in saved] + [
        f"output of checkpoint call {call.call_id!r}" for call in outputs
    ]
    if not matches:
        # The flow's return value is listed as artifact "result" (kind flow_result):
        # loadable by that name when no checkpoint or saved artifact takes it.
        results = store.list_artifacts(exec_id=exec_id, name=name, kind="flow_result")
        if results:
            return backend.load_value(results[0], from_script=True)
        raise KitaruRuntimeError(
            f"Execution {exec_id} has no checkpoint output or saved artifact named {name!r}. "
            "See `kitaru artifacts list " + exec_id + "`."
        )
    if len(matches) > 1:
        raise KitaruRuntimeError(
            f"{name!r} is ambiguous in execution {exec_id}; it matches: "
            + "; ".join(matches)
            + ". Load a checkpoint output by its call id (e.g. 'name:2')."
        )
    if saved:
        return backend.load_value(saved[0], from_script=True)
    artifact = outputs[0].artifact
    assert artifact is not None
    return backend.load_value(artifact, from_script=True)

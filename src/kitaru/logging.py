"""``kitaru.log()``: attach structured metadata to a checkpoint call or an execution."""

from __future__ import annotations

import json
from typing import Any

from kitaru._runtime.context import current_checkpoint, current_execution
from kitaru.errors import KitaruContextError, KitaruUsageError


def log(**fields: Any) -> None:
    """Record metadata: on the running checkpoint call, else on the execution.

    Repeated calls merge: dict values merge key by key, other values are
    replaced by the latest. Values must be JSON-serializable. Checkpoint
    metadata is stored with the call's result (no extra write); execution
    metadata is written at once.
    """
    ctx = current_execution.get()
    if ctx is None:
        raise KitaruContextError(
            "kitaru.log() was called outside a running flow; call it in a flow body or a "
            "checkpoint."
        )
    for key, value in fields.items():
        try:
            json.dumps(value)
        except (TypeError, ValueError) as exc:
            raise KitaruUsageError(
                f"kitaru.log() field {key!r} is not JSON-serializable ({type(value).__name__}: "
                f"{exc}). Log plain data: str, numbers, bools, lists and dicts of them."
            ) from None
    frame = current_checkpoint.get()
    if frame is not None:
        from kitaru._store._rows import merge_metadata

        merged = merge_metadata(frame.metadata, fields)
        frame.metadata.clear()
        frame.metadata.update(merged)
        return
    ctx.log_execution_metadata(fields)

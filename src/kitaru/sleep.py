"""``kitaru.sleep()``: a durable pause of the flow body (the clock survives crashes)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from kitaru._runtime.context import current_checkpoint, current_execution
from kitaru._runtime.sleeps import seconds_of, sleep_in_body
from kitaru.errors import KitaruContextError

if TYPE_CHECKING:
    from datetime import timedelta


def sleep(duration: float | timedelta, *, name: str | None = None) -> None:
    """Pause the flow body for ``duration`` (seconds or a ``timedelta``), durably.

    The wake-up time is recorded the first time the body gets here: a resumed
    body (after a crash, a release) sleeps only what is left. Sleeps longer than
    ``KITARU_SLEEP_RELEASE_AFTER`` seconds (default 600, the wait release
    threshold) release the execution (status ``waiting``, reason ``sleeping``,
    no thread, lease or process held); ``kitaru worker`` resumes it on time.
    ``name`` pins the sleep's id (default ``sleep``, ``sleep:2``, ...).
    """
    ctx = current_execution.get()
    if ctx is None:
        raise KitaruContextError(
            "kitaru.sleep() was called outside a running flow; call it in the body of a "
            "@flow function (use time.sleep() elsewhere)."
        )
    frame = current_checkpoint.get()
    if frame is not None:
        raise KitaruContextError(
            f"kitaru.sleep() was called inside checkpoint {frame.name!r}; durable sleeps "
            "belong in the flow body, between checkpoints (time.sleep() works inside one)."
        )
    sleep_in_body(ctx, seconds_of(duration), name)

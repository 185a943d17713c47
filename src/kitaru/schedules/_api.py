"""``KitaruClient().schedules`` and ``flow.schedule(...)``: create and manage schedules."""

from __future__ import annotations

import builtins
import contextlib
import importlib
import re
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kitaru._store import ScheduleRecord
from kitaru._store._time import require_schedule
from kitaru.errors import KitaruStateError, KitaruUsageError
from kitaru.schedules import _cron
from kitaru.schedules._models import Schedule

if TYPE_CHECKING:
    from kitaru._backend import Backend
    from kitaru.flow import Flow

MISSED_POLICIES = ("skip", "run_once")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,254}$")


def resolve_flow(target: Any) -> Flow[Any, Any]:
    """A ``Flow``, or ``module:flow`` / ``path/to/file.py:flow`` naming one."""
    from kitaru.flow import Flow

    if isinstance(target, Flow):
        return target
    if not isinstance(target, str) or ":" not in target:
        raise KitaruUsageError(
            f"--flow must be MODULE:FLOW or FILE.py:FLOW (e.g. agents.digest:daily or "
            f"flows/digest.py:daily), got {target!r}."
        )
    where, _, attr = target.rpartition(":")
    if where.endswith(".py") or Path(where).is_file():
        path = Path(where).resolve()
        if not path.is_file():
            raise KitaruUsageError(f"--flow {target!r}: no file {where!r}.")
        from kitaru._runtime.loader import script_module

        namespace: Any = script_module(str(path))
    else:
        if "" not in sys.path and str(Path.cwd()) not in sys.path:
            sys.path.insert(0, str(Path.cwd()))
        try:
            namespace = importlib.import_module(where)
        except ImportError as exc:
            raise KitaruUsageError(
                f"--flow {target!r}: cannot import module {where!r} ({exc}). Run from the "
                "project directory, or name the file (path/to/file.py:flow)."
            ) from None
    found = getattr(namespace, attr, None)
    if not isinstance(found, Flow):
        raise KitaruUsageError(
            f"--flow {target!r}: {where} has no @flow named {attr!r}"
            + ("" if found is None else f" (it is a {type(found).__name__})")
            + "."
        )
    return found


def check_schedule(
    name: Any, cron: Any, timezone: Any, inputs: Any, stack: Any, missed: Any
) -> dict[str, Any]:
    """Everything of a new schedule but its flow checked; its inputs (``{}`` for None)."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise KitaruUsageError(
            f"Schedule name {name!r} must be 1-255 letters, digits, '_', '-' or '.', "
            "starting with a letter or digit."
        )
    _cron.validate(cron, timezone)
    if missed not in MISSED_POLICIES:
        raise KitaruUsageError(
            f"missed={missed!r} is not a missed-slot policy: use skip (slots that passed "
            "while no worker ran never run) or run_once (they run once, together)."
        )
    if stack is not None and (not isinstance(stack, str) or not stack):
        raise KitaruUsageError(f"stack= must be a stack name, got {stack!r}.")
    if inputs is None:
        inputs = {}
    if not isinstance(inputs, dict) or not all(isinstance(k, str) for k in inputs):
        raise KitaruUsageError(
            f"A schedule's inputs are the flow's keyword arguments as a JSON object, "
            f"got {inputs!r}."
        )
    return dict(inputs)


def _check_stack_exists(name: str, stack: str) -> None:
    """Refuse a stack unknown here, where the slots' workers resolve it (stacks are per
    user config), so a typo fails at create instead of at every slot."""
    from kitaru._stacks.registry import get_stack

    try:
        get_stack(stack)
    except KitaruUsageError as exc:
        raise KitaruUsageError(
            f"Schedule {name!r} cannot use stack {stack!r}: {exc} Nothing was stored."
        ) from None


def resolved_request(
    name: str,
    *,
    flow: Any,
    cron: str,
    timezone: str,
    inputs: dict[str, Any] | None,
    stack: str | None,
    missed: str,
) -> dict[str, Any]:
    """``create()``'s arguments checked, the flow resolved to its name and reference:
    what ``create_resolved`` and the server's create route take (no flow code there)."""
    from kitaru._runtime.loader import flow_reference

    checked = check_schedule(name, cron, timezone, inputs, stack, missed)
    target = resolve_flow(flow)
    target.inputs.validate((), dict(checked))  # bad inputs fail now, not at 7 am
    return {
        "flow_name": target.name,
        "flow_ref": flow_reference(target.func),
        "cron": cron,
        "timezone": timezone,
        "inputs": checked,
        "stack": stack,
        "missed": missed,
    }


class SchedulesAPI:
    """Cron schedules in the store; ``kitaru worker`` fires them."""

    def __init__(self, backend: Backend) -> None:
        self._backend = backend

    def _model(self, record: ScheduleRecord) -> Schedule:
        upcoming = None
        if not record.paused:
            # One stored before such expressions were refused may never fire: no next run.
            with contextlib.suppress(KitaruUsageError):
                upcoming = _cron.next_slot(
                    record.cron, record.timezone, max(record.cursor, time.time())
                )
        return Schedule.from_record(record, upcoming)

    def create(
        self,
        name: str,
        *,
        flow: Any,
        cron: str,
        timezone: str = "UTC",
        inputs: dict[str, Any] | None = None,
        stack: str | None = None,
        missed: str = "skip",
    ) -> Schedule:
        """Start ``flow`` at every slot of ``cron`` in ``timezone``, with ``inputs`` (kwargs)."""
        return self.create_resolved(
            name,
            **resolved_request(
                name,
                flow=flow,
                cron=cron,
                timezone=timezone,
                inputs=inputs,
                stack=stack,
                missed=missed,
            ),
        )

    def create_resolved(
        self,
        name: str,
        *,
        flow_name: str,
        flow_ref: dict[str, Any],
        cron: str,
        timezone: str,
        inputs: dict[str, Any],
        stack: str | None,
        missed: str,
    ) -> Schedule:
        """Store a schedule of a flow the caller already resolved (the server: no flow code)."""
        inputs = check_schedule(name, cron, timezone, inputs, stack, missed)
        if stack is not None:
            _check_stack_exists(name, stack)
        now = time.time()
        record = ScheduleRecord(
            name=name,
            flow_name=flow_name,
            flow_ref=dict(flow_ref),
            cron=cron,
            timezone=timezone,
            cursor=now,
            created_at=now,
            inputs=dict(inputs),
            stack=stack,
            missed=missed,
        )
        if not self._backend.store.create_schedule(record):
            raise KitaruStateError(
                f"A schedule named {name!r} exists already; delete it first "
                f"(`kitaru schedule delete {name}`) or pick another name."
            )
        return self._model(record)

    def get(self, name: str) -> Schedule:
        return self._model(require_schedule(self._backend.store, name))

    def list(self) -> builtins.list[Schedule]:
        return [self._model(r) for r in self._backend.store.list_schedules()]

    def pause(self, name: str) -> Schedule:
        """No slot fires until ``resume``."""
        require_schedule(self._backend.store, name)
        self._backend.store.set_schedule_paused(name, True)
        return self.get(name)

    def resume(self, name: str) -> Schedule:
        """Fire again from now on (slots that passed while paused never run)."""
        require_schedule(self._backend.store, name)
        self._backend.store.set_schedule_paused(name, False, cursor=time.time())
        return self.get(name)

    def delete(self, name: str) -> None:
        """Remove the schedule (the executions it started stay)."""
        if not self._backend.store.delete_schedule(name):
            require_schedule(self._backend.store, name)  # raises: it does not exist

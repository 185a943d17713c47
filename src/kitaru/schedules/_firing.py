"""Firing due schedule slots: what ``kitaru worker`` does on every poll.

Exactly once per slot, however many workers race: a worker claims a slot by
inserting its ``(schedule, slot)`` row, which only one insert can do, and only
the claimer starts the execution. The execution's id is derived from the
schedule and the slot too, so even a start repeated by mistake is idempotent.

A worker that dies between claiming a slot and starting its execution leaves
the claim without ``started_at``; after ``STRANDED_AFTER`` seconds any worker
starts it (same derived id: a start that did happen is found, not repeated).

Missed slots (older than the grace period, ``KITARU_SCHEDULE_GRACE`` seconds,
default 60: no worker ran then) follow the schedule's policy: ``skip`` drops
them; ``run_once`` runs one execution for all of them, claimed under the first
missed slot (every worker that saw the same cursor picks the same one).
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from typing import TYPE_CHECKING, Any

from kitaru._runtime.leases import RUNNER_ID
from kitaru._store import ScheduleFireRecord, ScheduleRecord
from kitaru.errors import KitaruError, KitaruUsageError
from kitaru.schedules import _cron

if TYPE_CHECKING:
    from kitaru._backend import Backend

logger = logging.getLogger("kitaru.worker")

GRACE_ENV = "KITARU_SCHEDULE_GRACE"
DEFAULT_GRACE = 60.0
#: At most this many slots are looked at per schedule and poll (after an outage).
_MAX_SLOTS = 1000
_NAMESPACE = uuid.UUID("0b7f8a2e-5a4c-4f0e-8d8b-3f9c1e6a7d21")
#: A claim this old without its execution was left by a worker that died.
STRANDED_AFTER = 30.0


def grace_seconds() -> float:
    raw = os.environ.get(GRACE_ENV, "").strip()
    if not raw:
        return DEFAULT_GRACE
    try:
        value = float(raw)
    except ValueError:
        raise KitaruUsageError(f"{GRACE_ENV}={raw!r} is not a number of seconds.") from None
    return max(0.0, value)


def slot_exec_id(schedule: str, slot: float) -> str:
    return str(uuid.uuid5(_NAMESPACE, f"{schedule}@{slot!r}"))


def fire_due(backend: Backend, *, warned: set[str], now: float | None = None) -> float | None:
    """Start the executions of every due slot; returns when the next slot is due."""
    now = time.time() if now is None else now
    upcoming: float | None = None
    schedules = backend.store.list_schedules()
    _start_stranded(backend, {s.name: s for s in schedules}, now)
    for schedule in schedules:
        if schedule.paused:
            continue
        try:
            _fire_schedule(backend, schedule, now)
            following = _cron.next_slot(schedule.cron, schedule.timezone, max(schedule.cursor, now))
        except KitaruError as exc:
            if schedule.name not in warned:  # once, not on every poll
                warned.add(schedule.name)
                logger.warning("Not firing schedule %s: %s", schedule.name, exc)
            continue
        warned.discard(schedule.name)
        upcoming = following if upcoming is None else min(upcoming, following)
    return upcoming


def _fire_schedule(backend: Backend, schedule: ScheduleRecord, now: float) -> None:
    slots = _cron.slots_after(
        schedule.cron, schedule.timezone, schedule.cursor, now, limit=_MAX_SLOTS
    )
    if not slots:
        return
    cutoff = now - grace_seconds()
    missed = [slot for slot in slots if slot < cutoff]
    to_fire = [slot for slot in slots if slot >= cutoff]
    if missed and schedule.missed == "run_once":
        to_fire.insert(0, missed[0])
    if to_fire:
        from kitaru._runtime.loader import load_flow

        # Loaded before any claim: a worker without the code leaves the slot to others.
        flow = load_flow(schedule.flow_ref, exec_id=f"(schedule {schedule.name})")
        for slot in to_fire:
            exec_id = slot_exec_id(schedule.name, slot)
            fire = ScheduleFireRecord(
                schedule_name=schedule.name,
                slot=slot,
                exec_id=exec_id,
                claimed_by=RUNNER_ID,
                claimed_at=time.time(),
            )
            if not backend.store.claim_slot(fire):
                continue  # another worker has it
            _start(backend, flow, schedule, slot, exec_id)
    backend.store.advance_schedule(schedule.name, slots[-1])


def _start(
    backend: Backend, flow: Any, schedule: ScheduleRecord, slot: float, exec_id: str
) -> None:
    """Start the execution of a claimed slot, then mark the claim done."""
    try:
        flow.submit_execution(
            (),
            dict(schedule.inputs),
            {"stack": schedule.stack},
            None,
            uuid.UUID(exec_id),
            schedule=(schedule.name, slot),
        )
    except KitaruError as exc:
        logger.warning("Schedule %s could not start its slot %s: %s", schedule.name, slot, exc)
        return
    backend.store.mark_slot_started(schedule.name, slot)
    logger.info("Schedule %s started execution %s", schedule.name, exec_id)


def _start_stranded(backend: Backend, schedules: dict[str, ScheduleRecord], now: float) -> None:
    """Start the slots whose claiming worker died before their execution existed."""
    from kitaru._runtime.loader import load_flow

    for fire in backend.store.stranded_slots(now - STRANDED_AFTER):
        schedule = schedules.get(fire.schedule_name)
        if schedule is None:
            continue  # the schedule was deleted since
        try:
            flow = load_flow(schedule.flow_ref, exec_id=f"(schedule {schedule.name})")
        except KitaruError:
            continue  # this worker lacks the code; another one may have it
        logger.warning(
            "Schedule %s: slot %s was claimed by %s, which never started it; starting it now.",
            schedule.name,
            fire.slot,
            fire.claimed_by,
        )
        _start(backend, flow, schedule, fire.slot, fire.exec_id)

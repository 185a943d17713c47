"""Cron schedules: ``flow.schedule(...)``, ``KitaruClient().schedules``, ``kitaru schedule``.

``kitaru worker`` fires due slots (see ``_firing``): each slot starts exactly one
execution however many workers race, because the slot is claimed by a row whose
primary key is (schedule, slot).
"""

from __future__ import annotations

from kitaru.schedules._api import MISSED_POLICIES, SchedulesAPI, resolve_flow
from kitaru.schedules._models import Schedule

__all__ = ["MISSED_POLICIES", "Schedule", "SchedulesAPI", "resolve_flow"]

"""Cron expressions and time zones: validated, and stepped into slot times.

croniter (the ``schedules`` extra) parses and steps the expression in the
schedule's time zone (``zoneinfo``), so a daily 07:00 in Europe/Berlin stays at
07:00 local time across daylight-saving changes.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from kitaru.errors import KitaruUsageError


def _croniter() -> Any:
    try:
        from croniter import croniter
    except ImportError:
        raise KitaruUsageError(
            "Cron schedules need croniter, which is not installed: install Kitaru with its "
            "schedules extra from its repository or wheel (pip install "
            "'/path/to/kitaru[schedules]'), or pip install croniter."
        ) from None
    return croniter


def zone(name: str) -> ZoneInfo:
    """The time zone ``name`` (an IANA name such as Europe/Berlin, or UTC)."""
    if not isinstance(name, str) or not name:
        raise KitaruUsageError(f"A schedule's timezone must be an IANA name, got {name!r}.")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise KitaruUsageError(
            f"Unknown time zone {name!r}: use an IANA name such as UTC, Europe/Berlin or "
            "America/New_York."
        ) from None


def validate(cron: str, timezone: str) -> None:
    """A clear ``KitaruUsageError`` for a bad cron expression or time zone, or for one
    that never fires again (30 February; a year in the past)."""
    zone(timezone)
    croniter = _croniter()
    if (
        not isinstance(cron, str)
        or len(cron.split()) not in (5, 6)
        or not croniter.is_valid(cron, second_at_beginning=_second_first(cron))
    ):
        raise KitaruUsageError(
            f"{cron!r} is not a valid cron expression: use five fields (minute hour "
            "day-of-month month day-of-week, e.g. '0 7 * * *'), or six with seconds first "
            "('*/10 * * * * *')."
        )
    next_slot(cron, timezone, time.time())


def _never(cron: str, timezone: str, exc: Exception) -> KitaruUsageError:
    return KitaruUsageError(
        f"Cron expression {cron!r} (time zone {timezone}) has no time to fire: it matches "
        f"no date from now on (e.g. '0 0 30 2 *', 30 February) ({exc}). Give an "
        "expression that matches real dates."
    )


def _second_first(cron: str) -> bool:
    return len(cron.split()) == 6


def slots_after(cron: str, timezone: str, after: float, until: float, *, limit: int) -> list[float]:
    """Slot times (epoch seconds) in ``(after, until]``, at most ``limit`` (the newest kept)."""
    croniter = _croniter()
    start = datetime.fromtimestamp(after, tz=UTC).astimezone(zone(timezone))
    it = croniter(cron, start, second_at_beginning=_second_first(cron))
    found: list[float] = []
    while True:
        try:
            slot = float(it.get_next(float))
        except (ValueError, OverflowError) as exc:  # croniter's CroniterBadDateError
            raise _never(cron, timezone, exc) from None
        if slot > until:
            break
        found.append(slot)
        if len(found) > limit:
            found.pop(0)  # a long outage: only the newest slots matter to either policy
    return found


def next_slot(cron: str, timezone: str, after: float) -> float:
    """The first slot after ``after``; ``KitaruUsageError`` if there is none."""
    croniter = _croniter()
    start = datetime.fromtimestamp(after, tz=UTC).astimezone(zone(timezone))
    try:
        it = croniter(cron, start, second_at_beginning=_second_first(cron))
        return float(it.get_next(float))
    except (ValueError, OverflowError) as exc:  # croniter's CroniterBadDateError
        raise _never(cron, timezone, exc) from None

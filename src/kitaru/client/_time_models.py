"""Client models of durable time: the sleep (or child wait) an execution is paused at."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from kitaru._store import SuspensionRecord


@dataclass(frozen=True)
class PendingSleep:
    """A ``kitaru.sleep()`` (or a wait for a child flow) an execution is paused at."""

    #: The sleep's name, or sleep / sleep:2 / ...; ``join:<child id>`` for a child wait.
    sleep_id: str
    #: ``sleep`` or ``child``.
    kind: str
    #: When the sleep ends (None for a child wait).
    wake_at: datetime | None
    #: For a child wait: the child execution.
    child_exec_id: str | None
    entered_at: datetime | None
    name: str | None = None

    @classmethod
    def from_record(cls, record: SuspensionRecord) -> PendingSleep:
        return cls(
            sleep_id=record.suspension_id,
            kind=record.kind,
            wake_at=_dt(record.wake_at),
            child_exec_id=record.child_exec_id,
            entered_at=_dt(record.created_at),
            name=record.name,
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PendingSleep:
        return cls(
            sleep_id=data["sleep_id"],
            kind=data.get("kind", "sleep"),
            wake_at=_parse(data.get("wake_at")),
            child_exec_id=data.get("child_exec_id"),
            entered_at=_parse(data.get("entered_at")),
            name=data.get("name"),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "sleep_id": self.sleep_id,
            "kind": self.kind,
            "name": self.name,
            "wake_at": None if self.wake_at is None else self.wake_at.isoformat(),
            "child_exec_id": self.child_exec_id,
            "entered_at": None if self.entered_at is None else self.entered_at.isoformat(),
        }


def _dt(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, tz=UTC)


def _parse(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)

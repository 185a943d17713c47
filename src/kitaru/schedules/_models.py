"""The client's view of a schedule."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from kitaru._store import ScheduleRecord


@dataclass(frozen=True)
class Schedule:
    """A cron schedule that starts executions of a flow (fired by ``kitaru worker``)."""

    name: str
    flow_name: str
    #: Where the flow's code lives (``module:qualname``), as the worker imports it.
    flow_id: str | None
    cron: str
    timezone: str
    inputs: dict[str, Any]
    stack: str | None
    #: ``skip`` (default): slots that passed while no worker ran never run;
    #: ``run_once``: they run once, together.
    missed: str
    paused: bool
    created_at: datetime
    #: The next slot a worker will fire (None while paused).
    next_run_at: datetime | None
    flow_ref: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_record(cls, record: ScheduleRecord, next_run_at: float | None) -> Schedule:
        module, qualname = record.flow_ref.get("module"), record.flow_ref.get("qualname")
        return cls(
            name=record.name,
            flow_name=record.flow_name,
            flow_id=f"{module}:{qualname}" if module and qualname else None,
            cron=record.cron,
            timezone=record.timezone,
            inputs=dict(record.inputs),
            stack=record.stack,
            missed=record.missed,
            paused=record.paused,
            created_at=datetime.fromtimestamp(record.created_at, tz=UTC),
            next_run_at=None
            if next_run_at is None
            else datetime.fromtimestamp(next_run_at, tz=UTC),
            flow_ref=dict(record.flow_ref),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "flow_name": self.flow_name,
            "flow_id": self.flow_id,
            "flow_file": self.flow_ref.get("file"),
            "cron": self.cron,
            "timezone": self.timezone,
            "inputs": self.inputs,
            "stack": self.stack,
            "missed": self.missed,
            "paused": self.paused,
            "created_at": self.created_at.isoformat(),
            "next_run_at": None if self.next_run_at is None else self.next_run_at.isoformat(),
        }

"""``KitaruClient().schedules`` when connected to a Kitaru server (``/api/v1/schedules``).

The same methods and models as the store-side ``SchedulesAPI``. ``create`` resolves
the flow here, where its code is, and sends only its name and reference: the
server never imports flow code.
"""

from __future__ import annotations

import builtins
from datetime import datetime
from typing import TYPE_CHECKING, Any

from kitaru.schedules import Schedule

if TYPE_CHECKING:
    from kitaru.client._remote import Session


def _time(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def _schedule(data: dict[str, Any]) -> Schedule:
    created = _time(data["created_at"])
    assert created is not None
    return Schedule(
        name=data["name"],
        flow_name=data["flow_name"],
        flow_id=data.get("flow_id"),
        cron=data["cron"],
        timezone=data["timezone"],
        inputs=dict(data.get("inputs") or {}),
        stack=data.get("stack"),
        missed=data["missed"],
        paused=bool(data["paused"]),
        created_at=created,
        next_run_at=_time(data.get("next_run_at")),
        flow_ref=dict(data.get("flow_ref") or {}),
    )


class RemoteSchedulesAPI:
    """Cron schedules kept by a Kitaru server; workers on its store fire them."""

    def __init__(self, session: Session) -> None:
        self._session = session

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
        from kitaru.schedules._api import resolved_request

        body = {
            "name": name,
            **resolved_request(
                name,
                flow=flow,
                cron=cron,
                timezone=timezone,
                inputs=inputs,
                stack=stack,
                missed=missed,
            ),
        }
        return _schedule(self._session.post("/schedules", body))

    def get(self, name: str) -> Schedule:
        return _schedule(self._session.get(f"/schedules/{_quoted(name)}"))

    def list(self) -> builtins.list[Schedule]:
        return [_schedule(item) for item in self._session.get("/schedules")]

    def pause(self, name: str) -> Schedule:
        """No slot fires until ``resume``."""
        return _schedule(self._session.post(f"/schedules/{_quoted(name)}/pause"))

    def resume(self, name: str) -> Schedule:
        """Fire again from now on (slots that passed while paused never run)."""
        return _schedule(self._session.post(f"/schedules/{_quoted(name)}/resume"))

    def delete(self, name: str) -> None:
        """Remove the schedule (the executions it started stay)."""
        self._session.request("DELETE", f"/schedules/{_quoted(name)}")


def _quoted(name: str) -> str:
    from urllib.parse import quote

    return quote(name, safe="")

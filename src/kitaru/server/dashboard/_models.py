"""Response bodies of the dashboard's API routes (part of ``/api/v1/openapi.json``)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class KeyInfo(BaseModel):
    service_account: str
    name: str
    access: str = Field(description="read | write | runner")
    can_write: bool


class PendingWaitItem(BaseModel):
    model_config = ConfigDict(extra="allow")

    exec_id: str
    wait_id: str
    name: str
    question: str | None = None
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    pickled_schema: bool = False
    metadata: dict[str, Any] = {}
    timeout: float | None = None
    entered_waiting_at: str | None = None
    flow_name: str
    execution_status: str


class PendingWaitList(BaseModel):
    items: list[PendingWaitItem]
    count: int


class RecentExecution(BaseModel):
    exec_id: str
    status: str
    created_at: str | None = None
    duration: float | None = None


class FlowStats(BaseModel):
    flow_name: str
    total: int
    by_status: dict[str, int]
    success_rate: float | None = Field(
        default=None, description="Completed / ended executions; null when none ended."
    )
    last_created_at: str | None = None
    recent: list[RecentExecution] = []


class FlowList(BaseModel):
    items: list[FlowStats]
    count: int

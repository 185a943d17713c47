"""``/api/v1/schedules``: cron schedules through the server (``kitaru schedule``).

The server never imports flow code, so a client resolves the flow itself (it has
the code) and sends its name and reference; the server checks the rest (name,
cron, time zone, policy, inputs' shape) exactly as the store-side API does.
Reads need a read key; pause, resume and delete a read-write key; create needs a
runner key, because a schedule names code that workers will import and run,
which is what recording an execution (a runner's right) also does.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path
from pydantic import BaseModel, Field

from kitaru._backend import get_backend
from kitaru.schedules import Schedule, SchedulesAPI
from kitaru.server._accounts import ApiKey
from kitaru.server._auth import Reader, Writer
from kitaru.server._errors import ApiError
from kitaru.server._schemas import ErrorResponse

router = APIRouter(
    prefix="/schedules",
    tags=["schedules"],
    responses={code: {"model": ErrorResponse} for code in (400, 401, 403, 404, 409, 422, 503)},
)


def require_schedule_creator(key: Reader) -> ApiKey:
    """A runner key: the refusal says why creating a schedule needs one."""
    if key.access != "runner":
        raise ApiError(
            403,
            "KitaruPermissionError",
            f"API key {key.name!r} of service account {key.account!r} may not create "
            "schedules: a schedule names code (its flow) that workers import and run at "
            "every slot, which needs a key created with --runner (kitaru auth api-keys "
            "create ACCOUNT NAME --runner), as recording executions and replaying with "
            "'code' overrides do. Listing schedules needs only a read key; pausing, "
            "resuming and deleting them a read-write key.",
        )
    return key


ScheduleCreator = Annotated[ApiKey, Depends(require_schedule_creator)]

ScheduleName = Path(min_length=1, max_length=255, description="The schedule's name")


class ScheduleOut(BaseModel):
    name: str
    flow_name: str
    flow_id: str | None
    flow_ref: dict[str, Any]
    cron: str
    timezone: str
    inputs: dict[str, Any]
    stack: str | None
    missed: str
    paused: bool
    created_at: datetime
    next_run_at: datetime | None


class ScheduleIn(BaseModel):
    """A schedule of a flow the client resolved (``flow_ref``: where workers import it)."""

    name: str = Field(min_length=1, max_length=255)
    flow_name: str = Field(min_length=1, max_length=255)
    flow_ref: dict[str, Any] = Field(description="module, qualname (and file) of the flow")
    cron: str = Field(min_length=1, max_length=255)
    timezone: str = Field(default="UTC", min_length=1, max_length=255)
    inputs: dict[str, Any] = Field(default_factory=dict)
    stack: str | None = Field(default=None, min_length=1, max_length=255)
    missed: str = Field(default="skip", pattern="^(skip|run_once)$")


class ScheduleDeleted(BaseModel):
    deleted: str


def _out(schedule: Schedule) -> ScheduleOut:
    return ScheduleOut.model_validate(schedule, from_attributes=True)


def _api() -> SchedulesAPI:
    return SchedulesAPI(get_backend())


def _known(name: str) -> str:
    """``name``, if a schedule has it; else 404 (an unknown id, as everywhere in the API),
    with the error type and words of the store-side API (a remote client raises the
    same ``KitaruStateError`` as a local one)."""
    from kitaru._store._time import require_schedule
    from kitaru.errors import KitaruStateError

    try:
        require_schedule(get_backend().store, name)
    except KitaruStateError as exc:
        raise ApiError(404, "KitaruStateError", str(exc)) from None
    return name


@router.get("", response_model=list[ScheduleOut], summary="All schedules")
def list_schedules(_key: Reader) -> list[ScheduleOut]:
    return [_out(s) for s in _api().list()]


@router.get("/{name}", response_model=ScheduleOut, summary="One schedule")
def get_schedule(_key: Reader, name: str = ScheduleName) -> ScheduleOut:
    return _out(_api().get(_known(name)))


@router.post("", response_model=ScheduleOut, status_code=201, summary="Create a schedule")
def create_schedule(body: ScheduleIn, _key: ScheduleCreator) -> ScheduleOut:
    _check_ref(body.flow_ref)
    return _out(
        _api().create_resolved(
            body.name,
            flow_name=body.flow_name,
            flow_ref=body.flow_ref,
            cron=body.cron,
            timezone=body.timezone,
            inputs=body.inputs,
            stack=body.stack,
            missed=body.missed,
        )
    )


def _check_ref(flow_ref: dict[str, Any]) -> None:
    from kitaru.errors import KitaruUsageError

    for key in ("module", "qualname"):
        if not isinstance(flow_ref.get(key), str) or not flow_ref[key]:
            raise KitaruUsageError(
                f"flow_ref needs a non-empty string {key!r} (where workers import the flow), "
                f"got {flow_ref!r}."
            )


@router.post("/{name}/pause", response_model=ScheduleOut, summary="Stop firing slots")
def pause_schedule(_key: Writer, name: str = ScheduleName) -> ScheduleOut:
    return _out(_api().pause(_known(name)))


@router.post("/{name}/resume", response_model=ScheduleOut, summary="Fire again from now on")
def resume_schedule(_key: Writer, name: str = ScheduleName) -> ScheduleOut:
    return _out(_api().resume(_known(name)))


@router.delete("/{name}", response_model=ScheduleDeleted, summary="Delete a schedule")
def delete_schedule(_key: Writer, name: str = ScheduleName) -> ScheduleDeleted:
    _api().delete(_known(name))
    return ScheduleDeleted(deleted=name)

"""/v1/hardware: upload a measured latency table or start measuring one; list and read them."""

from __future__ import annotations

from fastapi import APIRouter, Path, status
from fastapi.responses import JSONResponse

from searchsvc.bounds import MAX_NAME_CHARS
from searchsvc.deps import GuardedRoute, ReadSessionDep, SessionDep, SettingsDep, WriterDep
from searchsvc.errors import BadInput
from searchsvc.hardware import service
from searchsvc.hardware.schemas import HardwareAccepted, HardwareCreate, HardwareList, HardwareOut
from searchsvc.jobs.service import job_out
from searchsvc.openapi import errors
from searchsvc.responses import json_response

router = APIRouter(prefix="/v1/hardware", tags=["hardware"], route_class=GuardedRoute)


@router.post(
    "",
    response_model=HardwareAccepted,
    status_code=status.HTTP_201_CREATED,
    responses={
        202: {"model": HardwareAccepted, "description": "a measuring job was started"},
        **errors(409, t409="the name is taken"),
    },
)
def create_hardware(
    body: HardwareCreate, session: SessionDep, settings: SettingsDep, _: WriterDep
) -> JSONResponse:
    """Store an uploaded table (201), or start measuring one on a `latency` worker (202)."""
    if (body.table is None) == (body.measure is None):
        raise BadInput("give exactly one of table (an upload) or measure (a measuring job)")
    headers: dict[str, str] = {}
    if body.table is not None:
        row = service.upload(session, name=body.name, table=body.table)
        session.flush()
        out = HardwareAccepted(hardware=service.hardware_out(row))
        headers["Location"] = f"/v1/hardware/{row.name}"
        return json_response(out, status.HTTP_201_CREATED, headers)
    assert body.measure is not None
    row, job = service.start_measure(session, settings=settings, name=body.name, body=body.measure)
    session.flush()
    out = HardwareAccepted(hardware=service.hardware_out(row), job=job_out(session, job))
    headers["Location"] = f"/v1/hardware/{row.name}"
    return json_response(out, status.HTTP_202_ACCEPTED, headers)


@router.get("", response_model=HardwareList)
def list_hardware(session: ReadSessionDep) -> HardwareList:
    """Every profile: stored measured tables (newest first), then the shipped estimates."""
    return HardwareList(items=service.list_hardware(session))


@router.get("/{name}", response_model=HardwareOut)
def get_hardware(
    session: ReadSessionDep, name: str = Path(..., min_length=1, max_length=MAX_NAME_CHARS)
) -> HardwareOut:
    """One profile with its document (`table`): the roofline JSON, or the measured table."""
    return service.get_hardware(session, name=name)

"""/v1/jobs/{id}: follow and cancel background work."""

from __future__ import annotations

from fastapi import APIRouter, status
from fastapi.responses import JSONResponse

from searchsvc.bounds import IdPath
from searchsvc.deps import GuardedRoute, ReadSessionDep, SessionDep, SettingsDep, WriterDep
from searchsvc.jobs import service
from searchsvc.jobs.schemas import JobOut
from searchsvc.openapi import errors
from searchsvc.responses import json_response

router = APIRouter(prefix="/v1/jobs", tags=["jobs"], route_class=GuardedRoute)


@router.get("/{job_id}", response_model=JobOut)
def get_job(job_id: IdPath, session: ReadSessionDep) -> JobOut:
    """State (queued, running, succeeded, failed, cancelled), progress, message, result ids."""
    return service.job_out(session, service.get_job(session, job_id=job_id))


@router.delete(
    "/{job_id}", response_model=JobOut, responses=errors(409, t409="the job already finished")
)
def cancel_job(
    job_id: IdPath, session: SessionDep, settings: SettingsDep, _: WriterDep
) -> JSONResponse:
    """Cancel: a queued job at once, a running one at its next stop check."""
    job = service.cancel_job(session, settings=settings, job_id=job_id)
    return json_response(service.job_out(session, job), status.HTTP_200_OK)

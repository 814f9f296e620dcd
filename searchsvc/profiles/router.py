"""/v1/models/{id}/profiles and /v1/profiles/{id}."""

from __future__ import annotations

from fastapi import APIRouter, status
from fastapi.responses import JSONResponse

from searchsvc.bounds import IdPath
from searchsvc.catalog.service import get_model
from searchsvc.deps import GuardedRoute, ReadSessionDep, SessionDep, SettingsDep, WriterDep
from searchsvc.jobs.service import job_out
from searchsvc.profiles import service
from searchsvc.profiles.schemas import ProfileAccepted, ProfileCreate, ProfileOut, video_options
from searchsvc.responses import json_response

router = APIRouter(tags=["profiles"], route_class=GuardedRoute)


@router.post(
    "/v1/models/{model_id}/profiles",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=ProfileAccepted,
    responses={200: {"model": ProfileAccepted, "description": "the profile exists (no job)"}},
)
def request_profile(
    model_id: IdPath,
    body: ProfileCreate,
    session: SessionDep,
    settings: SettingsDep,
    _: WriterDep,
) -> JSONResponse:
    """Profile a model (202 with the job); 200 with no job when that profile already exists.
    ``"video": true`` (SAM2) profiles the memory path on clips too (docs/video.md)."""
    model = get_model(session, model_id=model_id)
    request = service.profile_request(
        settings,
        model,
        body.metric,
        body.candidates,
        body.images,
        video_options(body.video),
        attention=body.attention,
        attention_options=body.attention_options,
    )
    profile, job = service.request_profile(
        session, settings=settings, model=model, request=request, direct=True
    )
    session.flush()
    out = ProfileAccepted(
        profile=service.profile_out(profile), job=job_out(session, job) if job else None
    )
    code = status.HTTP_200_OK if job is None else status.HTTP_202_ACCEPTED
    return json_response(out, code, {"Location": f"/v1/profiles/{profile.id}"})


@router.get("/v1/profiles/{profile_id}", response_model=ProfileOut)
def get_profile(profile_id: IdPath, session: ReadSessionDep) -> ProfileOut:
    """A profile: status, the profiler's counters and, once ready, per-layer scores."""
    return service.profile_out(service.get_profile(session, profile_id=profile_id))

"""/v1/models/{id}/pareto: the loss-vs-resource front of a model's profile."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Header, Query, status
from fastapi.responses import JSONResponse

from searchsvc.auth.service import authorize_write
from searchsvc.catalog.service import get_model
from searchsvc.deps import ReadSessionDep, SessionDep, SettingsDep
from searchsvc.jobs.service import job_out
from searchsvc.pareto import service
from searchsvc.pareto.schemas import ParetoAccepted, ParetoOut
from searchsvc.profiles.service import find_profile, profile_request
from searchsvc.responses import json_response

router = APIRouter(tags=["pareto"])


def _point(point: dict[str, Any]) -> dict[str, Any]:
    """A front point without its per-layer choices (the stored artifact keeps them)."""
    return {k: v for k, v in point.items() if k != "choices"}


@router.get(
    "/v1/models/{model_id}/pareto",
    response_model=ParetoOut,
    responses={202: {"model": ParetoAccepted, "description": "profiling first (needs a token)"}},
)
def get_pareto(
    model_id: int,
    read: ReadSessionDep,
    session: SessionDep,
    settings: SettingsDep,
    resource: str = Query("memory_bytes", description="memory_bytes, latency_ms or bops"),
    hardware: str | None = Query(None, description="hardware profile (latency_ms needs one)"),
    method: str | None = Query(None, description="profile metric"),
    images: int | None = Query(None, ge=1, le=1024),
    candidates: str | None = Query(None, description="comma-separated candidate ids"),
    authorization: str | None = Header(None, include_in_schema=False),
) -> JSONResponse:
    """200 with the front; 202 with a ``pareto.build`` job when the model must be profiled."""
    service.check_resource(resource, hardware)
    model = get_model(read, model_id=model_id)
    wanted = [c.strip() for c in candidates.split(",") if c.strip()] if candidates else None
    request = profile_request(settings, model, method, wanted, images)
    profile = find_profile(read, request, model)
    if profile is None or profile.status != "ready":
        authorize_write(read, settings=settings, authorization=authorization)
        profile, job = service.queue(
            session,
            settings=settings,
            model=model,
            request=request,
            resource=resource,
            hardware=hardware,
        )
        session.flush()
        body = ParetoAccepted(profile_id=profile.id, job=job_out(session, job))
        return json_response(body, status.HTTP_202_ACCEPTED)
    artifact = service.stored_front(read, profile=profile, resource=resource, hardware=hardware)
    if artifact is None:  # first request: compute and store (a write)
        artifact = service.build_front(
            session, settings=settings, profile=profile, resource=resource, hardware=hardware
        )
    doc = artifact.doc or {}
    out = ParetoOut(
        model_id=model.id,
        profile_id=profile.id,
        resource=resource,
        hardware=hardware,
        method=profile.metric,
        solver=str(doc.get("method", "")),
        random_weights=profile.random_weights,
        points=[_point(p) for p in doc.get("points", [])],
    )
    return json_response(out, status.HTTP_200_OK)

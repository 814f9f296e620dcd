"""/v1/models/{id}/pareto: the loss-vs-resource front of a model's profile.

``GET`` is a read (no token, nothing stored): the exact front when one was built, else the fast
path computed on the solver pool. ``POST`` (a write) asks for the exact front: a job.
"""

from __future__ import annotations

import asyncio
import contextlib
from concurrent.futures import Future
from typing import Any

from fastapi import APIRouter, Query, status
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from searchsvc.bounds import MAX_CANDIDATES, MAX_NAME_CHARS, IdPath
from searchsvc.catalog.service import get_model
from searchsvc.db.session import session_scope
from searchsvc.db.tables import ModelRow, ProfileRow
from searchsvc.deps import GuardedRoute, SessionDep, SettingsDep, WriterDep
from searchsvc.jobs.service import job_out
from searchsvc.openapi import errors
from searchsvc.pareto import service
from searchsvc.pareto.schemas import ParetoAccepted, ParetoCreate, ParetoOut
from searchsvc.plans.service import solve_outcome_of
from searchsvc.profiles.service import find_profile, profile_request
from searchsvc.responses import json_response
from searchsvc.settings import Settings

router = APIRouter(tags=["pareto"], route_class=GuardedRoute)
PATH = "/v1/models/{model_id}/pareto"


def _origin(model: ModelRow, profile: ProfileRow, hardware: str | None) -> dict[str, Any]:
    """Where a front comes from (plain values: they outlive the session)."""
    return {
        "model_id": model.id,
        "profile_id": profile.id,
        "metric": profile.metric,
        "random_weights": profile.random_weights,
        "hardware": hardware,
    }


def _out(doc: dict[str, Any], origin: dict[str, Any], **extra: Any) -> ParetoOut:
    """The API's document: the stored or computed ``bitbudget.pareto/v1`` fields, and where
    they come from."""
    method = str(doc.get("method", ""))
    return ParetoOut(
        resource=doc["resource"],
        method=method,
        requested_points=int(doc.get("requested_points", len(doc.get("points", [])))),
        solve_seconds=float(doc.get("solve_seconds", 0.0)),
        points=list(doc.get("points", [])),
        solver=method,
        **origin,
        **extra,
    )


def _read(
    settings: Settings, model_id: int, resource: str, hardware: str | None, opts: dict[str, Any]
) -> ParetoOut | tuple[Future[Any], dict[str, Any]]:
    """The stored exact front, or the fast front's future and the rest of the answer."""
    with session_scope(settings.database, write=False) as read:
        service.check_resource(resource, hardware, read)
        model = get_model(read, model_id=model_id)
        request = profile_request(settings, model, opts["method"], opts["wanted"], opts["images"])
        profile = service.ready_profile(find_profile(read, request, model), model)
        stored = service.stored_front(read, profile=profile, resource=resource, hardware=hardware)
        origin = _origin(model, profile, hardware)
        if stored is not None:
            return _out(stored.doc or {}, origin, exact=True)
        job = service.active_build(read, profile=profile, resource=resource, hardware=hardware)
        future = service.fast_front_future(
            read, settings, profile=profile, resource=resource, hardware=hardware
        )
        extra = {"exact": False, "exact_job": job_out(read, job) if job else None}
        return future, {"origin": origin, "extra": extra}


@router.get(
    PATH, response_model=ParetoOut, responses=errors(409, t409="the profile is not ready yet")
)
async def get_pareto(
    model_id: IdPath,
    settings: SettingsDep,
    resource: str = Query(
        "memory_bytes", max_length=MAX_NAME_CHARS, description="memory_bytes, latency_ms or bops"
    ),
    hardware: str | None = Query(
        None, max_length=MAX_NAME_CHARS, description="hardware profile (latency_ms needs one)"
    ),
    method: str | None = Query(None, max_length=MAX_NAME_CHARS, description="profile metric"),
    images: int | None = Query(None, ge=1, le=1024),
    candidates: str | None = Query(
        None, max_length=MAX_CANDIDATES * 8, description="comma-separated candidate ids"
    ),
) -> JSONResponse:
    """The exact front when one was built (``exact: true``), else the fast path: the Lagrangian
    sweep with each point's proven bound (``exact: false``). 409 while the profile is not ready."""
    wanted = [c.strip() for c in candidates.split(",") if c.strip()] if candidates else None
    opts = {"method": method, "wanted": wanted, "images": images}
    found = await run_in_threadpool(_read, settings, model_id, resource, hardware, opts)
    if isinstance(found, ParetoOut):
        return json_response(found, status.HTTP_200_OK)
    future, rest = found
    # shielded: other readers of the same front share this computation; its errors are
    # mapped by solve_outcome_of (a bad problem 400, a solver process gone 503)
    with contextlib.suppress(Exception):
        await asyncio.shield(asyncio.wrap_future(future))
    doc = solve_outcome_of(future)
    return json_response(_out(doc, rest["origin"], **rest["extra"]), status.HTTP_200_OK)


@router.post(
    PATH,
    status_code=status.HTTP_202_ACCEPTED,
    response_model=ParetoAccepted,
    responses={
        200: {"model": ParetoOut, "description": "the exact front was built before"},
        **errors(409),
    },
)
def build_pareto(
    model_id: IdPath, body: ParetoCreate, session: SessionDep, settings: SettingsDep, _: WriterDep
) -> JSONResponse:
    """202 with the ``pareto.build`` job of the exact front (after a profile job when needed; a
    running one is returned, not doubled); 200 with the front when it was built before."""
    service.check_resource(body.resource, body.hardware, session)
    model = get_model(session, model_id=model_id)
    request = profile_request(settings, model, body.method, body.candidates, body.images)
    profile, job, stored = service.request_exact(
        session, settings=settings, model=model, request=request, resource=body.resource,
        hardware=body.hardware,
    )  # fmt: skip
    session.flush()
    if stored is not None:
        out = _out(stored.doc or {}, _origin(model, profile, body.hardware), exact=True)
        return json_response(out, status.HTTP_200_OK)
    assert job is not None
    accepted = ParetoAccepted(profile_id=profile.id, job=job_out(session, job))
    return json_response(accepted, status.HTTP_202_ACCEPTED, {"Location": f"/v1/jobs/{job.id}"})

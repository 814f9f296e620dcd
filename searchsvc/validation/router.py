"""Validation of plans, their packed artifacts, and the CI gate over HTTP."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Body, Query, Response, status
from fastapi.responses import FileResponse, JSONResponse

from searchsvc.bounds import IdPath
from searchsvc.deps import GuardedRoute, SessionDep, SettingsDep, WriterDep
from searchsvc.errors import NotFound
from searchsvc.jobs.service import is_active, job_out
from searchsvc.openapi import errors
from searchsvc.validation import repository, service
from searchsvc.validation.gate import Check, junit_xml
from searchsvc.validation.schemas import (
    GateOut,
    GateRequest,
    ValidationAccepted,
    ValidationOut,
    ValidationRequest,
)

router = APIRouter(tags=["validation"], route_class=GuardedRoute)


@router.post(
    "/v1/plans/{plan_id}/validate",
    response_model=ValidationAccepted,
    status_code=status.HTTP_202_ACCEPTED,
    responses={
        200: {"model": ValidationAccepted, "description": "validated before"},
        **errors(409, t409="the plan is not solved, or is being validated"),
    },
)
def validate_plan(
    plan_id: IdPath,
    session: SessionDep,
    settings: SettingsDep,
    _: WriterDep,
    body: ValidationRequest | None = Body(None),
) -> ValidationAccepted | JSONResponse:
    """Queue the validation of a solved plan (202), or return the finished one (200).

    An optional body ``{"video": true, "clips": 2, "frames": 6, "policy": "sis"}`` adds video
    fidelity (J&F, SAM2 only); a finished validation without it is then validated again.
    """
    request = None if body is None else body.options()
    row, job = service.queue_validation(
        session, settings=settings, plan_id=plan_id, request=request
    )
    session.flush()
    out = ValidationAccepted(
        validation=service.validation_out(session, row),
        job=None if job is None else job_out(session, job),
    )
    if row.status in service.DONE or not is_active(job):
        return JSONResponse(out.model_dump(mode="json"), status_code=status.HTTP_200_OK)
    return out


@router.get("/v1/plans/{plan_id}/validation", response_model=ValidationOut)
def get_validation(plan_id: IdPath, session: SessionDep) -> ValidationOut:
    """The newest validation of a plan."""
    row = repository.latest_for_plan(session, plan_id)
    if row is None:
        raise NotFound(f"plan {plan_id} has no validation; POST /v1/plans/{plan_id}/validate")
    return service.validation_out(session, row)


@router.get(
    "/v1/plans/{plan_id}/artifact",
    response_class=FileResponse,
    responses={
        200: {"content": {"application/octet-stream": {}}},
        **errors(409, t409="the plan is being validated: its artifact is not packed yet"),
    },
)
def download_artifact(plan_id: IdPath, session: SessionDep) -> FileResponse:
    """The packed safetensors file of a validated plan."""
    path, art = service.artifact_file(session, plan_id=plan_id)
    headers = {"X-Bitbudget-Sha256": art.sha256 or ""}
    measured = (art.doc or {}).get("measured_bytes")
    if measured is not None:
        headers["X-Bitbudget-Tensor-Bytes"] = str(measured)
    return FileResponse(
        path,
        media_type="application/octet-stream",
        filename=f"plan-{plan_id}.safetensors",
        headers=headers,
    )


@router.post(
    "/v1/gate",
    response_model=GateOut,
    responses={
        200: {
            "description": "every check and whether all passed (a failing gate is still a 200)",
            "content": {"application/xml": {"schema": {"type": "string"}}},
        },
        **errors(409, t409="the plan is still being validated"),
    },
)
def gate(
    body: GateRequest,
    session: SessionDep,
    fmt: Literal["json", "junit"] = Query("json", alias="format"),
) -> GateOut | Response:
    """Check a validation against size and fidelity limits; ``?format=junit`` gives JUnit XML."""
    out = service.gate(session, body=body)
    if fmt == "junit":
        checks = [Check(**c.model_dump()) for c in out.checks]
        xml = junit_xml(checks, {"plan_id": body.plan_id, "random_weights": out.random_weights})
        return Response(xml, media_type="application/xml")
    return out

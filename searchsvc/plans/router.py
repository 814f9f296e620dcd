"""/v1/plans: ask for a plan under a budget, read and list plans."""

from __future__ import annotations

from fastapi import APIRouter, Query, status
from fastapi.responses import JSONResponse

from searchsvc.catalog.service import get_model
from searchsvc.deps import ReadSessionDep, SessionDep, SettingsDep, WriterDep
from searchsvc.jobs.service import job_out
from searchsvc.plans import refine, service
from searchsvc.plans.schemas import (
    PlanAccepted,
    PlanCreate,
    PlanOut,
    PlanPage,
    RefineAccepted,
    RefineCreate,
)
from searchsvc.responses import json_response

router = APIRouter(prefix="/v1/plans", tags=["plans"])


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=PlanOut,
    responses={
        200: {"model": PlanOut, "description": "the same request was solved before"},
        202: {"model": PlanAccepted, "description": "profiling first; follow the job"},
        422: {"description": "the budget cannot be met (with the least achievable values)"},
    },
)
def create_plan(
    body: PlanCreate,
    read: ReadSessionDep,
    session: SessionDep,
    settings: SettingsDep,
    _: WriterDep,
) -> JSONResponse:
    """201 with the plan when a matching profile exists; 202 with a job that profiles first."""
    draft = service.draft_plan(read, settings=settings, body=body)
    read.commit()  # hand the read connection back before the write session takes one
    result = service.create_plan(session, settings=settings, draft=draft)
    if result.created:
        session.flush()
    out = service.plan_out(result.plan, draft.model)
    headers = {"Location": f"/v1/plans/{result.plan.id}"}
    if result.job is not None:
        accepted = PlanAccepted(plan=out, job=job_out(session, result.job))
        return json_response(accepted, status.HTTP_202_ACCEPTED, headers)
    code = status.HTTP_201_CREATED if result.created else status.HTTP_200_OK
    return json_response(out, code, headers)


@router.get("/{plan_id}", response_model=PlanOut)
def get_plan(plan_id: int, session: ReadSessionDep) -> PlanOut:
    """One plan with its ``bitbudget.plan/v1`` document and its newest validation."""
    from searchsvc.validation.service import plan_validation

    plan = service.get_plan(session, plan_id=plan_id)
    out = service.plan_out(plan, get_model(session, model_id=plan.model_id))
    out.validation = plan_validation(session, plan_id=plan.id)
    out.refinement = refine.plan_refinement(session, plan_id=plan.id)
    return out


@router.post(
    "/{plan_id}/refine",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=RefineAccepted,
    responses={
        200: {"model": RefineAccepted, "description": "refined before with these settings"},
        409: {"description": "the plan is not solved"},
    },
)
def refine_plan(
    plan_id: int, body: RefineCreate, session: SessionDep, settings: SettingsDep, _: WriterDep
) -> JSONResponse:
    """202 with the job that LSC-refines the plan (the same one while it runs); 200 once done."""
    row, job = refine.request_refinement(
        session,
        settings=settings,
        plan_id=plan_id,
        steps=body.steps,
        lr=body.lr,
        images=body.images,
    )
    session.flush()
    out = RefineAccepted(
        plan_id=plan_id,
        refinement=refine.refinement_out(row),
        job=None if job is None else job_out(session, job),
    )
    done = (row.doc or {}).get("status") == "done"
    code = status.HTTP_200_OK if done else status.HTTP_202_ACCEPTED
    return json_response(out, code, {"Location": f"/v1/plans/{plan_id}"})


@router.get("", response_model=PlanPage)
def list_plans(
    session: ReadSessionDep,
    model_id: int | None = Query(None, ge=1),
    limit: int = Query(50, ge=1, le=500),
    offset: int = Query(0, ge=0),
) -> PlanPage:
    """Plans, newest first, optionally of one model."""
    rows, total = service.list_plans(session, model_id=model_id, limit=limit, offset=offset)
    models = {r.model_id: get_model(session, model_id=r.model_id) for r in rows}
    items = [service.plan_out(r, models[r.model_id]) for r in rows]
    return PlanPage(items=items, total=total, limit=limit, offset=offset)

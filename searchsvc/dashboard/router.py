"""/dashboard: server-rendered pages (Jinja2) over the same database as the API.

Pages only read; writes (the budget form) go from the browser to ``POST /v1/plans`` with the
bearer token the user entered once (kept in the tab's session storage). Errors are HTML pages
with the right status, never JSON or a traceback.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, FastAPI, Query, Request, Response
from fastapi.staticfiles import StaticFiles

from searchsvc.bounds import IdPath, IdQuery
from searchsvc.dashboard import queries, views
from searchsvc.dashboard.errors import HtmlErrors, error_page
from searchsvc.dashboard.templating import STATIC_DIR, TEMPLATE_DIR, templates
from searchsvc.deps import ReadSessionDep, SettingsDep
from searchsvc.errors import BadInput, BitbudgetError, NotFound

__all__ = ["router", "install", "templates", "STATIC_DIR", "TEMPLATE_DIR"]

MODELS_PER_PAGE = 20
PLANS_PER_PAGE = 20
JOBS_PER_PAGE = 30

router = APIRouter(prefix="/dashboard", route_class=HtmlErrors, include_in_schema=False)


def _page_info(page: int, per_page: int, total: int) -> views.PageInfo:
    info = views.PageInfo(page, per_page, total)
    if page > info.pages:
        raise NotFound(f"page {page} does not exist (there are {info.pages})")
    return info


@router.get("", name="dashboard_models")
@router.get("/", include_in_schema=False)
def models_page(request: Request, session: ReadSessionDep, page: int = Query(1, ge=1)) -> Response:
    """Registered models: size, profiling state, plan counts and best plans."""
    total = queries.models_page(session, limit=1, offset=0)[1]
    info = _page_info(page, MODELS_PER_PAGE, total)
    rows, _ = queries.models_page(session, limit=info.per_page, offset=info.offset)
    cards = views.model_cards(session, list(rows))
    context = {"cards": cards, "info": info, "nav": "models"}
    return templates.TemplateResponse(request, "models.html", context)


def _pick_profile(profiles: list[Any], wanted: int | None) -> tuple[Any | None, list[Any]]:
    ready = [p for p in profiles if p.status == "ready"]
    if wanted is None:
        return (ready[0] if ready else None), ready
    chosen = next((p for p in ready if p.id == wanted), None)
    if chosen is None:
        raise NotFound(f"profile {wanted} is not a ready profile of this model")
    return chosen, ready


@router.get("/models/{model_id}", name="dashboard_model")
def model_page(
    request: Request,
    model_id: IdPath,
    session: ReadSessionDep,
    settings: SettingsDep,
    profile: IdQuery = None,
    resource: str = Query("memory_bytes"),
    hardware: str | None = Query(None),
    y: str = Query("loss"),
    logy: bool = Query(False),
    page: int = Query(1, ge=1),
) -> Response:
    """The Pareto front, baselines, plans, and the budget form of one model."""
    from searchsvc.catalog import repository as catalog
    from searchsvc.plans.service import known_solvers, plan_methods
    from solvers.costs import hardware_profiles

    model = catalog.get(session, model_id)
    if model is None:
        raise NotFound(f"model {model_id} is not registered (see the model list)")
    if resource not in views.RESOURCES:
        raise BadInput(f"unknown resource {resource!r}; known: {', '.join(views.RESOURCES)}")
    if y not in views.Y_METRICS:
        raise BadInput(f"unknown y metric {y!r}; known: {', '.join(views.Y_METRICS)}")
    hw_names = hardware_profiles()
    hardware = hardware or None
    if resource == "latency_ms" and hardware is None:
        hardware = hw_names[0]
    if hardware is not None and hardware not in hw_names:
        raise BadInput(f"unknown hardware {hardware!r}; known: {', '.join(hw_names)}")
    all_profiles = list(queries.profiles_of(session, model.id))
    chosen, ready = _pick_profile(all_profiles, profile)
    chart: dict[str, Any] | None = None
    chart_error = ""
    if chosen is not None:
        hw = hardware if resource == "latency_ms" else None
        try:
            front = views.front_view(
                session, settings, profile=chosen, resource=resource, hardware=hw
            )
        except BitbudgetError as exc:  # e.g. no candidate runs on that hardware: say so in place
            front, chart_error = {"front": [], "baselines": [], "solver": ""}, str(exc)
        points, any_validated = views.plan_points(
            session, model_id=model.id, profile_id=chosen.id, resource=resource, hardware=hw
        )
        chart = {
            "resource": resource,
            "x_label": views.RESOURCES[resource][0] + (f" on {hw}" if hw else ""),
            "y": y,
            "y_label": views.Y_METRICS[y],
            "logy": logy,
            "front": front["front"],
            "baselines": front["baselines"],
            "plans": points,
            "plan_url": str(request.url_for("dashboard_plan", plan_id=0)).removesuffix("0"),
            "any_validated": any_validated,
            "solver": front["solver"],
            "exact": front.get("exact", False),
            "exact_job": front.get("exact_job"),
            "max_gap": front.get("max_gap"),
            "exact_request": {
                "resource": resource,
                "hardware": hw,
                "method": chosen.metric,
                "images": chosen.images,
                "candidates": list(chosen.candidates),
            },
        }
    total = queries.plans_page(session, model_id=model.id, limit=1, offset=0)[1]
    info = _page_info(page, PLANS_PER_PAGE, total)
    plans, _ = queries.plans_page(
        session, model_id=model.id, limit=info.per_page, offset=info.offset
    )
    candidates = chosen.candidates if chosen else settings.default_candidates
    context = {
        "nav": "models",
        "model": model,
        "profiles": all_profiles,
        "ready": ready,
        "chosen": chosen,
        "chart": chart,
        "chart_error": chart_error,
        "resource": resource,
        "hardware": hardware,
        "hardware_names": hw_names,
        "y": y,
        "logy": logy,
        "y_metrics": views.Y_METRICS,
        "resources": views.RESOURCES,
        "plans": plans,
        "info": info,
        "form": {
            "candidates": ",".join(candidates),
            "images": chosen.images if chosen else settings.default_images,
            "method": chosen.metric if chosen else settings.default_metric,
            "methods": plan_methods(),
            "solver": settings.default_solver,
            "solvers": known_solvers(),
        },
    }
    return templates.TemplateResponse(request, "model.html", context)


@router.get("/plans/{plan_id}", name="dashboard_plan")
def plan_page(request: Request, plan_id: IdPath, session: ReadSessionDep) -> Response:
    """The heatmap, size breakdown, validation and live job progress of one plan."""
    from searchsvc.catalog import repository as catalog
    from searchsvc.exports.service import plan_export
    from searchsvc.jobs import repository as jobs
    from searchsvc.jobs.service import job_out
    from searchsvc.plans import repository as plans
    from searchsvc.plans.refine import plan_refinement
    from searchsvc.validation.service import plan_validation

    plan = plans.get(session, plan_id)
    if plan is None:
        raise NotFound(f"plan {plan_id} does not exist")
    model = catalog.get_with_inventory(session, plan.model_id)
    if model is None:
        raise NotFound(f"model {plan.model_id} of plan {plan_id} is gone")
    validation = plan_validation(session, plan_id=plan.id)
    refinement = plan_refinement(session, plan_id=plan.id)
    solved = plan.status in queries.SOLVED and plan.doc is not None
    heatmap = views.plan_heatmap(plan, model.inventory) if solved else []
    sizes = views.size_breakdown(plan, model.inventory) if solved else None
    watch = []
    for job_id, label in (
        (plan.job_id, "solve"),
        ((validation or {}).get("job_id"), "validate"),
        ((refinement or {}).get("job_id"), "refine"),
    ):
        job = jobs.get(session, job_id) if job_id else None
        if job is not None:
            watch.append({"label": label, "job": job_out(session, job).model_dump(mode="json")})
        if label == "solve" and job is not None and job.parent_id:  # its profile: units
            profile = jobs.get(session, job.parent_id)
            if profile is not None:
                doc = job_out(session, profile).model_dump(mode="json")
                watch.append({"label": "profile", "job": doc})
    context = {
        "nav": "models",
        "plan": plan,
        "model": model,
        "heatmap": heatmap,
        "cells": sum(len(g["cells"]) for g in heatmap),
        "sizes": sizes,
        "validation": views.validation_view(plan, validation),
        "refinement": views.refinement_view(plan, validation, refinement),
        "jobs": watch,
        "usage": _usage(plan, model),
        "export": _export_view(session, plan_export(session, plan_id=plan.id)),
        "solved": solved,
    }
    return templates.TemplateResponse(request, "plan.html", context)


def _export_view(session: Any, export: dict[str, Any] | None) -> dict[str, Any] | None:
    """The plan's newest ONNX export with its job (followed live while it runs)."""
    from searchsvc.jobs import repository as jobs
    from searchsvc.jobs.service import job_out

    if export is None:
        return None
    job = jobs.get(session, export["job_id"]) if export.get("job_id") else None
    return export | {"job": None if job is None else job_out(session, job).model_dump(mode="json")}


def _usage(plan: Any, model: Any) -> dict[str, float]:
    from searchsvc.plans.service import user_units

    return user_units(dict(plan.totals or {}), int(model.summary.get("weight_numel", 0)))


@router.get("/jobs", name="dashboard_jobs")
def jobs_page(
    request: Request,
    session: ReadSessionDep,
    state: str | None = Query(None),
    page: int = Query(1, ge=1),
) -> Response:
    """Recent jobs with state, progress and errors."""
    from searchsvc.db.tables import JOB_STATES
    from searchsvc.jobs.service import job_out

    state = state or None
    if state is not None and state not in JOB_STATES:
        raise BadInput(f"unknown state {state!r}; known: {', '.join(JOB_STATES)}")
    total = queries.jobs_page(session, state=state, limit=1, offset=0)[1]
    info = _page_info(page, JOBS_PER_PAGE, total)
    rows, _ = queries.jobs_page(session, state=state, limit=info.per_page, offset=info.offset)
    context = {
        "nav": "jobs",
        "jobs": [job_out(session, j) for j in rows],
        "state": state,
        "states": JOB_STATES,
        "info": info,
    }
    return templates.TemplateResponse(request, "jobs.html", context)


@router.get("/{rest:path}", include_in_schema=False)
def not_found(request: Request, rest: str) -> Response:
    """Any other dashboard address: an HTML 404."""
    return error_page(request, 404, f"there is no dashboard page at /dashboard/{rest}")


def install(app: FastAPI) -> None:
    """Mount the static files (before the catch-all route) and the pages."""
    app.mount("/dashboard/static", StaticFiles(directory=str(STATIC_DIR)), name="dashboard_static")
    from searchsvc.dashboard.hardware import router as hardware_router

    app.include_router(hardware_router)  # before the catch-all 404 route
    app.include_router(router)

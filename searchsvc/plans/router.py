"""/v1/plans: ask for a plan under a budget, read and list plans."""

from __future__ import annotations

import asyncio
import time
from contextlib import ExitStack
from dataclasses import dataclass

from fastapi import APIRouter, Request, status
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from searchsvc.bounds import IdPath, IdQuery, Limit, Offset
from searchsvc.catalog.service import get_model
from searchsvc.db.session import get_engine, session_scope
from searchsvc.deps import GuardedRoute, ReadSessionDep, SessionDep, SettingsDep, WriterDep
from searchsvc.jobs.service import job_out
from searchsvc.openapi import errors
from searchsvc.plans import plan_cache, refine, service
from searchsvc.plans.schemas import (
    PlanAccepted,
    PlanCreate,
    PlanOut,
    PlanPage,
    RefineAccepted,
    RefineCreate,
)
from searchsvc.responses import json_bytes_response, json_response
from searchsvc.settings import Settings

router = APIRouter(prefix="/v1/plans", tags=["plans"], route_class=GuardedRoute)
WARM_CONNECTIONS = 16  # PostgreSQL connections opened at start-up (the pool keeps up to 40)


def _draft(settings: Settings, body: PlanCreate) -> service.PlanDraft | Response:
    """Check the request; the response when it needs no solve (an earlier identical plan, or a
    profile to make first), else the draft whose solve was started (or is memoised: it is
    stored through ``_store_once`` all the same, so that identical requests in flight store
    one plan, not one each — on PostgreSQL nothing else serialises their writes)."""
    with session_scope(settings.database, write=False) as read:
        draft = service.draft_plan(read, settings=settings, body=body, wait=False)
    if draft.solving is not None:
        return draft
    return _store(settings, draft)


def _store(settings: Settings, draft: service.PlanDraft) -> Response:
    """Write the drafted plan (after its solve) and answer 201, 200 or 202."""
    return _stored(settings, draft)[0]


def _stored(settings: Settings, draft: service.PlanDraft) -> tuple[Response, bool]:
    """:func:`_store`, and whether an identical request would be answered with this plan (no
    job, and the plan is one that request's ``find_earlier`` accepts)."""
    if draft.solved is not None:
        with session_scope(settings.database, write=False) as read:
            service.find_earlier(read, draft=draft)
    with session_scope(settings.database) as session:
        result = service.create_plan(session, settings=settings, draft=draft)
        if result.created:
            session.flush()
        out = service.plan_out(result.plan, draft.model)
        headers = {"Location": f"/v1/plans/{result.plan.id}"}
        if result.job is not None:
            accepted = PlanAccepted(plan=out, job=job_out(session, result.job))
            return json_response(accepted, status.HTTP_202_ACCEPTED, headers), False
        code = status.HTTP_201_CREATED if result.created else status.HTTP_200_OK
        same = result.plan.validate == draft.body.validate_plan
        return json_response(out, code, headers), same


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=PlanOut,
    responses={
        200: {"model": PlanOut, "description": "the same request was solved before"},
        202: {"model": PlanAccepted, "description": "profiling first; follow the job"},
        **errors(422, t422="the budget cannot be met (`least`: the least achievable values)"),
    },
)
async def create_plan(body: PlanCreate, settings: SettingsDep, _: WriterDep) -> Response:
    """201 with the plan when a matching profile exists; 202 with a job that profiles first.

    The database work runs in worker threads; the solve runs on the solver pool (worker
    processes in the server) and is awaited here, so a request waiting for its solve holds no
    thread and no connection."""
    arrived = time.monotonic()
    drafted = await run_in_threadpool(_draft, settings, body)
    if isinstance(drafted, Response):
        return drafted
    assert drafted.solving is not None
    # shielded: a client that hangs up must not cancel the solve other requests share
    await asyncio.shield(asyncio.wrap_future(drafted.solving))
    drafted.finish()  # a 400 / 422 when the solve has no plan
    return await _store_once(settings, drafted, arrived)


@dataclass(frozen=True)
class _Written:
    """What the first of identical requests stored: its request, when it began writing, and the
    plan's JSON and location."""

    body: PlanCreate
    began: float
    json: bytes
    location: str


_storing: dict[tuple[int, str], asyncio.Future[_Written | None]] = {}


async def _store_once(settings: Settings, draft: service.PlanDraft, arrived: float) -> Response:
    """Store a solved draft once for identical requests that waited for the same solve.

    The first one writes; the others wait (holding no thread). Those that arrived before it
    began writing are answered with the plan it stored (200, as ``find_earlier`` would answer
    them): the plan as of its commit, which came after they arrived — the answer any of them
    would have read — without each one reading it again in a worker thread at the moment the
    clients that waited together come back to GET their plans. Any other waiter (a request
    that differs, one that came later, or the first failed) stores its own draft as before,
    reading the plan the first wrote instead of taking the write lock."""
    key = (id(asyncio.get_running_loop()), draft.request_key)
    writing = _storing.get(key)
    if writing is not None:
        written = await asyncio.shield(writing)
        if written is not None and arrived < written.began and written.body == draft.body:
            headers = {"Location": written.location}
            return json_bytes_response(written.json, status.HTTP_200_OK, headers)
        return await run_in_threadpool(_store, settings, draft)
    _storing[key] = asyncio.get_running_loop().create_future()
    written = None
    try:
        began = time.monotonic()
        response, same = await run_in_threadpool(_stored, settings, draft)
        if same and response.status_code in (status.HTTP_200_OK, status.HTTP_201_CREATED):
            location = response.headers["location"]
            written = _Written(draft.body, began, bytes(response.body), location)
        return response
    finally:
        _storing.pop(key).set_result(written)


def _plan_json(settings: Settings, plan_id: int) -> tuple[bytes, str]:
    """The plan resource as JSON and its ETag (cached until the plan or what it embeds changes)."""
    from searchsvc.exports.service import plan_export
    from searchsvc.validation.service import plan_validation

    def build() -> PlanOut:
        plan = service.get_plan(session, plan_id=plan_id)
        out = service.plan_out(plan, get_model(session, model_id=plan.model_id))
        out.validation = plan_validation(session, plan_id=plan.id)
        out.refinement = refine.plan_refinement(session, plan_id=plan.id)
        out.export = plan_export(session, plan_id=plan.id)
        return out

    with session_scope(settings.database, write=False) as session:
        cached = plan_cache.lookup(session, settings.database, plan_id)
        if cached is not None:
            return cached
        return plan_cache.store(session, settings.database, plan_id, build)


def warm_up(settings: Settings) -> None:
    """Run GET /v1/plans/{id}'s queries once, for no plan, at start-up: the first build after a
    start otherwise pays ~40 ms of SQLAlchemy compiling them (and the validation service's
    import) while clients wait — at the moment many of them come for a new plan at once."""
    from searchsvc.catalog import repository as models
    from searchsvc.exports.service import plan_export
    from searchsvc.plans import repository as plans
    from searchsvc.validation.service import plan_validation

    with session_scope(settings.database, write=False) as session:
        plan_cache.fingerprint(session, 0)
        plans.get(session, 0)
        models.get(session, 0)
        plan_validation(session, plan_id=0)
        refine.plan_refinement(session, plan_id=0)
        plan_export(session, plan_id=0)
    engine = get_engine(settings.database)
    if engine.dialect.name == "postgresql":
        # open some pooled connections now (kept: see db.session): each costs a PostgreSQL
        # backend's start, several ms of CPU, which the first burst of requests would pay
        with ExitStack() as stack:
            for _ in range(WARM_CONNECTIONS):
                stack.enter_context(engine.connect()).exec_driver_sql("SELECT 1")


async def _cached_plan_json(
    request: Request, database: str, plan_id: int
) -> tuple[bytes, str] | None:
    """The cached JSON and ETag when the plan is unchanged, checked from the event loop (no
    worker thread); None when it is not cached, changed, or could not be checked here."""
    entry = plan_cache.cached(database, plan_id)
    reader: plan_cache.Reader | None = getattr(request.app.state, "plan_reader", None)
    if entry is None or reader is None or reader.url != database:
        return None
    current = await reader.current(plan_id)
    if current is None or not plan_cache.hit(database, plan_id, entry, current[0]):
        return None
    return entry[1], entry[2]


_building: dict[tuple[int, str, int], asyncio.Future[None]] = {}


async def _build_once(settings: Settings, plan_id: int) -> tuple[bytes, str]:
    """Build (and cache) the plan's JSON in a worker thread. When many clients GET a plan that is
    not cached at once (those that waited for the same solve get their answers together), one
    builds and the others wait for it instead of each building it (``_building``)."""
    key = (id(asyncio.get_running_loop()), settings.database, plan_id)
    first = key not in _building
    if first:
        _building[key] = asyncio.get_running_loop().create_future()
    try:
        return await run_in_threadpool(_plan_json, settings, plan_id)
    finally:
        if first:
            _building.pop(key).set_result(None)


@router.get(
    "/{plan_id}",
    response_model=PlanOut,
    responses={304: {"description": "not modified (the `If-None-Match` ETag is current)"}},
)
async def get_plan(plan_id: IdPath, request: Request) -> Response:
    """One plan with its ``bitbudget.plan/v1`` document and its newest validation.

    A plan unchanged since it was last served is answered from the cache after one fingerprint
    read on the event loop; otherwise it is (re)built in a worker thread."""
    settings: Settings = request.app.state.settings
    answer = await _cached_plan_json(request, settings.database, plan_id)
    if answer is None:
        key = (id(asyncio.get_running_loop()), settings.database, plan_id)
        building = _building.get(key)
        if building is not None:
            # the plan is being (re)built for another request: wait for that, then check the
            # fingerprint again — read now, after this request came, so never an older answer
            await asyncio.shield(building)
            answer = await _cached_plan_json(request, settings.database, plan_id)
    if answer is None:
        answer = await _build_once(settings, plan_id)
    body, etag = answer
    if_none_match = request.headers.get("if-none-match")
    if if_none_match is not None and plan_cache.etag_matches(if_none_match, etag):
        return Response(status_code=status.HTTP_304_NOT_MODIFIED, headers={"ETag": etag})
    return Response(body, media_type="application/json", headers={"ETag": etag})


@router.post(
    "/{plan_id}/refine",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=RefineAccepted,
    responses={
        200: {"model": RefineAccepted, "description": "refined before with these settings"},
        **errors(409, t409="the plan is not solved"),
    },
)
def refine_plan(
    plan_id: IdPath, body: RefineCreate, session: SessionDep, settings: SettingsDep, _: WriterDep
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
    model_id: IdQuery = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> PlanPage:
    """Plans, newest first, optionally of one model."""
    rows, total = service.list_plans(session, model_id=model_id, limit=limit, offset=offset)
    models = {r.model_id: get_model(session, model_id=r.model_id) for r in rows}
    items = [service.plan_out(r, models[r.model_id]) for r in rows]
    return PlanPage(items=items, total=total, limit=limit, offset=offset)

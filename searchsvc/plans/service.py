"""Plans: solve a budget over a profile now when the profile exists, else queue profile -> solve."""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import BrokenExecutor, CancelledError, Future
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from searchsvc.catalog import repository as models
from searchsvc.catalog.service import get_model
from searchsvc.db.tables import JobRow, ModelRow, PlanRow
from searchsvc.errors import BadInput, InfeasibleBudget, NotFound, Unavailable
from searchsvc.jobs.service import create_job
from searchsvc.plans import repository
from searchsvc.plans.memo import SolveMemo
from searchsvc.plans.schemas import GIGA, MB, Budget, PlanCreate, PlanOut
from searchsvc.plans.solving import solve_budget
from searchsvc.plans.validation import request_validation
from searchsvc.profiles import repository as profiles
from searchsvc.profiles.service import profile_request, request_profile
from searchsvc.settings import Settings

__all__ = [
    "SOLVE",
    "PlanResult",
    "PlanDraft",
    "configure_solver",
    "shutdown_solver",
    "submit_on_profile",
    "solve_outcome",
    "solve_outcome_of",
    "draft_plan",
    "find_earlier",
    "create_plan",
    "solve_queued",
    "record_solution",
    "get_plan",
    "list_plans",
    "plan_out",
    "model_spec_doc",
    "known_solvers",
    "plan_methods",
    "check_hardware",
    "user_units",
]

SOLVE = "plans.solve"
_CACHE_SIZE = 16


@dataclass
class PlanResult:
    """What ``create_plan`` did: the plan, the job when it waits, whether it is new."""

    plan: PlanRow
    job: JobRow | None
    created: bool


def known_solvers() -> tuple[str, ...]:
    """The solver backends by name."""
    from solvers import BACKENDS

    return tuple(BACKENDS)


def plan_methods() -> tuple[str, ...]:
    """Profile metrics that yield a plan by themselves (``synergy`` holds pair terms only)."""
    from searchsvc.profiles.service import known_metrics

    return tuple(m for m in known_metrics() if m != "synergy")


def check_hardware(hardware: str | None, session: Session | None = None) -> None:
    """Refuse an unknown hardware profile, listing the known ones: the shipped estimates and,
    given a session, the measured tables stored in the database."""
    if hardware is None:
        return
    from solvers.costs import hardware_profiles

    known = hardware_profiles()
    if hardware in known:
        return
    if session is None:
        raise BadInput(f"unknown hardware {hardware!r}; known: {', '.join(known)}")
    from searchsvc.hardware.service import check_name

    check_name(session, hardware)


def _check(session: Session, method: str, solver: str, hardware: str | None) -> None:
    if method not in plan_methods():
        raise BadInput(f"unknown method {method!r}; known: {', '.join(plan_methods())}")
    if solver not in known_solvers():
        raise BadInput(f"unknown solver {solver!r}; known: {', '.join(known_solvers())}")
    check_hardware(hardware, session)


def _request_key(profile_key: str, body: PlanCreate, method: str, solver: str) -> str:
    doc = [profile_key, body.budget.user_dict(), method, solver]
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


class _Documents:
    """Parsed profiles and inventories by profile id (immutable once ready), LRU-bounded."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: OrderedDict[tuple[str, int, int], tuple[Any, dict[str, Any]]] = OrderedDict()

    def get(
        self, session: Session, settings: Settings, model_id: int, profile_id: int
    ) -> tuple[Any, dict]:
        from profiling.sensitivity import Profile

        key = (settings.database, model_id, profile_id)
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        row = profiles.get_with_doc(session, profile_id)
        model = models.get_with_inventory(session, model_id)
        if row is None or row.doc is None or model is None:
            raise NotFound(f"profile {profile_id} or model {model_id} is gone")
        value = (Profile.from_json(row.doc), model.inventory)
        with self._lock:
            self._items[key] = value
            while len(self._items) > _CACHE_SIZE:
                self._items.popitem(last=False)
        return value


_documents = _Documents()
_memo = SolveMemo(size=1024, slots=os.cpu_count() or 1)


def configure_solver(settings: Settings) -> None:
    """Where this process solves: ``settings.solver_processes`` worker processes, or threads."""
    _memo.use_processes(settings.solver_processes)


def shutdown_solver() -> None:
    """Stop the solver's workers (a later solve starts them again)."""
    _memo.shutdown()


def user_units(values: dict[str, Any], numel: int) -> dict[str, float]:
    """Problem resources in the budget's units: memory_mb, bops_g, latency_ms, avg_bits."""
    out: dict[str, float] = {}
    for key, value in values.items():
        if value is None:
            continue
        if key == "memory_bytes":
            out["memory_mb"] = round(float(value) / MB, 6)
        elif key == "bops":
            out["bops_g"] = round(float(value) / GIGA, 6)
        elif key == "weight_bits" and numel:
            out["avg_bits"] = round(float(value) / numel, 4)
        elif key == "latency_ms":
            out["latency_ms"] = round(float(value), 6)
    return out


def _weight_numel(inventory: dict[str, Any]) -> int:
    return sum(int(x.get("weight_numel") or 0) for x in inventory["layers"])


def _infeasible(solved: Any, numel: int) -> InfeasibleBudget:
    """The 422: which budgets cannot be met and the least each resource can reach."""
    explanation = solved.explanation or {}
    least = user_units({k: v["least"] for k, v in explanation.items()}, numel)
    asked = user_units({k: v["budget"] for k, v in explanation.items()}, numel)
    over = [k for k in least if k in asked and least[k] > asked[k]]
    parts = [f"{k} least achievable {least[k]:g} (budget {asked[k]:g})" for k in over or least]
    head = "budget cannot be met: " if over else "budgets cannot all be met together: "
    return InfeasibleBudget(head + "; ".join(parts), least={k: least[k] for k in over or least})


def _solve_future(
    session: Session,
    settings: Settings,
    *,
    model_id: int,
    profile_id: int,
    request_key: str,
    budget: dict[str, Any],
    hardware: str | None,
    solver: str,
) -> tuple[Future[Any], int]:
    """The (memoised) solve of a budget over a ready profile, running or done, and the model's
    weight count (for the 422's units)."""
    from searchsvc.hardware.service import resolve

    limits = Budget.model_validate(budget).limits()
    args = (limits, resolve(session, hardware), solver, settings.solve_time_limit_s)
    future, inventory = submit_on_profile(
        session, settings, model_id=model_id, profile_id=profile_id, key=request_key,
        fn=solve_budget, args=args,
    )  # fmt: skip
    return future, _weight_numel(inventory)


def submit_on_profile(
    session: Session,
    settings: Settings,
    *,
    model_id: int,
    profile_id: int,
    key: str,
    fn: Callable[..., Any],
    args: tuple[Any, ...],
) -> tuple[Future[Any], dict[str, Any]]:
    """``fn(profile, inventory, *args)`` on the solver pool, memoised by ``key`` (one
    computation in flight per key), and the model's inventory."""
    profile, inventory = _documents.get(session, settings, model_id, profile_id)
    return _memo.submit(key, fn, profile, inventory, *args), inventory


def solve_outcome_of(future: Future[Any]) -> Any:
    """What a solver-pool computation returned; a bad problem is a 400, a solver process that
    died (or a server stopping) a 503."""
    try:
        return future.result()
    except ValueError as exc:  # ProblemError, unsupported hardware/candidate combinations
        raise BadInput(str(exc)) from None
    except (BrokenExecutor, CancelledError):  # a solver process died, or the server stops
        raise Unavailable("the solver stopped before this was solved; send it again") from None


def solve_outcome(future: Future[Any], numel: int) -> Any:
    """A finished solve's plan; a bad problem is a 400, an infeasible budget a 422."""
    solved = solve_outcome_of(future)
    if solved.status == "infeasible":
        raise _infeasible(solved, numel)
    return solved


def _apply(plan: PlanRow, solved: Any, video: dict[str, Any] | None = None) -> None:
    """Record a solution; ``video``: the clips of the hierarchical profile it was solved on."""
    doc = solved.to_dict() | ({"video": video} if video else {})
    plan.status, plan.doc, plan.objective = solved.status, doc, solved.objective
    plan.totals, plan.message = dict(solved.totals), solved.message


@dataclass
class PlanDraft:
    """A checked plan request, solved already when its profile is ready (nothing written yet)."""

    body: PlanCreate
    method: str
    solver: str
    model: ModelRow
    request: Any
    request_key: str
    profile_id: int | None = None
    earlier: PlanRow | None = None
    solved: Any = None
    solving: Future[Any] | None = None  # the solve, while ``solved`` is not read yet
    numel: int = 0

    def finish(self) -> None:
        """Read the finished solve into ``solved`` (a 400 or 422 when it has none)."""
        if self.solving is not None and self.solved is None:
            self.solved = solve_outcome(self.solving, self.numel)


def draft_plan(
    session: Session, *, settings: Settings, body: PlanCreate, wait: bool = True
) -> PlanDraft:
    """Check a request and solve it when a matching profile is ready (reads only).

    Solving happens here, outside the write transaction, so that a slow or waiting solve never
    holds the database (on SQLite, the one write lock). With ``wait=False`` the solve is only
    started (``draft.solving``): the caller awaits it, then calls ``draft.finish()``.
    """
    method = body.method or settings.default_metric
    solver = body.solver or settings.default_solver
    _check(session, method, solver, body.budget.hardware)
    model = get_model(session, model_id=body.model_id)
    request = profile_request(
        settings,
        model,
        method,
        body.candidates,
        body.images,
        body.video_profile(),
        attention=body.attention,
        attention_options=body.attention_options,
    )
    key = request.key(model.weights_hash)
    draft = PlanDraft(body, method, solver, model, request, _request_key(key, body, method, solver))
    profile = profiles.by_key(session, key)
    if profile is None or profile.status != "ready":
        return draft
    draft.profile_id = profile.id
    earlier = repository.solved_by_request_key(session, draft.request_key)
    if earlier is not None and earlier.validate == body.validate_plan:
        draft.earlier = earlier
        return draft
    _documents.get(session, settings, model.id, profile.id)  # cached: _solved reads no rows
    # end the read transaction: its pooled connection goes back before the (slow) solve, and a
    # request never holds a read connection while it waits for a write one (pool exhaustion on
    # PostgreSQL under load); objects stay readable (expire_on_commit=False)
    session.commit()
    draft.solving, draft.numel = _solve_future(
        session,
        settings,
        model_id=model.id,
        profile_id=profile.id,
        request_key=draft.request_key,
        budget=body.budget.user_dict(),
        hardware=body.budget.hardware,
        solver=solver,
    )
    if wait:
        draft.finish()
    return draft


def find_earlier(session: Session, *, draft: PlanDraft) -> None:
    """After a solve, look (reads only) for the plan an identical request stored meanwhile: many
    clients that waited for one solve then need no write transaction (on SQLite, the one lock)."""
    if draft.earlier is None:
        earlier = repository.solved_by_request_key(session, draft.request_key)
        if earlier is not None and earlier.validate == draft.body.validate_plan:
            draft.earlier = earlier


def create_plan(session: Session, *, settings: Settings, draft: PlanDraft) -> PlanResult:
    """Store a drafted plan: solved (201), an earlier identical one (200), or queued (202)."""
    if draft.earlier is not None:
        return PlanResult(draft.earlier, None, False)
    draft.finish()
    if draft.solved is not None:  # solved meanwhile by a concurrent identical request?
        earlier = repository.solved_by_request_key(session, draft.request_key)
        if earlier is not None and earlier.validate == draft.body.validate_plan:
            return PlanResult(earlier, None, False)
    body = draft.body
    plan = PlanRow(
        model_id=draft.model.id,
        request_key=draft.request_key,
        method=draft.method,
        solver=draft.solver,
        hardware=body.budget.hardware,
        budget=body.budget.user_dict(),
        validate=body.validate_plan is not False,
        status="pending",
        totals={},
    )
    if draft.solved is not None:
        plan.profile_id = draft.profile_id
        _apply(plan, draft.solved, body.video_profile())
        session.add(plan)
        session.flush()
        request_validation(session, settings=settings, plan=plan, request=body.validation_request())
        return PlanResult(plan, None, True)
    model = get_model(session, model_id=draft.model.id)
    profile, profile_job = request_profile(
        session, settings=settings, model=model, request=draft.request, direct=False
    )
    plan.profile_id = profile.id
    session.add(plan)
    session.flush()
    params: dict[str, Any] = {"plan_id": plan.id}
    if body.validation_request() is not None:  # read back by request_validation once solved
        params["validate"] = body.validation_request()
    job = create_job(session, settings=settings, kind=SOLVE, params=params, parent=profile_job)
    plan.job_id, plan.message = job.id, "waiting for the profile"
    if plan.validate:  # asked for: it runs once the plan is solved (docs/validation.md)
        plan.validation_status = "queued"
    return PlanResult(plan, job, True)


def solve_queued(session: Session, *, settings: Settings, plan: PlanRow) -> Any:
    """The solver's plan for a queued plan whose profile is now ready (reads only)."""
    profile = profiles.get(session, plan.profile_id or 0)
    if profile is None or profile.status != "ready":
        state = "missing" if profile is None else profile.status
        raise BadInput(f"plan {plan.id}: its profile is {state}, not ready")
    future, numel = _solve_future(
        session,
        settings,
        model_id=plan.model_id,
        profile_id=profile.id,
        request_key=plan.request_key,
        budget=plan.budget,
        hardware=plan.hardware,
        solver=plan.solver,
    )
    return solve_outcome(future, numel)


def record_solution(
    session: Session, *, settings: Settings, plan: PlanRow, solved: Any | None, error: str = ""
) -> None:
    """Write a queued plan's outcome: the solution (then ask for validation), or infeasible."""
    if solved is None:
        plan.status, plan.message = "infeasible", error
        if plan.validate:
            plan.validation_status = "skipped"  # nothing to validate
        return
    profile = profiles.get(session, plan.profile_id or 0)
    _apply(plan, solved, ((profile.options or {}) if profile is not None else {}).get("video"))
    request_validation(session, settings=settings, plan=plan)


def get_plan(session: Session, *, plan_id: int) -> PlanRow:
    """A plan row, or NotFound."""
    plan = repository.get(session, plan_id)
    if plan is None:
        raise NotFound(f"plan {plan_id} does not exist")
    return plan


def list_plans(
    session: Session, *, model_id: int | None, limit: int, offset: int
) -> tuple[list[PlanRow], int]:
    """A page of plans, optionally of one model."""
    rows, total = repository.page(session, model_id=model_id, limit=limit, offset=offset)
    return list(rows), total


def model_spec_doc(model: ModelRow) -> dict[str, Any]:
    """What rebuilds a registered model: its spec and the hash its weights must have."""
    return {
        "name": model.name,
        "image_size": model.image_size,
        "checkpoint": model.checkpoint,
        "seed": model.seed,
        "weights_hash": model.weights_hash,
    }


def plan_out(plan: PlanRow, model: ModelRow) -> PlanOut:
    """The plan resource; ``usage`` gives the totals in the budget's units."""
    numel = int(model.summary.get("weight_numel", 0))
    totals = dict(plan.totals or {})
    spec = model_spec_doc(model)
    return PlanOut(
        id=plan.id,
        model_id=plan.model_id,
        profile_id=plan.profile_id,
        status=plan.status,
        method=plan.method,
        solver=plan.solver,
        hardware=plan.hardware,
        budget=plan.budget,
        validate_plan=plan.validate,
        validation_status=plan.validation_status,
        objective=plan.objective,
        totals=totals,
        usage=user_units(totals, numel),
        plan=None if plan.doc is None else {**plan.doc, "model": spec},
        video=(plan.doc or {}).get("video"),
        model=spec,
        message=plan.message,
        random_weights=model.random_weights,
        job_id=plan.job_id,
        created_at=plan.created_at,
        validation=None,
        refinement=None,
        export=None,
    )

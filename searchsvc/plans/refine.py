"""LSC refinement of a solved plan (``POST /v1/plans/{id}/refine`` -> job ``plans.refine``).

Storage: one ``artifacts`` row per (plan, refinement settings), ``kind = "refinement"``,
``key = plan:<id>:refinement:<hash of the settings>``. Its ``path`` is the learned-clipping
sidecar (``bitbudget.clipping/v1`` safetensors keyed by layer / quantizer name), its ``doc`` the
state (``queued`` / ``running`` / ``done`` / ``failed`` / ``cancelled``) and, once done, the
refinement report (steps, fidelity ``before`` / ``after`` on the held-out images) and the packed
refined artifact (``plan-<id>-refined-<hash>.safetensors``, packed with the learned clipping).
No schema change: the plan row is untouched; ``GET /v1/plans/{id}`` embeds the newest one.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from searchsvc.db.tables import ArtifactRow, JobRow, PlanRow
from searchsvc.errors import Conflict, NotFound
from searchsvc.jobs import repository as jobs
from searchsvc.jobs.service import create_job
from searchsvc.plans import repository
from searchsvc.settings import Settings

__all__ = [
    "REFINE",
    "KIND",
    "refinement_key",
    "request_refinement",
    "plan_refinement",
    "refinement_paths",
    "refine_inputs",
]

REFINE = "plans.refine"
KIND = "refinement"
SOLVED = ("optimal", "feasible")
LIVE = ("queued", "running", "done")


def refinement_key(plan_id: int, settings_doc: dict[str, Any]) -> str:
    """The artifact key of one refinement of a plan."""
    digest = hashlib.sha256(json.dumps(settings_doc, sort_keys=True).encode()).hexdigest()[:12]
    return f"plan:{plan_id}:refinement:{digest}"


def refinement_paths(settings: Settings, key: str) -> tuple[Path, Path, Path]:
    """(clipping sidecar, refined packed artifact, checkpoint dir) of a refinement key."""
    plan_id, digest = key.split(":")[1], key.split(":")[-1]
    base = settings.artifacts / "plans"
    return (
        base / f"plan-{plan_id}-clipping-{digest}.safetensors",
        base / f"plan-{plan_id}-refined-{digest}.safetensors",
        (settings.data_dir / "refine" / digest).resolve(),
    )


def _by_key(session: Session, key: str) -> ArtifactRow | None:
    return session.scalars(select(ArtifactRow).where(ArtifactRow.key == key)).first()


def request_refinement(
    session: Session,
    *,
    settings: Settings,
    plan_id: int,
    steps: int,
    lr: float | None,
    images: int | None,
) -> tuple[ArtifactRow, JobRow | None]:
    """The refinement with these settings (queued, running or done), or a newly queued one."""
    from profiling.quant.lsc import LscConfig

    plan = repository.get(session, plan_id)
    if plan is None:
        raise NotFound(f"plan {plan_id} does not exist")
    if plan.status not in SOLVED or plan.doc is None:
        raise Conflict(f"plan {plan_id} is {plan.status}; only a solved plan can be refined")
    cfg = LscConfig(steps=steps, lr=lr if lr is not None else LscConfig.lr)
    doc = {"config": cfg.to_dict(), "images": images}
    key = refinement_key(plan_id, doc)
    row = _by_key(session, key)
    if row is not None and (row.doc or {}).get("status") in LIVE:
        job = jobs.get(session, row.job_id) if row.job_id else None
        return row, job
    if row is None:
        row = ArtifactRow(kind=KIND, key=key, model_id=plan.model_id, plan_id=plan_id)
        session.add(row)
    row.doc = {"status": "queued", "steps": steps} | doc
    session.flush()
    job = create_job(
        session, settings=settings, kind=REFINE, params={"plan_id": plan_id, "artifact_id": row.id}
    )
    row.job_id = job.id
    return row, job


def refinement_out(row: ArtifactRow) -> dict[str, Any]:
    """The refinement as the plan resource shows it."""
    doc = dict(row.doc or {})
    report = doc.pop("report", None) or {}
    out = {
        "id": row.id,
        "key": row.key,
        "status": doc.get("status"),
        "steps": doc.get("steps"),
        "job_id": row.job_id,
        "config": doc.get("config"),
        "before": report.get("before"),
        "after": report.get("after"),
        "error": doc.get("error"),
    }
    if report:
        out |= {
            "loss": report.get("loss"),
            "factors": report.get("factors"),
            "seconds_per_step": report.get("seconds_per_step"),
            "resumed_from_step": report.get("resumed_from_step"),
            "clipping": {"bytes": row.size_bytes, "sha256": row.sha256},
            "artifact": doc.get("artifact"),
        }
    return out


def plan_refinement(session: Session, *, plan_id: int) -> dict[str, Any] | None:
    """The newest refinement of a plan (what ``GET /v1/plans/{id}`` embeds), or None."""
    stmt = select(ArtifactRow).where(ArtifactRow.plan_id == plan_id, ArtifactRow.kind == KIND)
    row = session.scalars(stmt.order_by(ArtifactRow.id.desc())).first()
    return None if row is None else refinement_out(row)


def refine_inputs(session: Session, *, settings: Settings, plan: PlanRow) -> dict[str, Any]:
    """The plan document, model spec and data split a refinement job needs."""
    from profiling.validate import DataSpec
    from searchsvc.catalog import repository as models
    from searchsvc.catalog.service import spec_of
    from searchsvc.profiles import repository as profiles

    model = models.get(session, plan.model_id)
    if model is None:
        raise NotFound(f"model {plan.model_id} of plan {plan.id} was deleted")
    profile = profiles.get(session, plan.profile_id) if plan.profile_id else None
    return {
        "plan": dict(plan.doc or {}),
        "spec": spec_of(model),
        "data": DataSpec(
            source=profile.source if profile else settings.calibration_source,
            images=profile.images if profile else settings.default_images,
            seed=profile.seed if profile else 0,
        ),
    }

"""Validations of plans: queue them, store their results and packed files, serve them, gate them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from searchsvc.catalog import repository as models
from searchsvc.catalog.service import spec_of
from searchsvc.db.tables import ArtifactRow, JobRow, PlanRow, ValidationRow
from searchsvc.errors import BadInput, Conflict, NotFound, Unavailable
from searchsvc.jobs import repository as jobs
from searchsvc.plans import repository as plans
from searchsvc.plans.schemas import Budget
from searchsvc.plans.validation import VALIDATE, request_validation
from searchsvc.profiles import repository as profiles
from searchsvc.settings import Settings
from searchsvc.validation import repository
from searchsvc.validation.gate import GateLimits, gate_checks
from searchsvc.validation.schemas import ArtifactOut, CheckOut, GateOut, GateRequest, ValidationOut

__all__ = [
    "VALIDATE",
    "DONE",
    "artifact_key",
    "artifact_path",
    "validation_out",
    "fidelity_of",
    "request_of",
    "plan_validation",
    "queue_validation",
    "validation_inputs",
    "start",
    "store_result",
    "mark_error",
    "artifact_file",
    "gate",
]

DONE = ("passed", "failed")  # a finished validation; ``error`` ones may be asked for again
SOLVED = ("optimal", "feasible")


def artifact_key(plan_id: int) -> str:
    """The artifact row key of a plan's packed file."""
    return f"plan:{plan_id}:packed"


def artifact_path(settings: Settings, plan_id: int) -> Path:
    """Where a plan's packed file is written."""
    return settings.artifacts / "plans" / f"plan-{plan_id}.safetensors"


def _artifact(session: Session, plan_id: int) -> ArtifactRow | None:
    return repository.artifact_by_key(session, artifact_key(plan_id))


def request_of(row: ValidationRow) -> dict[str, Any]:
    """What the validation was asked to measure (``{"video": {...} | None}``)."""
    return dict((row.metrics or {}).get("request") or {})


def fidelity_of(doc: dict[str, Any]) -> dict[str, Any]:
    """Image fidelity (mask IoU, KL against float) next to video J&F (against float and GT)."""
    m = doc.get("metrics") or {}
    out: dict[str, Any] = {"image": {"iou": m.get("iou"), "kl": m.get("kl")}, "video": None}
    ort = doc.get("runtime")
    if isinstance(ort, dict):  # metrics are ONNX Runtime's; fake-quant's beside them
        fq, diff = ort.get("fake_quant") or {}, ort.get("difference") or {}
        out["runtime"] = {
            "name": ort.get("name"),
            "fake_quant_iou": fq.get("iou"),
            "iou_difference": diff.get("iou"),
            "iou_vs_fake_quant": (ort.get("vs_fake_quant") or {}).get("iou"),
            "file_bytes": (ort.get("export") or {}).get("file_bytes"),
        }
    video = doc.get("video")
    if isinstance(video, dict):
        summary = video.get("summary") or {}
        out["video"] = {
            "jf_vs_float": summary.get("vs_float"),
            "jf_vs_gt": summary.get("vs_gt"),
            "float_jf_vs_gt": summary.get("float_vs_gt"),
            "policy": video.get("policy"),
            "clips": len(video.get("clips") or []),
            "memory": video.get("memory"),
        }
    return out


def validation_out(session: Session, row: ValidationRow) -> ValidationOut:
    """The validation resource, with its document once finished and its download link."""
    doc = row.metrics or {}
    finished = row.status in DONE
    art = _artifact(session, row.plan_id) if finished else None
    return ValidationOut(
        id=row.id,
        plan_id=row.plan_id,
        status=row.status,
        passed=bool(doc.get("passed")) if finished else None,
        reasons=list(doc.get("reasons", [])) if finished else [],
        error=doc.get("error") if row.status == "error" else None,
        job_id=row.job_id,
        validation=doc if finished else None,
        fidelity=fidelity_of(doc) if finished else None,
        request=request_of(row),
        artifact=None
        if art is None
        else ArtifactOut(
            url=f"/v1/plans/{row.plan_id}/artifact", file_bytes=art.size_bytes, sha256=art.sha256
        ),
        created_at=row.created_at,
    )


def plan_validation(session: Session, *, plan_id: int) -> dict[str, Any] | None:
    """The newest validation of a plan as JSON (what ``GET /v1/plans/{id}`` embeds)."""
    row = repository.latest_for_plan(session, plan_id)
    return None if row is None else validation_out(session, row).model_dump(mode="json")


def _plan(session: Session, plan_id: int) -> PlanRow:
    plan = plans.get(session, plan_id)
    if plan is None:
        raise NotFound(f"plan {plan_id} does not exist")
    return plan


def _covers(session: Session, row: ValidationRow, request: dict[str, Any] | None) -> bool:
    """Whether ``row`` measures what ``request`` asks (a video request needs the same video, an
    ONNX Runtime one a validation in ONNX Runtime) and the plan as it stands (a finished LSC
    refinement must have been measured)."""
    wanted = (request or {}).get("video")
    if wanted and request_of(row).get("video") != wanted:
        return False
    runtime = (request or {}).get("runtime")
    if runtime and request_of(row).get("runtime") != runtime:
        return False
    clipping = refined_clipping(session, plan_id=row.plan_id)
    if clipping is None or row.status in ("pending", "running"):
        return True
    return ((row.metrics or {}).get("refinement") or {}).get("clipping") == clipping.name


def queue_validation(
    session: Session, *, settings: Settings, plan_id: int, request: dict[str, Any] | None = None
) -> tuple[ValidationRow, JobRow | None]:
    """The plan's current validation when it covers ``request``, or a newly queued one (with its
    job): asking for video fidelity after an image-only validation, or validating after an LSC
    refinement finished, validates again."""
    plan = _plan(session, plan_id)
    if plan.status not in SOLVED:
        raise Conflict(f"plan {plan_id} is {plan.status}; only a solved plan can be validated")
    latest = repository.latest_for_plan(session, plan_id)
    if latest is not None and latest.status != "error" and _covers(session, latest, request):
        job = jobs.get(session, latest.job_id) if latest.job_id else None
        return latest, job
    if latest is not None and latest.status in ("pending", "running"):
        raise Conflict(f"plan {plan_id} is being validated (job {latest.job_id}); retry later")
    plan.validate = True
    job = request_validation(session, settings=settings, plan=plan, request=request)
    if job is None:
        raise Unavailable(f"plan {plan_id}: validation is {plan.validation_status}")
    row = repository.latest_for_plan(session, plan_id)
    assert row is not None
    return row, job


def validation_inputs(
    session: Session, *, settings: Settings, plan: PlanRow, request: dict[str, Any] | None = None
) -> dict[str, Any]:
    """What the validation job needs: the plan document, model spec, data split, budget, and
    the clips of a video validation (``video``: a ``VideoSpec`` or None)."""
    from profiling.validate import DataSpec, VideoSpec

    model = models.get(session, plan.model_id)
    if model is None:
        raise NotFound(f"model {plan.model_id} of plan {plan.id} was deleted")
    if plan.doc is None or plan.status not in SOLVED:
        raise BadInput(f"plan {plan.id} is {plan.status}; there is nothing to validate")
    profile = profiles.get(session, plan.profile_id) if plan.profile_id else None
    data = DataSpec(
        source=profile.source if profile else settings.calibration_source,
        images=profile.images if profile else settings.default_images,
        seed=profile.seed if profile else 0,
    )
    budget = Budget.model_validate(plan.budget).limits()["memory_bytes"]
    wanted = (request or {}).get("video")
    video = VideoSpec.from_dict(wanted) if wanted else None
    runtime = str((request or {}).get("runtime") or "pytorch")
    export_dir, exported = None, False
    if runtime == "onnxruntime":  # the plan's own export when it has one: what ships
        from searchsvc.exports.service import export_folder

        found = export_folder(session, plan_id=plan.id)
        exported = found is not None
        export_dir = found or settings.artifacts / "exports" / f"plan-{plan.id}-validation"
    return {
        "plan": plan.doc,
        "spec": spec_of(model),
        "data": data,
        "budget_bytes": budget,
        "video": video,
        "clipping": refined_clipping(session, plan_id=plan.id),
        "runtime": runtime,
        "export_dir": export_dir,
        "exported": exported,
    }


def refined_clipping(session: Session, *, plan_id: int) -> Path | None:
    """The learned-clipping sidecar of the plan's newest finished LSC refinement, if any."""
    from searchsvc.plans.refine import KIND

    stmt = select(ArtifactRow).where(ArtifactRow.plan_id == plan_id, ArtifactRow.kind == KIND)
    for row in session.scalars(stmt.order_by(ArtifactRow.id.desc())):
        if (row.doc or {}).get("status") == "done" and row.path and Path(row.path).exists():
            return Path(row.path)
    return None


def start(session: Session, *, validation_id: int) -> tuple[ValidationRow, PlanRow] | None:
    """Mark a validation running; None when it is already finished (the job ran before)."""
    row = repository.get(session, validation_id)
    if row is None:
        raise NotFound(f"validation {validation_id} was deleted")
    if row.status in DONE:
        return None
    plan = _plan(session, row.plan_id)
    row.status, plan.validation_status = "running", "running"
    return row, plan


def store_result(
    session: Session, *, validation_id: int, doc: dict[str, Any], path: Path, job_id: int | None
) -> ArtifactRow:
    """Record a finished validation and (re)register the plan's packed file."""
    row = repository.get(session, validation_id)
    if row is None:
        raise NotFound(f"validation {validation_id} was deleted")
    plan = _plan(session, row.plan_id)
    status = "passed" if doc["passed"] else "failed"
    doc = doc | {"request": request_of(row)}
    row.status, row.metrics, plan.validation_status = status, doc, status
    art = _artifact(session, plan.id)
    if art is None:
        art = ArtifactRow(kind="packed", key=artifact_key(plan.id), plan_id=plan.id)
        session.add(art)
    art.model_id, art.path, art.job_id = plan.model_id, str(path), job_id
    from profiling.shipped import sha256_file

    art.size_bytes, art.sha256 = path.stat().st_size, sha256_file(path)
    art.doc = {"measured_bytes": doc["size"]["measured_bytes"], "format": "bitbudget.artifact/v1"}
    session.flush()
    return art


def mark_error(session: Session, *, validation_id: int, error: str) -> None:
    """A validation whose job failed or was cancelled (it may be asked for again)."""
    row = repository.get(session, validation_id)
    if row is None or row.status in DONE:
        return
    row.status, row.metrics = "error", {"error": error, "request": request_of(row)}
    plan = plans.get(session, row.plan_id)
    if plan is not None:
        plan.validation_status = "cancelled" if error == "cancelled" else "error"


def artifact_file(session: Session, *, plan_id: int) -> tuple[Path, ArtifactRow]:
    """The packed file of a validated plan, or a message saying how to get one."""
    _plan(session, plan_id)
    art = _artifact(session, plan_id)
    if art is None or art.path is None:
        latest = repository.latest_for_plan(session, plan_id)
        if latest is not None and latest.status in ("pending", "running"):
            raise Conflict(f"plan {plan_id} is being validated (job {latest.job_id}); retry later")
        raise NotFound(
            f"plan {plan_id} has no packed artifact yet; POST /v1/plans/{plan_id}/validate"
        )
    path = Path(art.path)
    if not path.is_file():
        raise NotFound(f"plan {plan_id}: its artifact file is gone; validate the plan again")
    return path, art


def _exported_bytes(session: Session, *, plan_id: int) -> int | None:
    """The plan's newest finished export, its files as they lie on disk now (None: none)."""
    from profiling.shipped import export_files
    from searchsvc.exports.service import export_folder

    folder = export_folder(session, plan_id=plan_id)
    return None if folder is None else int(export_files(folder)["file_bytes"])


def gate(session: Session, *, body: GateRequest) -> GateOut:
    """Check a stored or given validation against the limits of ``body``."""
    limits = GateLimits(body.max_size_mb, body.min_iou, body.max_kl, body.max_file_mb)
    doc = body.validation
    file_bytes = None
    if body.plan_id is not None:
        _plan(session, body.plan_id)
        row = repository.latest_for_plan(session, body.plan_id)
        if row is None or row.status == "error":
            raise Conflict(
                f"plan {body.plan_id} has no validation; POST /v1/plans/{body.plan_id}/validate"
            )
        if row.status not in DONE:
            raise Conflict(f"plan {body.plan_id} is still being validated (job {row.job_id})")
        doc = row.metrics
        if body.max_file_mb is not None:
            file_bytes = _exported_bytes(session, plan_id=body.plan_id)
    assert doc is not None
    checks = gate_checks(doc, limits, file_bytes)
    return GateOut(
        passed=all(c.passed for c in checks),
        checks=[CheckOut(**c.to_dict()) for c in checks],
        plan_id=body.plan_id,
        random_weights=doc.get("random_weights"),
    )

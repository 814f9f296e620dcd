"""``plans.export``: export a solved plan to ONNX (two graphs + manifest), zip it (idempotent)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from searchsvc.db.tables import JobRow
from searchsvc.errors import BadInput, NotFound
from searchsvc.exports import service
from searchsvc.exports.service import EXPORT
from searchsvc.jobs.context import JobContext
from searchsvc.jobs.registry import register_task

__all__ = ["run_export_job"]


def _inputs(ctx: JobContext, plan_id: int, artifact_id: int) -> dict[str, Any] | None:
    """The plan document, model spec and calibration data; None when the export is done."""
    from searchsvc.plans.refine import refine_inputs

    with ctx.session() as session:
        row = session.get(service.ArtifactRow, artifact_id)
        plan = service.plans.get(session, plan_id)
        if row is None or plan is None:
            raise NotFound(f"plan {plan_id} or its export {artifact_id} was deleted")
        if (row.doc or {}).get("status") == "done":
            return None
        inputs = refine_inputs(session, settings=ctx.settings, plan=plan)
        inputs["plan"] = service.export_plan_doc(session, plan=plan)
        inputs["clipping"] = service.current_clipping(session, plan_id=plan_id)
        clipping = None if inputs["clipping"] is None else inputs["clipping"].name
        service.set_state(session, artifact_id, status="running", error=None, clipping=clipping)
    return inputs


def run_export_job(ctx: JobContext) -> dict[str, Any]:
    """Export the job's plan into its folder, zip it, record the manifest and the zip."""
    from profiling.export.bundle import export_plan
    from profiling.shipped import sha256_file
    from profiling.validate_ort import check_exported_weights

    plan_id, artifact_id = int(ctx.params["plan_id"]), int(ctx.params["artifact_id"])
    ids = {"plan_id": plan_id, "artifact_id": artifact_id}
    inputs = _inputs(ctx, plan_id, artifact_id)
    if inputs is None:
        return ids
    folder, zipped = service.export_paths(ctx.settings, plan_id, artifact_id)
    folder.parent.mkdir(parents=True, exist_ok=True)

    def progress(message: str, fraction: float) -> None:
        ctx.progress(min(0.05 + 0.85 * fraction, 0.9), message)
        ctx.raise_if_stopped()

    ctx.progress(0.02, "building the model and the calibration images")
    spec = inputs["spec"]
    calib, _ = inputs["data"].sets()
    checkpoint = Path(spec.checkpoint) if spec.checkpoint else None
    manifest = export_plan(
        inputs["plan"], model=spec.name, checkpoint=checkpoint, image_size=spec.size,
        out_dir=folder, calibration=calib, progress=progress, clipping=inputs["clipping"],
    )  # fmt: skip
    ctx.raise_if_stopped()
    try:
        check_exported_weights(manifest, inputs["plan"]["model"]["weights_hash"])
    except BadInput:
        shutil.rmtree(folder, ignore_errors=True)  # a whole export, but of other weights
        raise
    ctx.progress(0.92, "zipping the export")
    service.write_zip(folder, zipped)
    on_disk = sum(p.stat().st_size for p in folder.iterdir() if p.is_file())
    digest = sha256_file(zipped)
    with ctx.session() as session:
        row = service.set_state(
            session, artifact_id, status="done", manifest=manifest, folder=str(folder),
            file_bytes=on_disk,
        )  # fmt: skip
        if row is None:
            raise NotFound(f"export {artifact_id} of plan {plan_id} was deleted")
        row.path, row.size_bytes, row.sha256 = str(zipped), zipped.stat().st_size, digest
    return ids | {"file_bytes": on_disk}


def _on_fail(session: Session, job: JobRow, error: str) -> None:
    row = session.get(service.ArtifactRow, int(job.params["artifact_id"]))
    if row is not None and (row.doc or {}).get("status") != "done":
        status = "cancelled" if error == "cancelled" else "failed"
        service.set_state(session, row.id, status=status, error=error)


register_task(EXPORT, run_export_job, _on_fail)

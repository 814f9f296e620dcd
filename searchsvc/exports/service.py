"""ONNX exports of solved plans: queue them, run them, serve them.

Storage (no schema change): one ``artifacts`` row per export attempt, ``kind = "onnx_export"``,
``key = plan:<id>:onnx_export:<n>``. Its ``doc`` holds the state (``queued`` / ``running`` /
``done`` / ``failed`` / ``cancelled``), the error, and once done the export's manifest and the
folder the files were written to; ``path`` / ``size_bytes`` / ``sha256`` are those of the zip
that ``GET /v1/plans/{id}/exports/{eid}/download`` serves. ``GET /v1/plans/{id}`` embeds the
newest export as ``export``.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from searchsvc.catalog import repository as models
from searchsvc.db.tables import ArtifactRow, JobRow, ModelRow, PlanRow
from searchsvc.errors import Conflict, NotFound
from searchsvc.jobs import repository as jobs
from searchsvc.jobs.service import create_job
from searchsvc.plans import repository as plans
from searchsvc.settings import Settings

__all__ = [
    "EXPORT",
    "KIND",
    "export_paths",
    "export_plan_doc",
    "check_exportable",
    "request_export",
    "export_out",
    "plan_export",
    "list_exports",
    "get_export",
    "export_file",
    "export_folder",
    "current_clipping",
    "set_state",
    "write_zip",
]

EXPORT = "plans.export"
KIND = "onnx_export"
SOLVED = ("optimal", "feasible")
LIVE = ("queued", "running", "done")


def export_paths(settings: Settings, plan_id: int, export_id: int) -> tuple[Path, Path]:
    """(folder of the ONNX files, zip served for download) of one export."""
    base = settings.artifacts / "exports" / f"plan-{plan_id}-export-{export_id}"
    return base, base.with_name(base.name + ".zip")


def _solved(session: Session, plan_id: int) -> PlanRow:
    plan = plans.get(session, plan_id)
    if plan is None:
        raise NotFound(f"plan {plan_id} does not exist")
    if plan.status not in SOLVED or plan.doc is None:
        raise Conflict(f"plan {plan_id} is {plan.status}; only a solved plan can be exported")
    return plan


def _model(session: Session, plan: PlanRow, inventory: bool = False) -> ModelRow:
    model = (models.get_with_inventory if inventory else models.get)(session, plan.model_id)
    if model is None:
        raise NotFound(f"model {plan.model_id} of plan {plan.id} was deleted")
    return model


def export_plan_doc(session: Session, *, plan: PlanRow) -> dict[str, Any]:
    """The plan's ``bitbudget.plan/v1`` document with the model it is for (as GET shows it)."""
    from searchsvc.plans.service import model_spec_doc

    return {
        **dict(plan.doc or {}),
        "plan_id": plan.id,
        "model": model_spec_doc(_model(session, plan)),
    }


def check_exportable(session: Session, *, plan: PlanRow) -> None:
    """Refuse (422, one line naming the layer and the option to drop) a plan ONNX cannot express."""
    from profiling.export.bundle import check_expressible

    model = _model(session, plan, inventory=True)
    check_expressible(export_plan_doc(session, plan=plan), model.inventory)


def _rows(session: Session, plan_id: int) -> list[ArtifactRow]:
    stmt = select(ArtifactRow).where(ArtifactRow.plan_id == plan_id, ArtifactRow.kind == KIND)
    return list(session.scalars(stmt.order_by(ArtifactRow.id.desc())))


def current_clipping(session: Session, *, plan_id: int) -> Path | None:
    """The LSC sidecar an export of the plan carries now: its newest finished refinement's."""
    from searchsvc.validation.service import refined_clipping

    return refined_clipping(session, plan_id=plan_id)


def _clipping_name(clipping: Path | None) -> str | None:
    return None if clipping is None else clipping.name


def _usable(row: ArtifactRow, clipping: str | None) -> bool:
    """Made with the plan's current learned clipping (none, or its newest LSC refinement's), and
    queued or running, or done with its zip still on disk."""
    if (row.doc or {}).get("clipping") != clipping:
        return False
    status = (row.doc or {}).get("status")
    if status == "done":
        return bool(row.path) and Path(str(row.path)).is_file()
    return status in LIVE


def request_export(
    session: Session, *, settings: Settings, plan_id: int
) -> tuple[ArtifactRow, JobRow | None]:
    """The plan's export (queued, running or done), or a newly queued one with its job."""
    plan = _solved(session, plan_id)
    rows = _rows(session, plan_id)
    clipping = _clipping_name(current_clipping(session, plan_id=plan_id))
    for row in rows:
        if _usable(row, clipping):
            return row, jobs.get(session, row.job_id) if row.job_id else None
    check_exportable(session, plan=plan)
    count = session.scalar(
        select(func.count())
        .select_from(ArtifactRow)
        .where(ArtifactRow.plan_id == plan_id, ArtifactRow.kind == KIND)
    )
    row = ArtifactRow(
        kind=KIND, key=f"plan:{plan_id}:{KIND}:{int(count or 0) + 1}", model_id=plan.model_id,
        plan_id=plan_id, doc={"status": "queued", "clipping": clipping},
    )  # fmt: skip
    session.add(row)
    session.flush()
    params = {"plan_id": plan_id, "artifact_id": row.id}
    job = create_job(session, settings=settings, kind=EXPORT, params=params)
    row.job_id = job.id
    return row, job


def _summary(manifest: Mapping[str, Any]) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """(files, sizes) of a manifest, whatever shape its sections have."""
    files = manifest.get("files")
    sizes = manifest.get("sizes")
    return (
        dict(files) if isinstance(files, Mapping) else None,
        dict(sizes) if isinstance(sizes, Mapping) else None,
    )


def export_out(row: ArtifactRow) -> dict[str, Any]:
    """The export resource (``ExportOut`` as JSON)."""
    doc = dict(row.doc or {})
    done = doc.get("status") == "done"
    manifest = doc.get("manifest") if done else None
    files, sizes = _summary(manifest or {})
    plan_id = int(row.plan_id or 0)
    return {
        "id": row.id,
        "plan_id": plan_id,
        "status": doc.get("status"),
        "job_id": row.job_id,
        "error": doc.get("error"),
        "url": f"/v1/plans/{plan_id}/exports/{row.id}/download" if done else None,
        "clipping": doc.get("clipping"),
        "zip_bytes": row.size_bytes if done else None,
        "sha256": row.sha256 if done else None,
        "file_bytes": doc.get("file_bytes") if done else None,
        "files": files,
        "sizes": sizes,
        "manifest": manifest,
        "created_at": row.created_at,
    }


def plan_export(session: Session, *, plan_id: int) -> dict[str, Any] | None:
    """The plan's newest export without its manifest (what ``GET /v1/plans/{id}`` embeds)."""
    rows = _rows(session, plan_id)
    if not rows:
        return None
    out = export_out(rows[0])
    out.pop("manifest")
    out["created_at"] = out["created_at"].isoformat()
    return out


def list_exports(session: Session, *, plan_id: int) -> list[ArtifactRow]:
    """Every export of a plan, newest first (NotFound when the plan does not exist)."""
    if plans.get(session, plan_id) is None:
        raise NotFound(f"plan {plan_id} does not exist")
    return _rows(session, plan_id)


def get_export(session: Session, *, plan_id: int, export_id: int) -> ArtifactRow:
    """One export of a plan, or NotFound."""
    row = session.get(ArtifactRow, export_id)
    if row is None or row.kind != KIND or row.plan_id != plan_id:
        raise NotFound(f"plan {plan_id} has no export {export_id}")
    return row


def export_file(session: Session, *, plan_id: int, export_id: int) -> tuple[Path, ArtifactRow]:
    """The zip of a finished export, or a message saying why there is none."""
    row = get_export(session, plan_id=plan_id, export_id=export_id)
    status = (row.doc or {}).get("status")
    if status in ("queued", "running"):
        raise Conflict(f"plan {plan_id}: export {export_id} is {status} (job {row.job_id})")
    if status != "done" or not row.path:
        raise NotFound(
            f"plan {plan_id}: export {export_id} is {status}; POST /v1/plans/{plan_id}/exports"
        )
    path = Path(row.path)
    if not path.is_file():
        raise NotFound(f"plan {plan_id}: export {export_id}'s file is gone; export the plan again")
    return path, row


def export_folder(session: Session, *, plan_id: int) -> Path | None:
    """The folder of the plan's newest finished export whose files are still there and that
    carries the plan's current learned clipping, if any."""
    clipping = _clipping_name(current_clipping(session, plan_id=plan_id))
    for row in _rows(session, plan_id):
        doc = row.doc or {}
        folder = doc.get("folder")
        done = doc.get("status") == "done" and doc.get("clipping") == clipping
        if done and folder and Path(folder).is_dir():
            return Path(folder)
    return None


def set_state(session: Session, artifact_id: int, **changes: Any) -> ArtifactRow | None:
    """Merge ``changes`` into an export's ``doc`` (a new dict, so the JSON column is written)."""
    row = session.get(ArtifactRow, artifact_id)
    if row is not None:
        row.doc = dict(row.doc or {}) | changes
    return row


def write_zip(folder: Path, target: Path) -> None:
    """Zip the files of ``folder`` (flat) into ``target`` atomically (temp file, then rename)."""
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as zf:
            for path in sorted(folder.iterdir()):
                if path.is_file():
                    zf.write(path, arcname=path.name)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)

"""/v1/plans/{id}/exports: export a solved plan to ONNX, follow it, download the zip."""

from __future__ import annotations

from fastapi import APIRouter, status
from fastapi.responses import FileResponse, JSONResponse

from searchsvc.bounds import IdPath
from searchsvc.deps import GuardedRoute, ReadSessionDep, SessionDep, SettingsDep, WriterDep
from searchsvc.exports import service
from searchsvc.exports.schemas import ExportAccepted, ExportOut, ExportPage
from searchsvc.jobs.service import job_out
from searchsvc.openapi import errors

router = APIRouter(prefix="/v1/plans", tags=["exports"], route_class=GuardedRoute)


@router.post(
    "/{plan_id}/exports",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=ExportAccepted,
    responses={
        200: {"model": ExportAccepted, "description": "exported before (its zip is there)"},
        **errors(409, 422, t409="the plan is not solved", t422="ONNX cannot express the plan"),
    },
)
def create_export(
    plan_id: IdPath, session: SessionDep, settings: SettingsDep, _: WriterDep
) -> JSONResponse:
    """202 with the job that exports the plan (the same one while it runs); 200 once done."""
    row, job = service.request_export(session, settings=settings, plan_id=plan_id)
    session.flush()
    out = ExportAccepted(
        export=ExportOut(**service.export_out(row)),
        job=None if job is None else job_out(session, job),
    )
    done = (row.doc or {}).get("status") == "done"
    code = status.HTTP_200_OK if done else status.HTTP_202_ACCEPTED
    headers = {"Location": f"/v1/plans/{plan_id}/exports/{row.id}"}
    return JSONResponse(out.model_dump(mode="json"), status_code=code, headers=headers)


@router.get("/{plan_id}/exports", response_model=ExportPage)
def list_exports(plan_id: IdPath, session: ReadSessionDep) -> ExportPage:
    """The plan's exports, newest first."""
    rows = service.list_exports(session, plan_id=plan_id)
    return ExportPage(items=[ExportOut(**service.export_out(r)) for r in rows], total=len(rows))


@router.get("/{plan_id}/exports/{export_id}", response_model=ExportOut)
def get_export(plan_id: IdPath, export_id: IdPath, session: ReadSessionDep) -> ExportOut:
    """One export with its manifest once done."""
    return ExportOut(
        **service.export_out(service.get_export(session, plan_id=plan_id, export_id=export_id))
    )


@router.get(
    "/{plan_id}/exports/{export_id}/download",
    response_class=FileResponse,
    responses={
        200: {"content": {"application/zip": {}}},
        **errors(409, t409="the export is still running"),
    },
)
def download_export(plan_id: IdPath, export_id: IdPath, session: ReadSessionDep) -> FileResponse:
    """The export as a zip (image_encoder.onnx, mask_decoder.onnx, manifest.json)."""
    path, row = service.export_file(session, plan_id=plan_id, export_id=export_id)
    headers = {"X-Bitbudget-Sha256": row.sha256 or ""}
    on_disk = (row.doc or {}).get("file_bytes")
    if on_disk is not None:
        headers["X-Bitbudget-File-Bytes"] = str(on_disk)
    name = f"plan-{plan_id}-export-{export_id}.zip"
    return FileResponse(path, media_type="application/zip", filename=name, headers=headers)

"""/v1/models: register, list and read models."""

from __future__ import annotations

from fastapi import APIRouter, status
from fastapi.responses import JSONResponse

from searchsvc.bounds import IdPath, Limit, Offset
from searchsvc.catalog import service
from searchsvc.catalog.repository import page
from searchsvc.catalog.schemas import ModelCreate, ModelOut, ModelPage, ModelSpecOut
from searchsvc.deps import GuardedRoute, ReadSessionDep, SessionDep, SettingsDep, WriterDep
from searchsvc.openapi import errors
from searchsvc.responses import json_response

router = APIRouter(prefix="/v1/models", tags=["models"], route_class=GuardedRoute)
specs_router = APIRouter(prefix="/v1/model-specs", tags=["models"])


@specs_router.get("", response_model=list[ModelSpecOut])
async def list_model_specs() -> list[ModelSpecOut]:
    """The model names one can register, with their image sizes (``bitbudget models``)."""
    from profiling.models import list_specs

    return [
        ModelSpecOut(
            name=info.name,
            family=info.family,
            default_image_size=info.default_image_size,
            image_sizes=list(info.image_sizes),
            description=info.description,
        )
        for info in list_specs()
    ]


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=ModelOut,
    responses={
        200: {"model": ModelOut, "description": "registered before"},
        **errors(403, t403="a checkpoint outside BITBUDGET_CHECKPOINT_DIRS"),
    },
)
def register_model(
    body: ModelCreate,
    read: ReadSessionDep,
    session: SessionDep,
    settings: SettingsDep,
    _: WriterDep,
) -> JSONResponse:
    """Register a model: built once (in this worker thread) for its inventory and weights hash.

    The build runs before the write transaction begins, so it never holds the database.
    """
    spec = service.resolve_spec(
        settings,
        name=body.name,
        image_size=body.image_size,
        checkpoint=body.checkpoint,
        seed=body.seed,
    )
    row, created = service.find_registered(read, spec=spec), False
    if row is None:
        row, created = service.save_model(session, row=service.build_row(spec))
        session.flush()
    code = status.HTTP_201_CREATED if created else status.HTTP_200_OK
    headers = {"Location": f"/v1/models/{row.id}"}
    return json_response(ModelOut.model_validate(row), code, headers)


@router.get("", response_model=ModelPage)
def list_models(
    session: ReadSessionDep,
    limit: Limit = 50,
    offset: Offset = 0,
) -> ModelPage:
    """Registered models, oldest first."""
    rows, total = page(session, limit, offset)
    items = [ModelOut.model_validate(r) for r in rows]
    return ModelPage(items=items, total=total, limit=limit, offset=offset)


@router.get("/{model_id}", response_model=ModelOut)
def get_model(model_id: IdPath, session: ReadSessionDep) -> ModelOut:
    """One model with its inventory summary (per-component counts, parameters, MACs)."""
    return ModelOut.model_validate(service.get_model(session, model_id=model_id))

"""Registering models: refuse checkpoints outside the allowed folders, build once, summarise."""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from searchsvc.catalog import repository
from searchsvc.db.tables import ModelRow
from searchsvc.errors import BadInput, Forbidden, NotFound
from searchsvc.settings import Settings

__all__ = [
    "register_model",
    "resolve_spec",
    "find_registered",
    "build_row",
    "save_model",
    "get_model",
    "checked_checkpoint",
    "summarize",
    "spec_of",
]

_KINDS = ("linear", "conv2d", "conv_transpose2d", "matmul_qk", "matmul_sv")


def checked_checkpoint(settings: Settings, checkpoint: str | None) -> str | None:
    """The resolved checkpoint path, refused unless it lies in an allowed folder."""
    if checkpoint is None:
        return None
    from profiling.models.registry import check_checkpoint_path

    check_checkpoint_path(checkpoint)  # NUL bytes, over-long names: no file system call
    if not settings.checkpoint_dirs:
        raise Forbidden(
            "checkpoints are disabled on this server: set BITBUDGET_CHECKPOINT_DIRS to the "
            "folders checkpoints may be read from"
        )
    path = Path(checkpoint).expanduser().resolve()
    if not any(path.is_relative_to(folder) for folder in settings.checkpoint_dirs):
        allowed = ", ".join(str(d) for d in settings.checkpoint_dirs)
        raise Forbidden(f"checkpoint {checkpoint} is outside the allowed folders ({allowed})")
    if not path.is_file():
        raise BadInput(f"checkpoint {checkpoint} does not exist")
    return str(path)


def summarize(inventory: dict[str, Any]) -> dict[str, Any]:
    """Per-component layer counts by kind, parameters and MACs, plus totals."""
    rows: dict[str, dict[str, int]] = defaultdict(
        lambda: dict.fromkeys((*_KINDS, "params", "macs"), 0)
    )
    for layer in inventory["layers"]:
        row = rows[layer["component"]]
        row[layer["kind"]] = row.get(layer["kind"], 0) + 1
        row["params"] += int(layer["params"])
        row["macs"] += int(layer["macs"])
    total = {key: sum(r.get(key, 0) for r in rows.values()) for key in (*_KINDS, "params", "macs")}
    return {
        "components": {name: dict(row) for name, row in rows.items()},
        "total": total,
        "layers": len(inventory["layers"]),
        "pairs": len(inventory["pairs"]),
        "total_params": inventory["total_params"],
        "weight_numel": sum(int(x.get("weight_numel") or 0) for x in inventory["layers"]),
        "random_weights": inventory["random_weights"],
        "resized_from": inventory.get("resized_from"),
    }


def _spec_key(name: str, size: int, checkpoint: str | None, seed: int, weights: str) -> str:
    doc = [name, size, checkpoint, seed, weights]
    return hashlib.sha256(json.dumps(doc).encode()).hexdigest()


def spec_of(model: ModelRow) -> Any:
    """The ``profiling.models.ModelSpec`` of a registered model."""
    from profiling.models import ModelSpec

    return ModelSpec(model.name, model.image_size, model.checkpoint, model.seed)


def resolve_spec(
    settings: Settings, *, name: str, image_size: int | None, checkpoint: str | None, seed: int
) -> Any:
    """A validated ``ModelSpec`` (unknown names, sizes and checkpoint folders are refused)."""
    from profiling.models import ModelSpec

    path = checked_checkpoint(settings, checkpoint)
    return ModelSpec(name, image_size=image_size, checkpoint=path, seed=seed)


def find_registered(session: Session, *, spec: Any) -> ModelRow | None:
    """The row of a random-weights spec, found without building (its weights follow the seed)."""
    if spec.checkpoint is not None:
        return None
    return repository.find_random(session, spec.name, spec.size, spec.seed)


def build_row(spec: Any) -> ModelRow:
    """Build the model once (slow, no database): weights hash, inventory and its summary."""
    from profiling.inventory import build_inventory
    from profiling.models import build_model

    loaded = build_model(spec)
    inventory = build_inventory(loaded).to_json()
    return ModelRow(
        spec_key=_spec_key(spec.name, spec.size, spec.checkpoint, spec.seed, loaded.weights_hash),
        name=spec.name,
        image_size=spec.size,
        checkpoint=spec.checkpoint,
        seed=spec.seed,
        weights_hash=loaded.weights_hash,
        random_weights=loaded.random_weights,
        num_params=loaded.num_params,
        summary=summarize(inventory),
        inventory=inventory,
    )


def save_model(session: Session, *, row: ModelRow) -> tuple[ModelRow, bool]:
    """Store a built model; an existing registration of the same weights wins (False)."""
    existing = repository.by_spec_key(session, row.spec_key)
    if existing is not None:
        return existing, False
    try:
        with session.begin_nested():
            session.add(row)
    except IntegrityError:  # registered concurrently by another request
        winner = repository.by_spec_key(session, row.spec_key)
        if winner is None:
            raise
        return winner, False
    return row, True


def register_model(
    session: Session,
    *,
    settings: Settings,
    name: str,
    image_size: int | None,
    checkpoint: str | None,
    seed: int,
) -> tuple[ModelRow, bool]:
    """The registered model for this spec (building it once); True when newly created."""
    spec = resolve_spec(
        settings, name=name, image_size=image_size, checkpoint=checkpoint, seed=seed
    )
    existing = find_registered(session, spec=spec)
    if existing is not None:
        return existing, False
    return save_model(session, row=build_row(spec))


def get_model(session: Session, *, model_id: int, inventory: bool = False) -> ModelRow:
    """A registered model, or NotFound."""
    get = repository.get_with_inventory if inventory else repository.get
    row = get(session, model_id)
    if row is None:
        raise NotFound(f"model {model_id} is not registered; POST /v1/models registers one")
    return row

"""Load official-format checkpoints safely (``weights_only=True``) and name every mismatch."""

from __future__ import annotations

import hashlib
import pickle
import zipfile
from pathlib import Path

import torch

from profiling.errors import BadCheckpoint

__all__ = ["read_state_dict", "load_into", "state_dict_hash", "save_checkpoint"]


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a checkpoint: ``{"model": state_dict}`` (SAM2) or a bare state dict (SAM)."""
    path = Path(path)
    if not path.is_file():
        raise BadCheckpoint(f"checkpoint {str(path)!r} does not exist or is not a file")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise BadCheckpoint(
            f"checkpoint {path.name!r} cannot be read as plain tensors (weights_only=True): "
            f"{first[:200]}"
        ) from None
    state = obj.get("model", obj) if isinstance(obj, dict) else obj
    if not isinstance(state, dict) or not state:
        raise BadCheckpoint(
            f"checkpoint {path.name!r} holds no state dict (expected a dict of tensors, "
            'or {"model": dict of tensors})'
        )
    bad = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise BadCheckpoint(
            f"checkpoint {path.name!r}: entries that are not tensors: "
            f"{', '.join(map(str, bad[:5]))}"
        )
    return state


def load_into(model: torch.nn.Module, state: dict[str, torch.Tensor], label: str) -> None:
    """Load strictly; missing, unexpected or mis-shaped keys give one message naming them."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [k for k in own if k in state and tuple(own[k].shape) != tuple(state[k].shape)]
    problems = []
    if missing:
        problems.append(f"missing keys: {_names(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {_names(unexpected)}")
    if shapes:
        detail = ", ".join(
            f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in shapes[:3]
        )
        problems.append(f"shape mismatch: {detail}")
    if problems:
        raise BadCheckpoint(
            f"checkpoint {label!r} does not match the architecture; " + "; ".join(problems)
        )
    model.load_state_dict(state, strict=True)


def _names(keys: list[str]) -> str:
    more = f" (+{len(keys) - 5} more)" if len(keys) > 5 else ""
    return ", ".join(keys[:5]) + more


def state_dict_hash(model: torch.nn.Module) -> str:
    """A content hash of every parameter and buffer, in name order."""
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


def save_checkpoint(model: torch.nn.Module, path: str | Path) -> None:
    """Write the official format: ``{"model": state_dict}``."""
    torch.save({"model": model.state_dict()}, Path(path))

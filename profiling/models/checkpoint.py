"""Load official-format checkpoints safely (``weights_only=True``) and name every mismatch."""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path
from typing import Any

import torch

from profiling.errors import BadCheckpoint
from profiling.models.registry import check_checkpoint_path
from profiling.models.resize import fit_sizes

__all__ = [
    "read_state_dict",
    "load_into",
    "state_dict_hash",
    "save_checkpoint",
]


def _reason(exc: BaseException) -> str:
    """The useful line of a load error (torch's weights-only message buries it)."""
    text = str(exc).strip()
    if "WeightsUnpickler error:" in text:
        text = text.split("WeightsUnpickler error:", 1)[1].strip()
    first = text.splitlines()[0].strip() if text else ""
    kind, module = type(exc).__name__, type(exc).__module__.lstrip("_")
    label = kind if module == "builtins" else f"{module}.{kind}"
    return f"{label}: {first[:200]}" if first else label


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a checkpoint: ``{"model": state_dict}`` (SAM2) or a bare state dict (SAM).

    Any failure to read the file is a ``BadCheckpoint``: torch's weights-only unpickler raises
    whatever the bytes lead it to (``UnpicklingError``, ``KeyError``, ``IndexError``,
    ``struct.error``, ...), and a file of random bytes must give one line, not a traceback."""
    check_checkpoint_path(str(path))
    path = Path(path)
    if not path.is_file():
        raise BadCheckpoint(f"checkpoint {str(path)!r} does not exist or is not a file")
    try:
        with warnings.catch_warnings():  # e.g. "Detected pickle protocol 105": not for users
            warnings.simplefilter("ignore")
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - every way a foreign file can fail to load
        raise BadCheckpoint(
            f"checkpoint {path.name!r} cannot be read as plain tensors (weights_only=True): "
            f"{_reason(exc)}"
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


def load_into(
    model: torch.nn.Module, state: dict[str, torch.Tensor], label: str, image_size: int = 0
) -> dict[str, Any] | None:
    """Load strictly; missing, unexpected or mis-shaped keys give one message naming them.

    Position embeddings saved at another image size are interpolated first (``fit_sizes``);
    returns the note saying so (``resized_from``), or ``None`` when nothing was resized."""
    own = model.state_dict()
    state, resized = fit_sizes(own, state, image_size)
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
    return resized.to_json(image_size)


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

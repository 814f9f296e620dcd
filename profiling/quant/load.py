"""Load a packed artifact back into a model equal (to float tolerance) to ``apply_plan``'s output.

The loader builds the architecture (from a ``ModelSpec``, a ``LoadedModel`` or a module, or from
the model name and image size in the metadata), inserts the plan's quantizers with ``prepare``,
then fills every state-dict entry from the file: weights are unpacked and dequantized with their
stored scales and zero-points, activation quantizers get their stored qparams.
"""

from __future__ import annotations

import copy
import json
import os
from typing import Any

import torch
from safetensors import safe_open
from torch import Tensor, nn

from profiling.errors import BadInput
from profiling.models import LoadedModel, ModelSpec, build_model
from profiling.quant.bitpack import unpack_bits
from profiling.quant.modules import ActQuantizer, LogQuantizer
from profiling.quant.pack import FORMAT
from profiling.quant.plan import plan_from_json
from profiling.quant.prepare import prepare
from profiling.quant.primitives import dequantize, expand_qparams
from profiling.quant.spec import granularity_from_dict

__all__ = ["read_metadata", "load_artifact"]


def read_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The artifact's metadata with its JSON fields decoded."""
    with safe_open(str(path), framework="pt") as fh:
        meta = dict(fh.metadata() or {})
    if meta.get("format") != FORMAT:
        raise BadInput(f"{path}: format: not a {FORMAT} file")
    for key in ("plan", "model", "weights", "activations"):
        meta[key] = json.loads(meta[key])
    if "refinement" in meta:  # an LSC-refined artifact
        meta["refinement"] = json.loads(meta["refinement"])
    return meta


def _module(model: ModelSpec | LoadedModel | nn.Module | None, meta: dict[str, Any]) -> nn.Module:
    if isinstance(model, nn.Module):
        return copy.deepcopy(model)
    if isinstance(model, LoadedModel):
        return copy.deepcopy(model.module)
    if model is None:
        info = meta["model"]
        model = ModelSpec(info["name"], image_size=info.get("image_size"))
    return build_model(model).module


def _weight(fh: Any, name: str, info: dict[str, Any]) -> tuple[Tensor, Tensor, Tensor]:
    shape, bits = info["shape"], info["bits"]
    numel = int(torch.tensor(shape).prod())
    ints = unpack_bits(fh.get_tensor(f"{name}.weight.packed").numpy(), bits, numel)
    q = torch.from_numpy(ints.astype("float32")).reshape(shape)
    if info["symmetric"]:
        q = q - 2 ** (bits - 1)
    scale = fh.get_tensor(f"{name}.weight.scale").float()
    zp_key = f"{name}.weight.zero_point"
    zp = fh.get_tensor(zp_key).float() if zp_key in set(fh.keys()) else torch.zeros_like(scale)
    gran = granularity_from_dict(info["granularity"])
    w = dequantize(q, expand_qparams(scale, q.shape, gran), expand_qparams(zp, q.shape, gran))
    return w, scale, zp


def _state(fh: Any, model: nn.Module, meta: dict[str, Any]) -> dict[str, Tensor]:
    state: dict[str, Tensor] = {}
    stored = set(fh.keys())
    for name, info in meta["weights"].items():
        w, scale, zp = _weight(fh, name, info)
        state |= {f"{name}.weight": w, f"{name}.weight_scale": scale}
        state[f"{name}.weight_zero_point"] = zp
    for name in meta["activations"]:
        state[f"{name}.scale"] = fh.get_tensor(f"{name}.scale").float().reshape(())
        zp_key = f"{name}.zero_point"
        has_zp = zp_key in stored
        state[zp_key] = fh.get_tensor(zp_key).float().reshape(()) if has_zp else torch.zeros(())
    for key, ref in model.state_dict().items():
        if key not in state:
            state[key] = fh.get_tensor(key).to(ref.dtype)
    return state


def load_artifact(
    path: str | os.PathLike[str], model: ModelSpec | LoadedModel | nn.Module | None = None
) -> nn.Module:
    """Rebuild the quantized model stored at ``path`` on the architecture of ``model``."""
    meta = read_metadata(path)
    plan = plan_from_json(meta["plan"])
    module = _module(model, meta).eval()
    prepare(module, plan)
    with safe_open(str(path), framework="pt") as fh:
        module.load_state_dict(_state(fh, module, meta), strict=True)
    named = dict(module.named_modules())
    for name, info in meta["activations"].items():
        quant = named[name]
        assert isinstance(quant, ActQuantizer)
        if isinstance(quant, LogQuantizer):
            quant.tau = int(info["tau"])
        quant.enabled = bool(info["calibrated"])
    return module

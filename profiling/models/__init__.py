"""The model zoo: build any registered SAM2.1 / SAM spec with seeded or checkpoint weights."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from profiling.models.checkpoint import load_into, read_state_dict, state_dict_hash
from profiling.models.registry import REGISTRY, FamilyInfo, ModelSpec, get_spec, list_specs

__all__ = [
    "REGISTRY",
    "FamilyInfo",
    "ModelSpec",
    "LoadedModel",
    "build_model",
    "get_spec",
    "list_specs",
]


@dataclass
class LoadedModel:
    """A built model with what downstream results must report about it."""

    spec: ModelSpec
    module: torch.nn.Module
    weights_hash: str
    # set when the checkpoint was saved at another image size and its position embeddings
    # were interpolated (``profiling.models.resize``); every output that reports the weights
    # carries it
    resized_from: dict[str, Any] | None = None

    @property
    def family(self) -> str:
        return self.spec.info.family

    @property
    def random_weights(self) -> bool:
        return self.spec.random_weights

    @property
    def num_params(self) -> int:
        return sum(p.numel() for p in self.module.parameters())


def _instantiate(info: FamilyInfo, image_size: int) -> torch.nn.Module:
    if info.family == "sam2":
        from profiling.models.sam2_build import build_sam2_model

        micro = info.config == "micro"
        config = "configs/sam2.1/sam2.1_hiera_t.yaml" if micro else info.config
        return build_sam2_model(config, image_size, micro=micro)
    from profiling.models.sam_build import build_sam_model

    return build_sam_model(info.config, image_size)


def build_model(spec: ModelSpec, device: str | torch.device = "cpu") -> LoadedModel:
    """Build ``spec``: random weights from ``spec.seed``, or the user's checkpoint."""
    info = spec.info
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(spec.seed)
        module = _instantiate(info, spec.size)
    resized = None
    if spec.checkpoint is not None:
        state = read_state_dict(spec.checkpoint)
        resized = load_into(module, state, spec.checkpoint, spec.size)
    module.eval().to(device)
    return LoadedModel(spec, module, state_dict_hash(module), resized_from=resized)

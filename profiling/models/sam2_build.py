"""Build SAM2 / SAM2.1 models from the sam2 package's own Hydra configs, at any image size."""

from __future__ import annotations

from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

__all__ = ["build_sam2_model", "sam2_config", "MICRO_OVERRIDES"]

# sam2-micro: the same modules as SAM2.1-T, shrunk to about 2 M parameters.
MICRO_OVERRIDES: dict[str, Any] = {
    "image_encoder.trunk.embed_dim": 24,
    "image_encoder.trunk.num_heads": 1,
    "image_encoder.trunk.stages": [1, 2, 2, 1],
    "image_encoder.trunk.global_att_blocks": [4],
    "image_encoder.trunk.window_spec": [8, 4, 8, 4],
    "image_encoder.neck.d_model": 64,
    "image_encoder.neck.position_encoding.num_pos_feats": 64,
    "image_encoder.neck.backbone_channel_list": [192, 96, 48, 24],
    "memory_attention.d_model": 64,
    "memory_attention.num_layers": 2,
    "memory_attention.layer.d_model": 64,
    "memory_attention.layer.dim_feedforward": 256,
    "memory_attention.layer.self_attention.embedding_dim": 64,
    "memory_attention.layer.cross_attention.embedding_dim": 64,
    "memory_attention.layer.cross_attention.kv_in_dim": 32,
    "memory_encoder.out_dim": 32,
    "memory_encoder.in_dim": 64,
    "memory_encoder.position_encoding.num_pos_feats": 32,
    "memory_encoder.mask_downsampler.embed_dim": 64,
    "memory_encoder.fuser.layer.dim": 64,
}


def sam2_config(config_name: str, image_size: int, micro: bool = False) -> DictConfig:
    """The model config with the image size (and everything that follows from it) applied."""
    import sam2  # noqa: F401  (initialises Hydra's config module)
    from hydra import compose

    cfg = compose(config_name=config_name)
    model = cfg.model
    if micro:
        for key, value in MICRO_OVERRIDES.items():
            OmegaConf.update(model, key, value, force_add=True)
    feat = image_size // 16
    model.image_size = image_size
    for attn in ("self_attention", "cross_attention"):
        model.memory_attention.layer[attn].feat_sizes = [feat, feat]
    return cfg


def build_sam2_model(config_name: str, image_size: int, micro: bool = False) -> torch.nn.Module:
    """Instantiate SAM2Base (random initialisation; the caller seeds and loads weights)."""
    from hydra.utils import instantiate

    cfg = sam2_config(config_name, image_size, micro)
    model = instantiate(cfg.model, _recursive_=True)
    model.eval()
    return model

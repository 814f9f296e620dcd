"""Build SAM (v1) models from the segment-anything modules, at any image size."""

from __future__ import annotations

from functools import partial

import torch

__all__ = ["SAM_SIZES", "build_sam_model"]

# name -> (embed_dim, depth, heads, global_attn_indexes, prompt_dim, decoder_mlp, iou_hidden)
SAM_SIZES: dict[str, tuple[int, int, int, tuple[int, ...], int, int, int]] = {
    "b": (768, 12, 12, (2, 5, 8, 11), 256, 2048, 256),
    "l": (1024, 24, 16, (5, 11, 17, 23), 256, 2048, 256),
    "h": (1280, 32, 16, (7, 15, 23, 31), 256, 2048, 256),
    "micro": (64, 4, 2, (1, 3), 64, 256, 64),
}


def build_sam_model(size: str, image_size: int) -> torch.nn.Module:
    """Instantiate ``segment_anything.modeling.Sam`` (random init; the caller seeds and loads)."""
    from segment_anything.modeling import (
        ImageEncoderViT,
        MaskDecoder,
        PromptEncoder,
        Sam,
        TwoWayTransformer,
    )

    embed, depth, heads, global_idx, prompt_dim, mlp_dim, iou_hidden = SAM_SIZES[size]
    patch = 16
    window = 14 if size != "micro" else 4
    sam = Sam(
        image_encoder=ImageEncoderViT(
            depth=depth,
            embed_dim=embed,
            img_size=image_size,
            mlp_ratio=4,
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
            num_heads=heads,
            patch_size=patch,
            qkv_bias=True,
            use_rel_pos=True,
            global_attn_indexes=global_idx,
            window_size=window,
            out_chans=prompt_dim,
        ),
        prompt_encoder=PromptEncoder(
            embed_dim=prompt_dim,
            image_embedding_size=(image_size // patch, image_size // patch),
            input_image_size=(image_size, image_size),
            mask_in_chans=16,
        ),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(
                depth=2, embedding_dim=prompt_dim, mlp_dim=mlp_dim, num_heads=8
            ),
            transformer_dim=prompt_dim,
            iou_head_depth=3,
            iou_head_hidden_dim=iou_hidden,
        ),
        pixel_mean=[123.675, 116.28, 103.53],
        pixel_std=[58.395, 57.12, 57.375],
    )
    sam.eval()
    return sam

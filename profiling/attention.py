"""Attention matmul sites (q·kᵀ and softmax·v): found by module structure, costed by shape.

An attention module is any module with Linear children ``q_proj, k_proj, v_proj, out_proj``
(SAM / SAM2 decoder and memory attention, RoPE attention) or ``qkv, proj`` (Hiera and ViT
blocks). Each contributes two activation-only sites named ``<module>.qk_matmul`` and
``<module>.sv_matmul``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

__all__ = ["SITE_SUFFIXES", "attention_modules", "projections", "attention_macs"]

SITE_SUFFIXES = ("qk_matmul", "sv_matmul")
_SPLIT = ("q_proj", "k_proj", "v_proj", "out_proj")
_FUSED = ("qkv", "proj")


def _has_linear(module: nn.Module, names: tuple[str, ...]) -> bool:
    return all(isinstance(getattr(module, n, None), nn.Linear) for n in names)


def attention_modules(model: nn.Module) -> dict[str, nn.Module]:
    """Fully qualified name -> attention module, in registration order."""
    return {
        name: m
        for name, m in model.named_modules()
        if _has_linear(m, _SPLIT) or _has_linear(m, _FUSED)
    }


def projections(module: nn.Module) -> dict[str, list[str]]:
    """Child names feeding q, k, v and the output projection, by role."""
    if _has_linear(module, _SPLIT):
        return {"q": ["q_proj"], "k": ["k_proj"], "v": ["v_proj"], "out": ["out_proj"]}
    return {"q": ["qkv"], "k": ["qkv"], "v": ["qkv"], "out": ["proj"]}


def attention_macs(
    module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], output: torch.Tensor
) -> int:
    """MACs of one of the two matmuls (they are equal) for one call of ``module``."""
    if _has_linear(module, _SPLIT):
        q = kwargs.get("q", args[0] if args else None)
        k = kwargs.get("k", args[1] if len(args) > 1 else None)
        assert q is not None and k is not None
        b, nq, nk = q.shape[0], q.shape[1], k.shape[1]
        return int(b * nq * nk * module.internal_dim)
    x = kwargs.get("x", args[0] if args else None)
    assert x is not None
    b, h, w = x.shape[:3]
    nq = output.shape[1] * output.shape[2]
    return int(b * nq * h * w * output.shape[-1])

"""Attention matmul sites (q·kᵀ and softmax·v): found by module structure, costed by shape.

An attention module is any module with Linear children ``q_proj, k_proj, v_proj, out_proj``
(SAM / SAM2 decoder and memory attention, RoPE attention) or ``qkv, proj`` (Hiera and ViT
blocks). Each contributes two activation-only sites named ``<module>.qk_matmul`` and
``<module>.sv_matmul``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

__all__ = [
    "SITE_SUFFIXES",
    "SITE_KINDS",
    "SITE_BITS",
    "attention_modules",
    "projections",
    "attention_macs",
    "site_options",
    "check_site_option",
]

SITE_SUFFIXES = ("qk_matmul", "sv_matmul")
SITE_KINDS = ("matmul_qk", "matmul_sv")
SITE_BITS = (4, 6, 8, 16)  # activation widths a site option may name (16 = kept in float)
DEFAULT_SITE_OPTIONS = ("a8", "a6", "a4", "a8log", "a6log", "a4log")
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


def _option_parts(option: str) -> tuple[int, bool] | None:
    """``"a8"`` -> (8, False); ``"a4log"`` -> (4, True); anything else -> None."""
    text = option[1:] if isinstance(option, str) and option.startswith("a") else ""
    log = text.endswith("log")
    digits = text[: -len("log")] if log else text
    if not digits.isdigit() or int(digits) not in SITE_BITS or (log and int(digits) >= 16):
        return None
    return int(digits), log


def check_site_option(kind: str, option: str) -> tuple[int, bool]:
    """(bits, log2) of an attention site option; ``ValueError`` naming the options otherwise.

    Both operands are quantized at ``bits``; ``log`` (``matmul_sv`` only) puts PTQ4SAM's AGQ
    log2 quantizer on the post-softmax operand and a uniform one on v."""
    parts = _option_parts(option)
    if parts is None or (parts[1] and kind != "matmul_sv"):
        known = [o for o in (*DEFAULT_SITE_OPTIONS, "a16") if kind == "matmul_sv" or "log" not in o]
        raise ValueError(
            f"option {option!r} does not exist for a {kind} site; options: {', '.join(known)}"
        )
    return parts


def site_options(kind: str, wanted: Sequence[str] | None = None) -> list[str]:
    """The option ids a site of ``kind`` takes: ``wanted`` (checked) or the defaults; log2
    options are dropped for ``matmul_qk`` (they only exist for the post-softmax operand)."""
    if wanted is None:
        return [o for o in DEFAULT_SITE_OPTIONS if kind == "matmul_sv" or "log" not in o]
    out = []
    for option in wanted:
        bits, log = check_site_option("matmul_sv", option)
        if kind == "matmul_sv" or not log:
            out.append(option)
    return out

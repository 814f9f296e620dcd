"""Explicit attention forwards, so that both matmuls of an attention module can be quantized.

SAM2's modules call ``F.scaled_dot_product_attention``; when one of their sites is quantized the
module's forward is replaced by a copy of sam2's own forward (projections, head split, RoPE,
q-pooling exactly as sam2 does them) that computes ``softmax(q kᵀ / sqrt(d)) v`` explicitly with
the site quantizers ``<attn>.qk_matmul`` (q, k) and ``<attn>.sv_matmul`` (probs, v) at the matmul
inputs. SAM's modules already use explicit matmuls; theirs are rewritten the same way.
"""

from __future__ import annotations

import math
import types
from collections.abc import Callable
from typing import Any

from torch import Tensor, nn

from profiling.errors import BadInput

__all__ = ["explicit_attention", "install_explicit_forward", "supported"]


def explicit_attention(
    mod: Any,
    q: Tensor,
    k: Tensor,
    v: Tensor,
    rel_pos: Callable[[Tensor, Tensor], Tensor] | None = None,
) -> Tensor:
    """``softmax(q kᵀ / sqrt(d) [+ rel_pos]) v``, inputs via ``mod.qk_matmul`` / ``sv_matmul``."""
    q, k = mod.qk_matmul(q, k)
    attn = (q * q.shape[-1] ** -0.5) @ k.transpose(-2, -1)
    if rel_pos is not None:
        attn = rel_pos(attn, q)
    probs, v = mod.sv_matmul(attn.softmax(dim=-1), v)
    return probs @ v


def _split_forward(self: Any, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """sam2 ``Attention`` / segment_anything two-way ``Attention``."""
    q = self._separate_heads(self.q_proj(q), self.num_heads)
    k = self._separate_heads(self.k_proj(k), self.num_heads)
    v = self._separate_heads(self.v_proj(v), self.num_heads)
    return self.out_proj(self._recombine_heads(explicit_attention(self, q, k, v)))


def _rope_forward(
    self: Any, q: Tensor, k: Tensor, v: Tensor, num_k_exclude_rope: int = 0
) -> Tensor:
    """sam2 ``RoPEAttention``: RoPE on q and on all but the last ``num_k_exclude_rope`` keys."""
    from sam2.modeling.position_encoding import apply_rotary_enc

    q = self._separate_heads(self.q_proj(q), self.num_heads)
    k = self._separate_heads(self.k_proj(k), self.num_heads)
    v = self._separate_heads(self.v_proj(v), self.num_heads)
    w = h = math.sqrt(q.shape[-2])
    self.freqs_cis = self.freqs_cis.to(q.device)
    if self.freqs_cis.shape[0] != q.shape[-2]:
        self.freqs_cis = self.compute_cis(end_x=w, end_y=h).to(q.device)
    if q.shape[-2] != k.shape[-2]:
        assert self.rope_k_repeat
    num_k_rope = k.size(-2) - num_k_exclude_rope
    q, k[:, :, :num_k_rope] = apply_rotary_enc(
        q, k[:, :, :num_k_rope], freqs_cis=self.freqs_cis, repeat_freqs_k=self.rope_k_repeat
    )
    return self.out_proj(self._recombine_heads(explicit_attention(self, q, k, v)))


def _hiera_forward(self: Any, x: Tensor) -> Tensor:
    """sam2 Hiera ``MultiScaleAttention`` (fused qkv, optional q-pooling)."""
    from sam2.modeling.backbones.hieradet import do_pool

    b, h, w, _ = x.shape
    q, k, v = self.qkv(x).reshape(b, h * w, 3, self.num_heads, -1).unbind(2)
    if self.q_pool:
        q = do_pool(q.reshape(b, h, w, -1), self.q_pool)
        h, w = q.shape[1:3]
        q = q.reshape(b, h * w, self.num_heads, -1)
    out = explicit_attention(self, q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
    return self.proj(out.transpose(1, 2).reshape(b, h, w, -1))


def _vit_forward(self: Any, x: Tensor) -> Tensor:
    """segment_anything ViT ``Attention`` (fused qkv, decomposed relative positions)."""
    from segment_anything.modeling.image_encoder import add_decomposed_rel_pos

    b, h, w, _ = x.shape
    qkv = self.qkv(x).reshape(b, h * w, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
    q, k, v = qkv.reshape(3, b * self.num_heads, h * w, -1).unbind(0)

    def rel(attn: Tensor, qq: Tensor) -> Tensor:
        return add_decomposed_rel_pos(attn, qq, self.rel_pos_h, self.rel_pos_w, (h, w), (h, w))

    out = explicit_attention(self, q, k, v, rel if self.use_rel_pos else None)
    out = out.view(b, self.num_heads, h, w, -1).permute(0, 2, 3, 1, 4).reshape(b, h, w, -1)
    return self.proj(out)


def _sam2_forwards() -> dict[type, Callable[..., Tensor]]:
    from sam2.modeling.backbones.hieradet import MultiScaleAttention
    from sam2.modeling.sam.transformer import Attention, RoPEAttention

    return {
        Attention: _split_forward,
        RoPEAttention: _rope_forward,
        MultiScaleAttention: _hiera_forward,
    }


def _sam_forwards() -> dict[type, Callable[..., Tensor]]:
    from segment_anything.modeling.image_encoder import Attention as VitAttention
    from segment_anything.modeling.transformer import Attention as TwoWayAttention

    return {VitAttention: _vit_forward, TwoWayAttention: _split_forward}


def _forward_for(module: nn.Module) -> Callable[..., Tensor] | None:
    """The explicit forward for this module's class (importing only its own family)."""
    origin = type(module).__module__
    if origin.startswith("sam2."):
        return _sam2_forwards().get(type(module))
    if origin.startswith("segment_anything."):
        return _sam_forwards().get(type(module))
    return None


def supported(module: nn.Module) -> bool:
    """Whether this attention class has an explicit forward."""
    return _forward_for(module) is not None


def install_explicit_forward(name: str, module: nn.Module, qk: nn.Module, sv: nn.Module) -> None:
    """Attach the site quantizers as ``qk_matmul`` / ``sv_matmul`` and bind the explicit forward."""
    forward = _forward_for(module)
    if forward is None:
        raise BadInput(
            f"layer {name!r}: kind: matmul quantization is not supported for attention class "
            f"{type(module).__name__}"
        )
    module.qk_matmul = qk
    module.sv_matmul = sv
    module.forward = types.MethodType(forward, module)  # type: ignore[method-assign]

"""The two graphs of an export, the split SAM / SAM2 ONNX exporters use, traced by torch.onnx.

``image_encoder``: ``pixels (batch, 3, S, S)`` -> ``image_embed`` (+ ``high_res_feat0/1`` for
SAM2), exactly ``TaskAdapter.embed``. ``mask_decoder``: the embedding, the high-resolution
features and point prompts in model-input pixels (``point_coords (N, K, 2)``,
``point_labels (N, K)``: 1 foreground, 0 background, 2 / 3 box corners, -1 padding) ->
``masks (N, 1, S/4, S/4)`` low-resolution logits and ``iou_predictions (N, 1)``.
"""

from __future__ import annotations

import contextlib
import io
import types
import warnings
from collections.abc import Iterator
from typing import Any

import onnx
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from profiling.models import LoadedModel
from profiling.models.adapter import TaskAdapter

__all__ = ["EXPORT_OPSET", "ENCODER_INPUTS", "decoder_input_names", "export_graphs"]

EXPORT_OPSET = 20  # the TorchScript exporter's newest; qdq.OPSET is set on the result
ENCODER_INPUTS = ["pixels"]
_PROMPTS = ["point_coords", "point_labels"]


def decoder_input_names(family: str) -> list[str]:
    """The decoder graph's input names, in order."""
    feats = (
        ["image_embed", "high_res_feat0", "high_res_feat1"] if family == "sam2" else ["image_embed"]
    )
    return feats + _PROMPTS


class _Encoder(nn.Module):
    def __init__(self, loaded: LoadedModel) -> None:
        super().__init__()
        self.model = loaded.module
        self.adapter = TaskAdapter(loaded)

    def forward(self, pixels: Tensor) -> tuple[Tensor, ...]:
        feats = self.adapter.embed(pixels)
        return (feats["image_embed"], *feats.get("high_res_feats", []))  # type: ignore[misc]


class _Sam2Decoder(nn.Module):
    def __init__(self, loaded: LoadedModel) -> None:
        super().__init__()
        self.model = loaded.module

    def forward(
        self, embed: Tensor, hr0: Tensor, hr1: Tensor, coords: Tensor, labels: Tensor
    ) -> Any:
        m: Any = self.model
        sparse, dense = m.sam_prompt_encoder(points=(coords, labels), boxes=None, masks=None)
        logits, iou, _, _ = m.sam_mask_decoder(
            image_embeddings=embed,
            image_pe=m.sam_prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=False,
            repeat_image=True,
            high_res_features=[hr0, hr1],
        )
        return logits, iou


class _SamDecoder(nn.Module):
    """SAM (v1): the prompt encoder's point and box-corner embedding by label, as SAM's own
    ONNX exporter writes it (box corners arrive as points labelled 2 and 3)."""

    def __init__(self, loaded: LoadedModel) -> None:
        super().__init__()
        self.model = loaded.module

    def forward(self, embed: Tensor, coords: Tensor, labels: Tensor) -> Any:
        pe: Any = self.model.prompt_encoder
        emb = pe.pe_layer.forward_with_coords(coords + 0.5, pe.input_image_size)
        lab = labels.unsqueeze(-1)
        emb = emb * (lab != -1) + pe.not_a_point_embed.weight * (lab == -1)
        for i in range(4):
            emb = emb + pe.point_embeddings[i].weight * (lab == i)
        dense = pe.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(
            coords.shape[0], -1, *pe.image_embedding_size
        )
        decoder: Any = self.model.mask_decoder
        logits, iou = decoder(
            image_embeddings=embed,
            image_pe=pe.get_dense_pe(),
            sparse_prompt_embeddings=emb,
            dense_prompt_embeddings=dense,
            multimask_output=False,
        )
        return logits, iou


def _static_pos_embed(trunk: Any, hw: Any) -> Tensor:
    """Hiera's ``_get_pos_embed`` with the export's fixed feature size as plain integers.

    The original takes the size from the input's traced shape and builds the window tiling
    with ``Tensor.tile``, whose ONNX form is two ``If`` nodes: onnxruntime can then neither
    fold the bicubic ``Resize`` of the position embedding (a fifth of the encoder's time,
    recomputed on every image) nor, once the size is constant, merge the ``If`` branches'
    shapes without a warning. With integers and ``repeat`` the whole expression depends on
    initializers only, and onnxruntime folds it into one constant when the session is
    created: the same numbers, computed once, and no larger a file.
    """
    h, w = int(hw[0]), int(hw[1])
    pos = F.interpolate(trunk.pos_embed, size=(h, w), mode="bicubic")
    win = trunk.pos_embed_window
    wh, ww = int(win.shape[-2]), int(win.shape[-1])
    pos = pos + win.repeat(1, 1, h // wh, w // ww)
    return pos.permute(0, 2, 3, 1)


def _static_backbone_features(model: Any, backbone_out: Any) -> Any:
    """SAM2's ``_prepare_backbone_features`` with the feature sizes as plain integers.

    The original reads each level's size off the neck's sine position encodings; traced, that
    kept the whole encoding (Sin, Cos, Range, Tile: about 5 % of a w8a8 encoder) in the graph
    only for its shape. With integers the encodings feed nothing and the tracer drops them.
    """
    out, feats, pos, sizes = type(model)._prepare_backbone_features(model, backbone_out)
    return out, feats, pos, [(int(h), int(w)) for h, w in sizes]


@contextlib.contextmanager
def _export_forms(module: nn.Module) -> Iterator[None]:
    """Swap in export-friendly forms of SAM2's position embeddings while tracing: the same
    numbers, with the export's fixed image size as constants."""
    trunks: list[Any] = [
        m
        for m in module.modules()
        if hasattr(m, "_get_pos_embed") and hasattr(m, "pos_embed_window")
    ]
    models: list[Any] = [m for m in module.modules() if hasattr(m, "_prepare_backbone_features")]
    for trunk in trunks:
        trunk._get_pos_embed = types.MethodType(_static_pos_embed, trunk)
    for model in models:
        model._prepare_backbone_features = types.MethodType(_static_backbone_features, model)
    try:
        yield
    finally:
        for trunk in trunks:
            del trunk._get_pos_embed
        for model in models:
            del model._prepare_backbone_features


def _trace(
    module: nn.Module, args: tuple, names: list[str], outputs: list[str], axes: dict
) -> onnx.ModelProto:
    buf = io.BytesIO()
    # the tracer's notes on SAM / SAM2's Python shape checks: the shapes are fixed per export
    # (image size) and the batch axes stay symbolic, so they are not news to the user
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        torch.onnx.export(
            module,
            args,
            buf,  # type: ignore[arg-type]  # the TorchScript exporter writes to file objects
            dynamo=False,
            opset_version=EXPORT_OPSET,
            input_names=names,
            output_names=outputs,
            dynamic_axes=axes,
            do_constant_folding=True,
        )
    return onnx.load_from_string(buf.getvalue())


def export_graphs(loaded: LoadedModel) -> tuple[onnx.ModelProto, onnx.ModelProto]:
    """Trace ``loaded`` (float weights, export-mode quantizers) into the two graphs.

    Every first axis is symbolic: besides serving any batch, this keeps MatMul un-fused with
    its Add, the form onnxruntime's QDQ fusion turns into integer kernels.
    """
    size, family = loaded.spec.size, loaded.family
    pixels = torch.zeros(1, 3, size, size)
    enc = _Encoder(loaded).eval()
    feats = enc(pixels)
    enc_out = ["image_embed", "high_res_feat0", "high_res_feat1"][: len(feats)]
    with _export_forms(loaded.module):
        encoder = _trace(enc, (pixels,), ENCODER_INPUTS, enc_out, {"pixels": {0: "batch"}})
    coords = torch.tensor([[[size / 2, size / 2], [0.0, 0.0]]])
    labels = torch.tensor([[1, -1]], dtype=torch.int32 if family == "sam2" else torch.float32)
    dec: nn.Module = _Sam2Decoder(loaded) if family == "sam2" else _SamDecoder(loaded)
    names = decoder_input_names(family)
    axes = {n: {0: "batch"} for n in names[:-2]}
    axes |= {n: {0: "prompts", 1: "points"} for n in _PROMPTS}
    axes |= {"masks": {0: "prompts"}, "iou_predictions": {0: "prompts"}}
    decoder = _trace(
        dec.eval(), (*feats, coords, labels), names, ["masks", "iou_predictions"], axes
    )
    return encoder, decoder

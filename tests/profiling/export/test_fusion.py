"""ONNX Runtime's optimized graph of an export: which quantized layers run integer kernels.

Counted on the graph ORT itself writes (``SessionOptions.optimized_model_filepath``), never
assumed: a layer runs an integer kernel when its integer weight initializer feeds a fused node.
"""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest

from profiling.export.ort_model import session

INT8_KERNELS = {
    "MatMulIntegerToFloat",
    "QLinearMatMul",
    "MatMulInteger",
    "QGemm",
    "QLinearConv",
    "ConvInteger",
}
NBITS_KERNELS = {"MatMulNBits"}


def _kernel_inputs(folder: Path, tmp_path: Path, kernels: set[str]) -> set[str]:
    names: set[str] = set()
    for g in ("image_encoder", "mask_decoder"):
        opt = tmp_path / f"{g}.opt.onnx"
        session(folder / f"{g}.onnx", threads=1, optimized_path=opt)
        for node in onnx.load(str(opt)).graph.node:
            if node.op_type in kernels:
                names.update(node.input)
    return names


def _fused(inits: list[str], fed: set[str]) -> bool:
    """The layer's initializer (or ORT's repacked copy of it, e.g. ``<name>_T``) feeds a kernel."""
    return any(f == i or f.startswith(f"{i}_") for i in inits for f in fed)


def _layers(manifest: dict, kind: str, bits: int) -> dict[str, list[str]]:
    return {
        name: e["weight"]["initializers"]
        for name, e in manifest["layers"].items()
        if e["kind"] == kind
        and e["weight"]
        and e["weight"]["graph"]
        and e["weight"]["bits"] == bits
    }


def test_w8a8_linear_layers_fuse_into_int8_kernels(exports: dict, tmp_path: Path) -> None:
    folder, manifest, _ = exports["w8a8"]
    fed = _kernel_inputs(folder, tmp_path, INT8_KERNELS)
    linears = _layers(manifest, "linear", 8)
    assert len(linears) > 40
    unfused = [n for n, inits in linears.items() if not _fused(inits, fed)]
    assert unfused == []
    # signed weights: onnxruntime's x86 int8 GEMMs run UINT8 weights 3-4x slower
    assert {manifest["layers"][n]["weight"]["container"] for n in linears} == {"INT8"}
    # ORT fuses Conv only as DQ -> Conv -> Q: the two neck convs whose outputs go straight to
    # conv_s0 / conv_s1's input quantizers run QLinearConv, the others dequantize + float Conv
    convs = _layers(manifest, "conv2d", 8)
    fused = {n for n, inits in convs.items() if _fused(inits, fed)}
    assert fused == {"image_encoder.neck.convs.2.conv", "image_encoder.neck.convs.3.conv"}


def test_weight_only_4bit_linear_layers_fuse_into_matmul_nbits(
    exports: dict, tmp_path: Path
) -> None:
    folder, manifest, _ = exports["w4a16"]
    fed = _kernel_inputs(folder, tmp_path, NBITS_KERNELS)
    linears = _layers(manifest, "linear", 4)
    assert linears and all(_fused(inits, fed) for inits in linears.values())


def test_hiera_position_embedding_folds_at_session_creation(
    exports: dict, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """The trunk's bicubic position-embedding Resize depends on initializers only, so ORT
    folds it into a constant (no per-image Resize), and does so without shape warnings."""
    folder, _, _ = exports["w16a16"]
    graph = onnx.load(str(folder / "image_encoder.onnx")).graph
    assert not [n.name for n in graph.node if n.op_type == "If"]
    # the neck's sine position encodings fed only a shape: with integer sizes they are dropped
    assert not [n.name for n in graph.node if n.op_type in ("Sin", "Cos")]
    trunk_resizes = [n for n in graph.node if n.op_type == "Resize" and "/trunk/" in n.name]
    assert len(trunk_resizes) == 1
    import onnxruntime as ort

    capfd.readouterr()
    opt = tmp_path / "image_encoder.opt.onnx"
    so = ort.SessionOptions()
    so.log_severity_level = 2  # warnings: what a user's own session prints
    so.optimized_model_filepath = str(opt)
    ort.InferenceSession(str(folder / "image_encoder.onnx"), so, providers=["CPUExecutionProvider"])
    assert "MergeShapeInfo" not in capfd.readouterr().err
    folded = onnx.load(str(opt)).graph.node
    assert not [n.name for n in folded if n.op_type == "Resize" and "/trunk/" in n.name]
    assert not [n.name for n in folded if n.op_type == "Tile" and "pos_embed" in "".join(n.input)]

"""``layer_model``: one layer as an ONNX graph that checks, runs and equals its fake-quant layer."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import numpy_helper
from torch import nn

from profiling.export.errors import ExportError
from profiling.export.layer_onnx import layer_model
from profiling.export.manifest import INT_TYPES
from profiling.quant.modules import ActQuantizer
from profiling.quant.primitives import fake_quantize_weight, qrange, range_qparams
from profiling.quant.spec import parse_candidate


def _session(model: onnx.ModelProto, nbits_accuracy: str = "1") -> ort.InferenceSession:
    """accuracy level 1: MatMulNBits computes in float32 (the default, 4, quantizes x to int8)."""
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.log_severity_level = 3
    so.add_session_config_entry("session.qdq_matmulnbits_accuracy_level", nbits_accuracy)
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])


def _fake_quant(
    layer: nn.Linear | nn.Conv2d, option: str, x: torch.Tensor, lo: float, hi: float
) -> torch.Tensor:
    spec = parse_candidate(option)
    with torch.no_grad():
        layer.weight.copy_(fake_quantize_weight(layer.weight, spec, 0))
        if spec.a_bits < 16:
            q = ActQuantizer(spec.a_bits, spec.a_symmetric)
            q.set_qparams(*range_qparams(torch.tensor(lo), torch.tensor(hi), spec.a_bits, False))
            x = q(x)
        return layer(x)


def _weight_ints(model: onnx.ModelProto, bits: int) -> np.ndarray:
    (init,) = [i for i in model.graph.initializer if i.name.endswith(".weight_q")]
    assert init.data_type in INT_TYPES
    arr = numpy_helper.to_array(init).astype(np.int64)
    if bits > 4:  # asymmetric 5- to 8-bit integers are stored signed, shifted by 2**(bits-1)
        assert init.data_type == onnx.TensorProto.INT8
        arr += 2 ** (bits - 1)
    lo, hi = qrange(bits, symmetric=False)
    assert lo <= arr.min() and arr.max() <= hi
    return arr


@pytest.mark.parametrize("option", ["w8a8", "w4a16", "w6a6", "w3a8", "w2a16", "w16a16"])
def test_linear_graph_matches_fake_quant(option: str) -> None:
    torch.manual_seed(0)
    lin = nn.Linear(48, 64)
    x = torch.randn(2, 5, 48)
    lo, hi = float(x.min()), float(x.max())
    entry = {"name": "blk.mlp", "kind": "linear", "channels": 64, "params": 48 * 64 + 64}
    model = layer_model(
        entry, option, [2, 5, 48], weight=lin.weight, bias=lin.bias, act_range=(lo, hi)
    )
    onnx.checker.check_model(model, full_check=True)
    spec = parse_candidate(option)
    if spec.w_bits < 16:
        _weight_ints(model, spec.w_bits)
    else:
        assert not any(i.name.endswith(".weight_q") for i in model.graph.initializer)
    (got,) = _session(model).run(None, {"x": x.numpy()})
    want = _fake_quant(lin, option, x, lo, hi).numpy()
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-4)
    (fast,) = _session(model, nbits_accuracy="4").run(None, {"x": x.numpy()})
    assert np.abs(fast - want).max() <= 0.02 * np.abs(want).max()  # int8 x inside MatMulNBits


@pytest.mark.parametrize("option", ["w8a8", "w4a16"])
def test_conv_graph_infers_attributes_and_matches(option: str) -> None:
    torch.manual_seed(1)
    conv = nn.Conv2d(8, 16, 3, stride=2, padding=1)
    x = torch.randn(1, 8, 12, 12)
    lo, hi = float(x.min()), float(x.max())
    entry = {
        "name": "down.conv",
        "kind": "conv2d",
        "channels": 16,
        "params": 16 * 8 * 9 + 16,
        "in_shape": [1, 8, 12, 12],
        "out_shape": [1, 16, 6, 6],
    }
    model = layer_model(
        entry, option, [1, 8, 12, 12], weight=conv.weight, bias=conv.bias, act_range=(lo, hi)
    )
    onnx.checker.check_model(model, full_check=True)
    _weight_ints(model, parse_candidate(option).w_bits)
    (got,) = _session(model).run(None, {"x": x.numpy()})
    want = _fake_quant(conv, option, x, lo, hi).numpy()
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-4)


def test_random_weight_from_the_inventory_entry_runs() -> None:
    entry = {"name": "a", "kind": "linear", "channels": 32, "params": 16 * 32, "weight_numel": 512}
    model = layer_model(entry, "w4a8", [1, 10, 16])
    (y,) = _session(model).run(None, {"x": np.ones((3, 10, 16), np.float32)})  # symbolic batch
    assert y.shape == (3, 10, 32)
    assert not any(i.name.endswith(".bias") for i in model.graph.initializer)


def test_a_matmul_site_has_no_standalone_graph() -> None:
    with pytest.raises(ExportError, match="kind"):
        layer_model({"name": "attn.qk_matmul", "kind": "matmul_qk"}, "w16a8", [1, 4, 4])

"""The runtimes a layer can be timed in: each turns (layer, option, input shape) into a callable.

``torch`` runs the layer as bitbudget's fake-quant validation runs it (weights quantized once,
the input fake-quantized on every call); ``onnxruntime`` runs the QDQ / integer-initializer graph
the ONNX export writes for that option (``profiling.export.layer_onnx.layer_model``).
"""

from __future__ import annotations

import copy
import platform
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from profiling.errors import BadInput

__all__ = [
    "RUNTIMES",
    "WEIGHT_TYPES",
    "FLOAT_OPTION",
    "check_runtime",
    "runtime_version",
    "layer_callable",
    "machine_info",
    "torch_threads",
]

RUNTIMES = ("onnxruntime", "torch")
WEIGHT_TYPES = (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)
FLOAT_OPTION = "w16a16"


def check_runtime(runtime: str) -> None:
    """An unknown runtime is a ``BadInput`` listing the known ones."""
    if runtime not in RUNTIMES:
        raise BadInput(f"runtime: unknown {runtime!r}; known: {', '.join(RUNTIMES)}")


def runtime_version(runtime: str) -> str:
    """The runtime's package version."""
    check_runtime(runtime)
    if runtime == "torch":
        return str(torch.__version__)
    import onnxruntime

    return str(onnxruntime.__version__)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict[str, Any]:
    """Host name, CPU model, GPU model (when torch sees one), OS and logical CPU count."""
    import os

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {
        "host": platform.node(),
        "cpu": _cpu_model(),
        "gpu": gpu,
        "os": f"{platform.system()} {platform.release()} {platform.machine()}",
        "cpu_count": os.cpu_count(),
    }


@contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """torch's intra-op threads set for the block, restored after."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _torch_layer(module: nn.Module, option: str, x: torch.Tensor) -> Callable[[], Any]:
    from profiling.quant.modules import channel_axis
    from profiling.quant.primitives import choose_qparams, fake_quantize, fake_quantize_weight
    from profiling.quant.spec import PerTensor, parse_candidate

    spec = parse_candidate(option)
    layer = copy.deepcopy(module).eval()
    with torch.no_grad():
        weight: torch.Tensor = layer.weight  # type: ignore[assignment]
        weight.copy_(fake_quantize_weight(weight, spec, channel_axis(layer)))
    if spec.a_bits >= 16:
        return lambda: layer(x)
    scale, zp = choose_qparams(x, spec.a_bits, spec.a_symmetric, PerTensor(), "minmax")
    return lambda: layer(fake_quantize(x, scale, zp, spec.a_bits, spec.a_symmetric))


def _ort_layer(
    entry: Mapping[str, Any], option: str, shape: Sequence[int], module: nn.Module, threads: int
) -> Callable[[], Any]:
    from profiling.export.layer_onnx import layer_model
    from profiling.export.ort_model import session as ort_session

    weight: torch.Tensor = module.weight  # type: ignore[assignment]
    bias = getattr(module, "bias", None)
    proto = layer_model(entry, option, list(shape), weight=weight.detach(), bias=bias)
    # the session settings the exported model is timed and validated with
    session = ort_session(proto.SerializeToString(), threads)
    name = session.get_inputs()[0].name
    feed = {name: np.random.default_rng(0).standard_normal(shape).astype(np.float32)}
    return lambda: session.run(None, feed)


# the layer kinds ``layer_model`` writes as standalone ONNX graphs; others are timed in torch
ORT_KINDS = ("linear", "conv2d")


def layer_callable(
    runtime: str,
    entry: Mapping[str, Any],
    option: str,
    module: nn.Module,
    threads: int,
) -> tuple[Callable[[], Any], str]:
    """A zero-argument callable that runs one layer at one option on its inventory input shape,
    and the runtime it runs in (torch for a kind ONNX Runtime has no standalone graph of)."""
    check_runtime(runtime)
    shape = entry.get("in_shape")
    if not shape:
        raise BadInput(f"layer {entry['name']}: the inventory has no input shape (it did not run)")
    if runtime == "onnxruntime" and entry.get("kind") in ORT_KINDS:
        return _ort_layer(entry, option, shape, module, threads), runtime
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(0))
    return torch.no_grad()(_torch_layer(module, option, x)), "torch"

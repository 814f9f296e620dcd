"""An export folder run in ONNX Runtime behind the task adapter's interface.

``OrtModel(out_dir)`` offers ``preprocess``, ``embed``, ``decode`` and ``__call__(image,
prompts) -> MaskOutput`` like ``profiling.models.adapter.TaskAdapter``, so validation code can
run what ships in place of the PyTorch model. ``time_exported_encoder`` times the image encoder.
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from profiling.export.errors import ExportError
from profiling.export.graphs import decoder_input_names
from profiling.export.outdir import MANIFEST_FORMAT
from profiling.models.adapter import MaskOutput, Prompts, TaskAdapter

__all__ = ["OrtModel", "SESSION_CONFIG", "session", "time_exported_encoder", "read_manifest"]

# onnxruntime's default for MatMulNBits fused from weight-only QDQ is accuracy level 4: the
# float input is quantized to int8 per block inside the kernel, built for LLM decoding (a few
# rows per GEMM). On SAM's encoder (thousands of tokens per GEMM) that made each weight-only
# layer 1.2-3.5x slower than float32 here, and it is not bit-exact; level 1 computes in
# float32 at about float32's speed and matches fake-quant. bitbudget's sessions use 1 and the
# manifest recommends it (``SESSION_CONFIG``); docs/export.md has the measurement.
NBITS_ACCURACY_KEY = "session.qdq_matmulnbits_accuracy_level"
NBITS_ACCURACY = 1
SESSION_CONFIG = {NBITS_ACCURACY_KEY: str(NBITS_ACCURACY)}


def read_manifest(out_dir: Path) -> dict[str, Any]:
    """The manifest of an export folder; anything else raises ``ExportError``."""
    try:
        doc = json.loads((Path(out_dir) / "manifest.json").read_text())
    except (OSError, ValueError) as err:
        raise ExportError(f"export: {out_dir} has no readable manifest.json ({err})") from None
    if not isinstance(doc, dict) or doc.get("format") != MANIFEST_FORMAT:
        raise ExportError(f"export: {out_dir}/manifest.json is not a {MANIFEST_FORMAT} manifest")
    return doc


def session(
    path: Path | bytes,
    threads: int = 2,
    nbits_accuracy: int | None = NBITS_ACCURACY,
    optimized_path: Path | None = None,
    config: dict[str, str] | None = None,
) -> Any:
    """An onnxruntime CPU session (a file or a serialized model) with ``threads`` intra-op
    threads, full optimization and ``nbits_accuracy`` (None: onnxruntime's own default);
    ``config``: further session config entries."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if nbits_accuracy is not None:
        so.add_session_config_entry(NBITS_ACCURACY_KEY, str(nbits_accuracy))
    if optimized_path is not None:
        so.optimized_model_filepath = str(optimized_path)
    for key, value in (config or {}).items():
        so.add_session_config_entry(key, value)
    model = path if isinstance(path, bytes) else str(path)
    return ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])


class _Spec:
    def __init__(self, size: int) -> None:
        self.size = size


class OrtModel(TaskAdapter):
    """The two exported graphs in onnxruntime sessions, used like a ``TaskAdapter``."""

    def __init__(
        self,
        out_dir: Path,
        threads: int = 2,
        multimask: bool = False,
        nbits_accuracy: int | None = NBITS_ACCURACY,
    ) -> None:
        self.out_dir = Path(out_dir)
        self.manifest = read_manifest(self.out_dir)
        model = self.manifest["model"]
        self.family, self.size, self.multimask = (
            model["family"],
            int(model["image_size"]),
            multimask,
        )
        self.model = None
        self.loaded = None  # type: ignore[assignment]
        graphs = self.manifest["graphs"]
        self.encoder = session(self.out_dir / graphs["image_encoder"], threads, nbits_accuracy)
        self.decoder = session(self.out_dir / graphs["mask_decoder"], threads, nbits_accuracy)
        types = {i.name: i.type for i in self.decoder.get_inputs()}
        self._label_dtype = np.int32 if "int32" in types["point_labels"] else np.float32

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    def embed(self, pixels: torch.Tensor) -> dict[str, torch.Tensor | list[torch.Tensor]]:
        """Run the exported image encoder."""
        outs = self.encoder.run(None, {"pixels": pixels.detach().cpu().float().numpy()})
        tensors = [torch.from_numpy(o) for o in outs]
        if self.family == "sam":
            return {"image_embed": tensors[0]}
        return {"image_embed": tensors[0], "high_res_feats": tensors[1:]}

    def _points(self, prompts: Prompts, hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        """Coordinates and labels as the decoder graph takes them (boxes as corners 2 / 3)."""
        if self.family == "sam2":  # SAM2's prompt encoder (in the graph) adds the padding point
            coords, labels = self._prompt_points(prompts, hw)
            return coords.numpy(), labels.numpy()
        parts_xy, parts_lab = [], []
        n = len(prompts)
        if prompts.points is not None:
            assert prompts.labels is not None
            parts_xy.append(self.transform_coords(prompts.points, hw))
            parts_lab.append(prompts.labels.float())
        if prompts.boxes is not None:
            parts_xy.append(self.transform_coords(prompts.boxes.reshape(-1, 2, 2), hw))
            parts_lab.append(torch.tensor([[2.0, 3.0]]).repeat(n, 1))
        else:  # SAM pads with a not-a-point when no box is given
            parts_xy.append(torch.zeros(n, 1, 2))
            parts_lab.append(-torch.ones(n, 1))
        return torch.cat(parts_xy, 1).numpy(), torch.cat(parts_lab, 1).numpy()

    def decode(self, feats: dict, prompts: Prompts, hw: tuple[int, int]) -> MaskOutput:
        """Run the exported prompt encoder + mask decoder for every prompt in ``prompts``."""
        coords, labels = self._points(prompts, hw)
        names = decoder_input_names(self.family)
        values = [feats["image_embed"], *feats.get("high_res_feats", [])]
        inputs = {n: v.detach().cpu().float().numpy() for n, v in zip(names, values)}
        inputs["point_coords"] = coords.astype(np.float32)
        inputs["point_labels"] = labels.astype(self._label_dtype)
        logits, iou = self.decoder.run(None, inputs)
        return MaskOutput(logits=torch.from_numpy(logits), iou=torch.from_numpy(iou))


def time_exported_encoder(
    out_dir: Path, *, threads: int = 2, warmup: int = 3, repeats: int = 20
) -> dict[str, Any]:
    """Median / p10 / p90 wall time of the exported image encoder on one image."""
    import onnxruntime as ort

    manifest = read_manifest(Path(out_dir))
    size = int(manifest["model"]["image_size"])
    sess = session(Path(out_dir) / manifest["graphs"]["image_encoder"], threads)
    x = np.random.default_rng(0).standard_normal((1, 3, size, size)).astype(np.float32)
    for _ in range(warmup):
        sess.run(None, {"pixels": x})
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        sess.run(None, {"pixels": x})
        times.append((time.perf_counter() - t0) * 1000.0)
    q = statistics.quantiles(times, n=10) if len(times) > 1 else times * 9
    return {
        "median_ms": statistics.median(times),
        "p10_ms": q[0],
        "p90_ms": q[-1],
        "repeats": repeats,
        "threads": threads,
        "runtime": "onnxruntime",
        "runtime_version": ort.__version__,
    }

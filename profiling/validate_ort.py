"""Validate what ships: the plan's ONNX export run in ONNX Runtime on the held-out images.

``ort_section`` measures the exported graphs (``profiling.export``) with the same fidelity
metrics as the fake-quant validation (``profiling.evaluate``, against the float PyTorch model),
the agreement of the exported model with the fake-quant one (mask IoU / KL of ONNX Runtime's
masks against fake-quant's), the difference of each metric from the fake-quant fidelity, and the
exported files as they lie on disk (bytes, sha256). ``validate_plan(..., runtime="onnxruntime")``
puts it under ``runtime`` and makes its metrics the validation's ``metrics``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from profiling.calibration import CalibrationSet
from profiling.errors import BadInput
from profiling.evaluate import measure_fidelity
from profiling.models import LoadedModel
from profiling.models.adapter import TaskAdapter
from profiling.shipped import export_files

__all__ = [
    "RUNTIMES",
    "check_runtime",
    "check_exported_weights",
    "export_files",
    "metric_difference",
    "ort_section",
]

RUNTIMES = ("pytorch", "onnxruntime")
ORT_THREADS = 2

Progress = Callable[[float, str], None]


def check_runtime(runtime: str) -> str:
    """The runtime name, or a ``BadInput`` listing the known ones."""
    if runtime not in RUNTIMES:
        raise BadInput(f"runtime: unknown runtime {runtime!r}; known: {', '.join(RUNTIMES)}")
    return runtime


def check_exported_weights(manifest: Mapping[str, Any], weights_hash: str) -> None:
    """Refuse an export whose weights are not the model's (``export_plan`` rebuilds the model
    from its name and checkpoint: a model registered with another seed gets other weights)."""
    got = str(manifest.get("weights_hash") or "")
    if got != weights_hash:
        seed = (manifest.get("model") or {}).get("seed")
        raise BadInput(
            f"the export holds weights {got[:12]}…, not the model's {weights_hash[:12]}… "
            f"(export_plan built seed {seed}); export a model of seed 0 or with a checkpoint"
        )


def metric_difference(runtime: Mapping[str, Any], fake_quant: Mapping[str, Any]) -> dict[str, Any]:
    """``runtime - fake_quant`` for every float metric both measured (None where one did not)."""
    out: dict[str, Any] = {}
    for key, value in runtime.items():
        other = fake_quant.get(key)
        if isinstance(value, float) and isinstance(other, float):
            out[key] = value - other
        elif isinstance(value, float) or isinstance(other, float):
            out[key] = None
    return out


def _export(
    loaded: LoadedModel, plan: Mapping[str, Any], calib: CalibrationSet, out_dir: Path,
    say: Progress, clipping: Path | str | None,
) -> None:  # fmt: skip
    from profiling.export.bundle import export_plan

    spec = loaded.spec
    checkpoint = Path(spec.checkpoint) if spec.checkpoint else None

    def progress(message: str, fraction: float) -> None:
        say(0.62 + 0.14 * fraction, f"export: {message}")

    with warnings.catch_warnings():  # the tracer's notes on SAM2's shape checks are not news
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        manifest = export_plan(
            plan, model=spec.name, checkpoint=checkpoint, image_size=spec.size,
            out_dir=out_dir, calibration=calib, progress=progress, clipping=clipping,
        )  # fmt: skip
    check_exported_weights(manifest, loaded.weights_hash)


def ort_section(
    loaded: LoadedModel,
    plan: Mapping[str, Any],
    calib: CalibrationSet,
    heldout: CalibrationSet,
    fake_quant: TaskAdapter,
    fake_quant_metrics: Mapping[str, Any],
    *,
    export_dir: Path | str,
    exported: bool = False,
    multimask: bool = False,
    threads: int = ORT_THREADS,
    progress: Progress | None = None,
    clipping: Path | str | None = None,
) -> dict[str, Any]:
    """The ``runtime`` section: the export in ``export_dir`` (written there first unless
    ``exported``) run in ONNX Runtime on ``heldout``, against the float model and against the
    fake-quant model ``fake_quant`` (whose fidelity is ``fake_quant_metrics``); ``clipping``: the
    LSC sidecar the fake-quant model was refined with, exported too."""
    import onnxruntime

    from profiling.export.ort_model import OrtModel

    say = progress or (lambda f, m: None)
    folder = Path(export_dir)
    if not exported:
        say(0.62, "exporting the plan to ONNX")
        _export(loaded, plan, calib, folder, say, clipping)
    files = export_files(folder)
    say(0.78, "running the exported graphs in ONNX Runtime on the held-out images")
    ort: Any = OrtModel(folder, threads=threads)  # TaskAdapter's interface
    ref = TaskAdapter(loaded, multimask)
    fid = measure_fidelity(ref, ort, heldout.samples).to_dict()
    say(0.84, "comparing ONNX Runtime with fake-quant")
    agree = measure_fidelity(fake_quant, ort, heldout.samples)
    return {
        "name": "onnxruntime",
        "version": onnxruntime.__version__,
        "threads": threads,
        "metrics": fid,
        "fake_quant": dict(fake_quant_metrics),
        "difference": metric_difference(fid, fake_quant_metrics),
        "vs_fake_quant": {k: v for k, v in agree.to_dict().items() if not k.startswith("gt_")},
        "export": files,
    }

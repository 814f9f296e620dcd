"""Validate a plan: apply it, measure its fidelity on held-out images, pack it, weigh the file.

The validation document (``bitbudget.validation/v1``) holds the fidelity metrics of
``profiling.evaluate`` on the held-out split, the artifact's measured tensor bytes beside the
plan's predicted ``memory_bytes`` (they must agree within ``SIZE_TOLERANCE``), the budget check,
the plan's predicted loss (its objective) beside the measured fidelity, ``passed`` with the
reasons it failed, and ``random_weights``. Asked for (``VideoSpec``), a SAM2 plan is also tracked
over clips and the document gains ``video``: the ``bitbudget.video_validation/v1`` document of
``profiling.video.video_validation`` (J&F against the float model and against ground truth,
memory-bank costs of the plan's ``memory_policy``); see docs/video.md.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from profiling.calibration import CalibrationSet, load_source, make_sets
from profiling.errors import BadInput
from profiling.evaluate import measure_fidelity
from profiling.models import LoadedModel, ModelSpec, build_model
from profiling.models.adapter import TaskAdapter
from profiling.validate_ort import check_runtime, ort_section

__all__ = [
    "VALIDATION_FORMAT",
    "SIZE_TOLERANCE",
    "DataSpec",
    "VideoSpec",
    "check_plan_doc",
    "check_weights",
    "priced_plan",
    "size_checks",
    "validate_plan",
    "run_validation",
]

VALIDATION_FORMAT = "bitbudget.validation/v1"
SIZE_TOLERANCE = 0.005  # measured artifact bytes vs the plan's prediction (header aside)

Progress = Callable[[float, str], None]


@dataclass(frozen=True)
class DataSpec:
    """Which images calibrate the quantizers and which held-out ones measure the fidelity."""

    source: str = "shipped"
    images: int = 8
    holdout: int = 4
    n_points: int = 2
    n_boxes: int = 2
    seed: int = 0

    def sets(self) -> tuple[CalibrationSet, CalibrationSet]:
        """(calibration, held-out), split exactly as the profiler splits them."""
        return make_sets(
            load_source(self.source),
            holdout=self.holdout,
            n_calib=self.images,
            n_points=self.n_points,
            n_boxes=self.n_boxes,
            seed=self.seed,
        )


@dataclass(frozen=True)
class VideoSpec:
    """Which clips a video validation tracks: ``clips`` synthetic clips of ``frames`` frames made
    from the shipped photographs (seeded), or the first ``clips`` videos of a DAVIS / SA-V
    ``folder``; ``policy`` overrides the plan's ``memory_policy`` (FIFO when neither names one)."""

    clips: int = 2
    frames: int = 6
    seed: int = 0
    folder: str | None = None
    policy: str | Mapping[str, Any] | None = None
    prompt: str = "box"

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> VideoSpec:
        """From a request's options (unknown keys refused)."""
        known = {"clips", "frames", "seed", "folder", "policy", "prompt"}
        extra = sorted(set(doc) - known)
        if extra:
            raise BadInput(f"video: unknown option {extra[0]!r}; known: {', '.join(sorted(known))}")
        spec = cls(**{k: v for k, v in doc.items() if v is not None})
        if not (isinstance(spec.clips, int) and isinstance(spec.frames, int)):
            raise BadInput("video: clips and frames must be integers")
        if spec.clips < 1 or spec.frames < 2:
            raise BadInput("video: clips must be >= 1 and frames >= 2")
        return spec

    def to_dict(self) -> dict[str, Any]:
        policy = dict(self.policy) if isinstance(self.policy, Mapping) else self.policy
        return {"clips": self.clips, "frames": self.frames, "seed": self.seed,
                "folder": self.folder, "policy": policy, "prompt": self.prompt}  # fmt: skip

    def load(self, image_size: int) -> list[Any]:
        """The clips (synthetic frames are ``image_size`` on the long side)."""
        from profiling.video import load_clips, synthetic_clips

        if self.folder is not None:
            return load_clips(
                self.folder, videos=self.clips, max_frames=self.frames, seed=self.seed
            )
        return synthetic_clips(self.clips, self.frames, self.seed, long_side=image_size)


def video_section(
    loaded: LoadedModel, plan: Mapping[str, Any], calib: CalibrationSet, video: VideoSpec
) -> dict[str, Any]:
    """The ``video`` section: the plan tracked over ``video``'s clips against the float model."""
    from profiling.video import video_validation

    if loaded.spec.info.family != "sam2":
        raise BadInput(f"{loaded.spec.name} is not a SAM2 model: video validation needs SAM2")
    clips = video.load(loaded.spec.size)
    policy = video.policy if video.policy is not None else plan.get("memory_policy")
    doc = video_validation(loaded, plan, clips, policy, calib=calib, prompt=video.prompt)
    return doc | {"request": video.to_dict()}


def check_plan_doc(plan: Any) -> Mapping[str, Any]:
    """Refuse what cannot be validated: not a plan object, no choices, an unsolved status."""
    if not isinstance(plan, Mapping) or not isinstance(plan.get("choices"), Mapping):
        raise BadInput("plan: expected a bitbudget.plan/v1 object with choices {layer: 'w4a8'}")
    if plan.get("status") in ("infeasible", "unknown"):
        raise BadInput(f"plan: status is {plan['status']!r}; there is no plan to validate")
    totals = plan.get("totals") or {}
    if not isinstance(totals, Mapping):
        raise BadInput("plan: totals: expected an object")
    return plan


def priced_plan(inventory: Mapping[str, Any], choices: Mapping[str, str]) -> dict[str, Any]:
    """A plan document for ``choices`` priced as the solvers price it (``solvers.costs``)."""
    from profiling.sensitivity.problem import fixed_memory_bytes, layer_descs, site_descs
    from solvers.costs import cost_table, site_cost_table
    from solvers.sizes import float_bytes

    descs = layer_descs(dict(inventory))
    sites = site_descs(dict(inventory))
    unknown = sorted(set(choices) - set(descs) - set(sites))
    if unknown:
        raise BadInput(f"plan: {unknown[0]!r} is not a weight layer of this model")
    named = [n for n in choices if n in descs]
    costs = cost_table([descs[n] for n in named], sorted({choices[n] for n in named}))
    on_sites = {n: [choices[n]] for n in choices if n in sites}
    try:
        site_costs = site_cost_table([sites[n] for n in on_sites], on_sites)
    except ValueError as exc:
        raise BadInput(f"plan: {exc}") from None
    memory = float(fixed_memory_bytes(dict(inventory)))
    memory += sum(c[choices[n]]["memory_bytes"] for n, c in site_costs.items())
    for name, desc in descs.items():
        if name in choices:
            memory += costs[name][choices[name]]["memory_bytes"]
        else:  # a layer the plan does not name stays in float
            memory += float_bytes(desc.numel + desc.bias_numel)
    totals = {"memory_bytes": float(memory)}
    return {"format": "bitbudget.plan/v1", "status": "feasible", "choices": dict(choices)} | {
        "objective": None,
        "totals": totals,
    }


def size_checks(
    measured: int, predicted: float, budget_bytes: float | None, tolerance: float = SIZE_TOLERANCE
) -> tuple[dict[str, Any], list[str]]:
    """The size section of a validation and the reasons it fails (empty when it passes)."""
    rel = abs(measured - predicted) / predicted if predicted > 0 else float("inf")
    size = {
        "measured_bytes": int(measured),
        "predicted_bytes": float(predicted),
        "relative_error": rel,
        "tolerance": tolerance,
        "budget_bytes": None if budget_bytes is None else float(budget_bytes),
    }
    reasons = []
    if rel > tolerance:
        reasons.append(
            f"artifact holds {measured} B, {100 * rel:.3f} % away from the plan's predicted "
            f"{predicted:.0f} B (tolerance {100 * tolerance:.2f} %)"
        )
    if budget_bytes is not None and measured > budget_bytes:
        reasons.append(f"artifact holds {measured} B, over the budget of {budget_bytes:.0f} B")
    return size, reasons


def _artifact(qmodel: Any, qplan: Any, loaded: LoadedModel, path: Path) -> tuple[int, int]:
    """Pack atomically (temp file, then rename); returns (tensor bytes, file bytes)."""
    from profiling.quant.pack import save_artifact

    info = {
        "name": loaded.spec.name,
        "image_size": loaded.spec.size,
        "weights_hash": loaded.weights_hash,
        "random_weights": loaded.random_weights,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    measured = save_artifact(qmodel, qplan, tmp, model_info=info)
    os.replace(tmp, path)
    return measured, path.stat().st_size


def validate_plan(
    loaded: LoadedModel,
    plan: Mapping[str, Any],
    calib: CalibrationSet,
    heldout: CalibrationSet,
    artifact: Path | str,
    budget_bytes: float | None = None,
    multimask: bool = False,
    progress: Progress | None = None,
    video: VideoSpec | None = None,
    clipping: Path | str | None = None,
    runtime: str = "pytorch",
    export_dir: Path | str | None = None,
    exported: bool = False,
) -> dict[str, Any]:
    """The validation document of ``plan`` (a ``bitbudget.plan/v1`` doc) on ``loaded``; with
    ``video``, its ``video`` section too. With ``clipping`` (a Q-SAM2 LSC sidecar), the refined
    model is the one measured and packed, and ``refinement`` holds the held-out fidelity of
    post-training clipping (before) and of the learned clipping (after). With ``runtime =
    "onnxruntime"`` the plan's ONNX export (written to ``export_dir``, or read from there when
    ``exported``) is what is measured: ``metrics`` are ONNX Runtime's, and ``runtime`` holds the
    fake-quant fidelity, the difference, and the exported files (``profiling.validate_ort``)."""
    from profiling.quant.apply import apply_plan, report_of
    from profiling.quant.pack import predict_bytes
    from profiling.quant.plan import plan_from_json

    started = time.perf_counter()
    say = progress or (lambda f, m: None)
    plan = check_plan_doc(plan)
    if check_runtime(runtime) != "pytorch" and export_dir is None:
        raise BadInput("runtime onnxruntime: needs a folder for the export (export_dir)")
    qplan = plan_from_json(plan)
    say(0.05, "applying the plan (calibrating quantizers)")
    qmodel = apply_plan(loaded, qplan, calib)
    ref = TaskAdapter(loaded, multimask)
    refinement = None
    if clipping is not None:
        say(0.25, "measuring post-training clipping before the learned one")
        ptq = LoadedModel(loaded.spec, qmodel, loaded.weights_hash)
        before = measure_fidelity(ref, TaskAdapter(ptq, multimask), heldout.samples).to_dict()
        qmodel = apply_plan(loaded, qplan, calib, clipping=clipping)
        refinement = {"method": "lsc", "clipping": Path(clipping).name, "before": before}
    say(0.45, "measuring fidelity on the held-out images")
    quant = LoadedModel(loaded.spec, qmodel, loaded.weights_hash)
    fq_adapter = TaskAdapter(quant, multimask)
    fid = measure_fidelity(ref, fq_adapter, heldout.samples)
    if refinement is not None:
        refinement["after"] = fid.to_dict()
    video_doc = None
    if video is not None:
        say(0.6, "tracking clips (video fidelity)")
        video_doc = video_section(loaded, plan, calib, video)
    ort_doc = None
    if runtime == "onnxruntime":
        assert export_dir is not None
        ort_doc = ort_section(
            loaded, plan, calib, heldout, fq_adapter, fid.to_dict(), export_dir=export_dir,
            exported=exported, multimask=multimask, progress=say, clipping=clipping,
        )  # fmt: skip
    say(0.85, "packing the artifact")
    measured, file_bytes = _artifact(qmodel, qplan, loaded, Path(artifact))
    packer = predict_bytes(loaded.module, qplan)
    predicted = (plan.get("totals") or {}).get("memory_bytes")
    size, reasons = size_checks(measured, float(predicted or packer), budget_bytes)
    size |= {"file_bytes": file_bytes, "packer_predicted_bytes": packer}
    size["predicted_from"] = "plan" if predicted else "packer"
    doc = {
        "format": VALIDATION_FORMAT,
        "model": {"name": loaded.spec.name, "image_size": loaded.spec.size},
        "random_weights": loaded.random_weights,
        "resized_from": loaded.resized_from,
        "plan": {
            "status": plan.get("status"),
            "layers": len(qplan.specs),
            "predicted_loss": plan.get("objective"),
        },
        "metrics": fid.to_dict() if ort_doc is None else ort_doc["metrics"],
        "size": size,
        "passed": not reasons,
        "reasons": reasons,
        "data": {
            "calibration": [s.image.name for s in calib.samples],
            "heldout": [s.image.name for s in heldout.samples],
            "key": heldout.key,
        },
        "quantization": report_of(qmodel).to_dict() | {"multimask": multimask},
        "seconds": round(time.perf_counter() - started, 3),
    }
    if video_doc is not None:
        doc["video"] = video_doc
    if refinement is not None:
        doc["refinement"] = refinement
    if ort_doc is not None:
        doc["runtime"] = ort_doc
    return doc


def check_weights(plan: Mapping[str, Any], loaded: LoadedModel) -> None:
    """Refuse to validate a plan on other weights than it was made for (``model.weights_hash``,
    when the plan names it): its losses and sizes would belong to another model."""
    named = plan.get("model")
    want = named.get("weights_hash") if isinstance(named, Mapping) else None
    if want and want != loaded.weights_hash:
        spec = loaded.spec
        source = f"checkpoint {spec.checkpoint}" if spec.checkpoint else f"seed {spec.seed}"
        raise BadInput(
            f"the plan was made for weights {want[:12]}…, but {spec.name} from {source} has "
            f"{loaded.weights_hash[:12]}…: use the checkpoint (or seed) the plan was made with"
        )


def run_validation(
    plan: Mapping[str, Any],
    model: ModelSpec | LoadedModel,
    artifact: Path | str,
    data: DataSpec | None = None,
    budget_bytes: float | None = None,
    progress: Progress | None = None,
    video: VideoSpec | None = None,
    clipping: Path | str | None = None,
    runtime: str = "pytorch",
    export_dir: Path | str | None = None,
    exported: bool = False,
) -> dict[str, Any]:
    """Build the model (unless given) and the data split, then ``validate_plan``."""
    check_plan_doc(plan)
    check_runtime(runtime)
    if budget_bytes is None:
        budget_bytes = (plan.get("budget") or {}).get("memory_bytes")
    spec = model.spec if isinstance(model, LoadedModel) else model
    if video is not None and spec.info.family != "sam2":
        raise BadInput(f"{spec.name} is not a SAM2 model: video validation needs SAM2")
    loaded = model if isinstance(model, LoadedModel) else build_model(model)
    check_weights(plan, loaded)
    calib, heldout = (data or DataSpec()).sets()
    return validate_plan(
        loaded, plan, calib, heldout, artifact, budget_bytes=budget_bytes, progress=progress,
        video=video, clipping=clipping, runtime=runtime, export_dir=export_dir, exported=exported,
    )  # fmt: skip

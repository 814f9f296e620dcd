"""``export_plan``: a plan as two ONNX graphs with integer weights and QDQ activations.

Order: build the model -> refuse what ONNX cannot express -> ``apply_plan`` (the validated
fake-quant copy: BIG flips and VRC re-fits are in its weights, calibrated activation ranges in
its quantizers) -> swap its quantizers for export-mode ones -> trace the two graphs -> replace
each quantized weight by its integers + DequantizeLinear -> write ``image_encoder.onnx``,
``mask_decoder.onnx`` and ``manifest.json`` into a temporary folder renamed into place.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, cast

import onnx
from torch import Tensor, nn

from profiling.errors import BadInput
from profiling.export.errors import ExportError
from profiling.export.graphs import export_graphs
from profiling.export.manifest import MANIFEST_FORMAT, build_manifest, plan_doc
from profiling.export.outdir import write_atomically
from profiling.export.rewrite import WeightSite, replace_weights, swap_act_quantizers
from profiling.export.rules import opset_for
from profiling.models import LoadedModel, ModelSpec, build_model
from profiling.quant.modules import channel_axis
from profiling.quant.pack import weight_integers
from profiling.quant.plan import QuantPlan, plan_from_json, quantizable_layers
from profiling.quant.prepare import weight_layers
from profiling.quant.spec import PerGroup

__all__ = ["MANIFEST_FORMAT", "GRAPHS", "check_expressible", "export_plan"]

GRAPHS = ("image_encoder", "mask_decoder")
Progress = Callable[[str, float], None]


def _kinds(inventory: Any) -> dict[str, str]:
    """name -> kind from an ``Inventory``, its JSON, a model, or a plain mapping."""
    if isinstance(inventory, nn.Module):
        return quantizable_layers(inventory)
    layers = getattr(inventory, "layers", None)
    if layers is None and isinstance(inventory, Mapping):
        layers = inventory.get("layers")
    if layers is None:
        return dict(cast(Mapping[str, str], inventory))
    return {_field(x, "name"): _field(x, "kind") for x in layers}


def _field(layer: Any, key: str) -> str:
    return str(layer[key] if isinstance(layer, Mapping) else getattr(layer, key))


def _as_quant_plan(plan: Mapping[str, Any] | QuantPlan) -> QuantPlan:
    if isinstance(plan, QuantPlan):
        return plan
    try:
        return plan_from_json(plan_doc(plan))
    except ExportError:
        raise
    except BadInput as err:
        raise ExportError(str(err)) from None


def check_expressible(plan: Mapping[str, Any] | QuantPlan, inventory: Any) -> None:
    """Raise ``ExportError`` naming the first layer ONNX Runtime cannot run as planned, and
    the option to drop; layers the model does not have are refused the same way."""
    qplan, kinds = _as_quant_plan(plan), _kinds(inventory)
    for name, spec in qplan.specs.items():
        kind = kinds.get(name)
        if kind is None:
            raise ExportError(
                f"layer {name!r}: not a layer of this model (a plan for another model?)"
            )
        if kind == "matmul_sv" and spec.a_bits < 16 and getattr(spec, "a_log", False):
            raise ExportError(
                f"layer {name!r}: option {spec.id!r}: AGQ's log2 post-softmax levels cannot be "
                f"written as ONNX DequantizeLinear; drop it (choose w16a{spec.a_bits} here)"
            )
        if kind == "matmul_sv" and spec.a_bits < 16 and qplan.options.agq:
            raise ExportError(
                f"layer {name!r}: AGQ's log2 post-softmax levels cannot be written as ONNX "
                f"DequantizeLinear; drop option 'agq' (or choose w16a16 for this site)"
            )
        if (
            kind == "conv_transpose2d"
            and isinstance(spec.w_granularity, PerGroup)
            and spec.w_bits < 16
        ):
            raise ExportError(
                f"layer {name!r}: per-group weights of a ConvTranspose2d are not exported; "
                f"use per-channel granularity for this layer"
            )


def _check_model(doc: Mapping[str, Any], spec: ModelSpec) -> None:
    named = doc.get("model")
    name = named.get("name") if isinstance(named, Mapping) else named
    if isinstance(name, str) and name and name != spec.name:
        raise ExportError(f"plan: model: the plan is for {name!r}, not {spec.name!r}")


def _calibration(calibration: Any) -> Any:
    if calibration is not None:
        return calibration
    from profiling.calibration import load_source, make_sets

    calib, _ = make_sets(load_source("shipped"), n_calib=4, n_points=1, n_boxes=1)
    return calib


def _sites(qmodel: nn.Module, qplan: QuantPlan) -> dict[str, WeightSite]:
    kinds = {n: k for n, k in quantizable_layers(qmodel).items() if n in qplan.specs}
    modules = dict(qmodel.named_modules())
    sites = {}
    for name in weight_layers(kinds, qplan):
        mod = modules[name]
        w = cast(Tensor, mod.weight)
        ints = weight_integers(
            w, qplan.specs[name], channel_axis(mod), mod.weight_scale, mod.weight_zero_point
        )
        sites[name] = WeightSite(name, ints, w.detach())
    return sites


def _graphs(loaded: LoadedModel, qmodel: nn.Module, qplan: QuantPlan) -> tuple[dict, dict, dict]:
    """The two rewritten graphs, the weights found in each and the activation quantizers."""
    sites = _sites(qmodel, qplan)
    export_model = copy.deepcopy(qmodel)
    acts = swap_act_quantizers(export_model)
    encoder, decoder = export_graphs(LoadedModel(loaded.spec, export_model, loaded.weights_hash))
    graphs = {"image_encoder": encoder, "mask_decoder": decoder}
    found = {g: replace_weights(m, sites) for g, m in graphs.items()}
    opset = opset_for(qplan.specs.values())
    for m in graphs.values():
        del m.opset_import[:]
        m.opset_import.append(onnx.helper.make_opsetid("", opset))
        onnx.checker.check_model(m, full_check=False)
    return graphs, found, acts


def export_plan(
    plan: Mapping[str, Any],
    *,
    model: str,
    checkpoint: Path | None = None,
    image_size: int | None = None,
    out_dir: Path,
    calibration: Any = None,
    progress: Progress | None = None,
    clipping: Any = None,
) -> dict[str, Any]:
    """Export ``plan`` for ``model`` into ``out_dir``; returns the manifest it wrote.

    ``calibration``: the ``CalibrationSet`` whose activation ranges are used (default: the
    shipped photographs, as ``bitbudget quantize``). ``clipping``: an LSC refinement
    (``lsc.LearnedClipping`` or its sidecar path) whose learned ranges replace the post-training
    ones, as in ``apply_plan``. Nothing is left in ``out_dir`` on failure.
    """
    from profiling.quant.apply import apply_plan, needs_calibration

    say = progress or (lambda stage, frac: None)
    out_dir = Path(out_dir)
    spec = ModelSpec(
        model, image_size=image_size, checkpoint=str(checkpoint) if checkpoint else None
    )
    doc = plan_doc(plan)
    _check_model(doc, spec)
    say("build model", 0.05)
    loaded = build_model(spec)
    qplan = _as_quant_plan(doc)
    check_expressible(qplan, loaded.module)
    calib = _calibration(calibration) if needs_calibration(qplan) else None
    say("quantize and calibrate", 0.15)
    qmodel = apply_plan(loaded, qplan, calib, clipping=clipping)
    say("trace graphs", 0.45)
    graphs, found, acts = _graphs(loaded, qmodel, qplan)
    say("write files", 0.85)

    def write(tmp: Path) -> dict[str, Any]:
        for g, m in graphs.items():
            onnx.save_model(m, str(tmp / f"{g}.onnx"))
        return build_manifest(tmp, doc, loaded, qplan, graphs, found, acts)

    manifest = write_atomically(out_dir, write)
    say("done", 1.0)
    return manifest

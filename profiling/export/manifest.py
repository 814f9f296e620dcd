"""``manifest.json`` of an export: what was written, at which width, and how big it is."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import onnx

from profiling.export.errors import ExportError
from profiling.export.ort_model import SESSION_CONFIG
from profiling.export.outdir import MANIFEST_FORMAT
from profiling.models import LoadedModel
from profiling.quant.pack import predict_bytes
from profiling.quant.plan import QuantPlan

__all__ = [
    "MANIFEST_FORMAT",
    "INT_TYPES",
    "PLAN_FORMATS",
    "plan_doc",
    "plan_hash",
    "build_manifest",
]

PLAN_FORMATS = ("bitbudget.plan/v1", "bitbudget.quant_plan/v1")
INT_TYPES = {onnx.TensorProto.INT8, onnx.TensorProto.UINT8, onnx.TensorProto.INT4}
INT_TYPES |= {onnx.TensorProto.UINT4, onnx.TensorProto.INT2, onnx.TensorProto.UINT2}
_WIDTH = {"INT8": 8, "UINT8": 8, "INT4": 4, "UINT4": 4, "INT2": 2, "UINT2": 2}


def plan_doc(plan: Any) -> dict[str, Any]:
    """The plan document: a solver / quant plan, or a service plan wrapping one under ``plan``."""
    if not isinstance(plan, Mapping):
        raise ExportError("plan: expected a JSON object with choices {layer: 'w4a8'}")
    doc = dict(plan)
    if "choices" not in doc and isinstance(doc.get("plan"), Mapping):
        inner = dict(doc["plan"])
        inner.setdefault("model", doc.get("model"))
        inner.setdefault("id", doc.get("id"))
        doc = inner
    fmt = doc.get("format", PLAN_FORMATS[0])
    if fmt not in PLAN_FORMATS:
        raise ExportError(f"plan: format: unknown {fmt!r}; known: {', '.join(PLAN_FORMATS)}")
    if not isinstance(doc.get("choices"), Mapping):
        raise ExportError("plan: choices: expected an object {layer: candidate id}")
    if doc.get("status") in ("infeasible", "unknown"):
        raise ExportError(f"plan: status is {doc['status']!r}; there is no plan to export")
    return doc


def plan_hash(qplan: QuantPlan) -> str:
    """sha256 of the plan's canonical JSON (choices, full specs, options)."""
    return hashlib.sha256(json.dumps(qplan.to_dict(), sort_keys=True).encode()).hexdigest()


def _file_entry(path: Path) -> dict[str, Any]:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return {"bytes": path.stat().st_size, "sha256": digest.hexdigest()}


def _int_bytes(graphs: Mapping[str, onnx.ModelProto]) -> int:
    return sum(
        len(i.raw_data)
        for m in graphs.values()
        for i in m.graph.initializer
        if i.data_type in INT_TYPES
    )


def _weight_entry(spec: Any, where: tuple[str, dict] | None) -> dict[str, Any] | None:
    if spec.w_bits >= 16:
        return None
    base = {
        "bits": spec.w_bits,
        "symmetric": spec.w_symmetric,
        "granularity": spec.w_granularity.to_dict(),
    }
    if where is None:
        return base | {"graph": None, "note": "not in the exported graphs (SAM2 video memory path)"}
    graph, info = where
    entry = base | {
        "graph": graph,
        "container": info["container"],
        "initializers": info["initializers"],
    }
    notes = []
    if _WIDTH[info["container"]] != spec.w_bits:
        notes.append(
            f"{spec.w_bits}-bit values in a {info['container']} container, within their range"
        )
    if info.get("offset"):
        entry["offset"] = info["offset"]
        notes.append(
            f"unsigned {spec.w_bits}-bit integers stored signed: value - {info['offset']}, "
            f"zero point - {info['offset']} (the same weights; the form of the int8 kernels)"
        )
    if notes:
        entry["note"] = "; ".join(notes)
    return entry


def _act_entry(name: str, kind: str, spec: Any, acts: Mapping[str, Any]) -> dict[str, Any] | None:
    if spec.a_bits >= 16:
        return None
    keys = [f"{name}.x", f"{name}.y"] if kind.startswith("matmul") else [f"{name}.input_quantizer"]
    out: dict[str, Any] = {
        "bits": spec.a_bits,
        "container": "INT8" if spec.a_symmetric else "UINT8",
    }
    out["quantizers"] = {k: acts.get(k) for k in keys}
    if any(acts.get(k) is None for k in keys):
        out["note"] = "uncalibrated or not in the exported graphs: left in float"
    elif spec.a_bits < 8:
        out["note"] = f"{spec.a_bits}-bit range in an 8-bit container behind a Clip"
    return out


def _layers(qplan: QuantPlan, kinds: Mapping[str, str], found: Mapping, acts: Mapping) -> dict:
    where = {layer: (g, info) for g, per in found.items() for layer, info in per.items()}
    return {
        name: {
            "option": spec.id,
            "kind": kinds[name],
            "weight": _weight_entry(spec, where.get(name)),
            "activation": _act_entry(name, kinds[name], spec, acts),
        }
        for name, spec in qplan.specs.items()
    }


def build_manifest(
    folder: Path,
    doc: Mapping[str, Any],
    loaded: LoadedModel,
    qplan: QuantPlan,
    graphs: Mapping[str, onnx.ModelProto],
    found: Mapping[str, Mapping[str, dict]],
    acts: Mapping[str, Any],
) -> dict[str, Any]:
    """Write ``folder/manifest.json`` for the graph files already in ``folder``; returns it."""
    import onnxruntime
    import torch

    from profiling.quant.plan import quantizable_layers

    kinds = quantizable_layers(loaded.module)
    files = {p.name: _file_entry(p) for p in sorted(folder.glob("*.onnx*"))}
    spec = loaded.spec
    manifest = {
        "format": MANIFEST_FORMAT,
        "plan": {"id": doc.get("id"), "hash": plan_hash(qplan), "options": qplan.options.to_dict()},
        "model": {
            "name": spec.name,
            "family": loaded.family,
            "image_size": spec.size,
            "checkpoint": spec.checkpoint,
            "seed": spec.seed,
        },
        "weights_hash": loaded.weights_hash,
        "random_weights": loaded.random_weights,
        "opset": int(next(iter(graphs.values())).opset_import[0].version),
        "versions": {
            "onnx": onnx.__version__,
            "onnxruntime": onnxruntime.__version__,
            "torch": torch.__version__,
        },
        # the onnxruntime session settings bitbudget validated and timed these files with
        "onnxruntime_session_config": dict(SESSION_CONFIG),
        "graphs": {g: f"{g}.onnx" for g in graphs},
        "files": files,
        "sizes": {
            "plan_predicted_bytes": predict_bytes(loaded.module, qplan),
            "integer_initializer_bytes": _int_bytes(graphs),
            "files_bytes": sum(f["bytes"] for f in files.values()),
        },
        "layers": _layers(qplan, kinds, found, acts),
    }
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest

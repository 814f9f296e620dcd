"""How far the additive (w, a) approximation is from the joint measurement.

Profiles measure a layer's weight and activation perturbations separately and add them; this
measures KL(weight and input quantized together) against KL(weight) + KL(input) on a sample of
layers. Run: .venv/bin/python bench/additive_error.py  (writes bench/results/additive_error.json)
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from profiling.models import ModelSpec
from profiling.sensitivity.kl import joint_kl, layer_kl
from profiling.sensitivity.request import ProfileRequest
from profiling.sensitivity.runner import _context
from profiling.sensitivity.store import UnitStore

OUT = Path(__file__).parent / "results" / "additive_error.json"
PAIRS = [(8, 8), (4, 8), (4, 4), (2, 8)]


def measure(spec: ModelSpec, images: int, sample: int) -> dict:
    req = ProfileRequest(spec, "kl", ("w8a8", "w4a8", "w4a4", "w2a8"), images=images)
    with tempfile.TemporaryDirectory() as work:
        ctx, _ = _context(req, UnitStore(Path(work)), "cpu", None, None)
        layers = ctx.weight_layers()
        picked = layers[:: max(len(layers) // sample, 1)][:sample]
        rows: list[dict[str, Any]] = []
        for name in picked:
            sep = layer_kl(ctx, name)
            for w, a in PAIRS:
                added = sep["weight"][str(w)] + sep["act"][str(a)]
                joint = joint_kl(ctx, name, w, a)
                rows.append(
                    {
                        "layer": name,
                        "w": w,
                        "a": a,
                        "additive": added,
                        "joint": joint,
                        "rel_error": abs(added - joint) / max(joint, 1e-12),
                    }
                )
    errs = sorted(r["rel_error"] for r in rows)
    return {
        "model": spec.name,
        "image_size": spec.size,
        "images": images,
        "rows": rows,
        "median_rel_error": errs[len(errs) // 2],
        "max_rel_error": errs[-1],
    }


def main() -> None:
    results = [
        measure(ModelSpec("sam2-micro"), 2, 12),
        measure(ModelSpec("sam2.1-hiera-tiny", image_size=512), 2, 6),
    ]
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(
        json.dumps(
            {"benchmark": "additive_error", "random_weights": True, "results": results}, indent=2
        )
    )
    for r in results:
        print(
            f"{r['model']}@{r['image_size']}: median relative error "
            f"{r['median_rel_error']:.3f}, max {r['max_rel_error']:.3f} "
            f"over {len(r['rows'])} (layer, w, a) points"
        )


if __name__ == "__main__":
    main()

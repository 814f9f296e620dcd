"""``check_expressible``: what ONNX Runtime cannot run as planned is refused, naming the layer."""

from __future__ import annotations

from typing import Any

import pytest

from profiling.export.bundle import check_expressible
from profiling.export.errors import ExportError
from profiling.quant.plan import PlanOptions, QuantPlan, uniform_plan
from profiling.quant.spec import PerGroup, QuantSpec


@pytest.fixture(scope="module")
def inventory(sam2_micro: Any) -> dict[str, Any]:
    from profiling.inventory import build_inventory

    return build_inventory(sam2_micro).to_json()


def test_uniform_w8a8_with_big_and_vrc_is_expressible(sam2_micro: Any, inventory: dict) -> None:
    plan = uniform_plan(sam2_micro.module, "w8a8", PlanOptions(big=True, vrc=True))
    check_expressible(plan.to_dict(), inventory)


def test_agq_on_a_quantized_softmax_site_is_refused(sam2_micro: Any, inventory: dict) -> None:
    plan = uniform_plan(sam2_micro.module, "w8a8", PlanOptions(agq=True))
    with pytest.raises(ExportError, match=r"sv_matmul'.*drop option 'agq'"):
        check_expressible(plan, inventory)
    # AGQ with the softmax sites in float exports: nothing uses the log2 quantizer
    floats = {n: s for n, s in plan.specs.items() if not n.endswith("sv_matmul")}
    check_expressible(QuantPlan(floats, PlanOptions(agq=True)), inventory)


def test_a_sites_own_log2_option_is_refused(inventory: dict) -> None:
    site = "image_encoder.trunk.blocks.0.attn.sv_matmul"
    with pytest.raises(ExportError, match=r"sv_matmul'.*'w16a8log'.*choose w16a8"):
        check_expressible({"choices": {site: "w16a8log"}}, inventory)
    check_expressible({"choices": {site: "w16a8"}}, inventory)


def test_unknown_layer_and_per_group_conv_transpose(inventory: dict) -> None:
    with pytest.raises(ExportError, match="another model"):
        check_expressible({"choices": {"blocks.0.attn.qkv": "w8a8"}}, inventory)
    convt = next(x["name"] for x in inventory["layers"] if x["kind"] == "conv_transpose2d")
    spec = QuantSpec(4, 16, w_granularity=PerGroup(8))
    with pytest.raises(ExportError, match="ConvTranspose2d"):
        check_expressible(QuantPlan({convt: spec}), inventory)

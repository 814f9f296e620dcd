"""Inventory: layer counts, MACs checked by hand, components, pairs and the data-flow graph."""

from __future__ import annotations

from collections import Counter

import pytest

from profiling.inventory import build_inventory, component_of


@pytest.fixture(scope="module")
def inv2(sam2_micro):
    return build_inventory(sam2_micro)


def test_counts_match_the_module_tree(inv2, sam2_micro) -> None:
    import torch.nn as nn

    kinds = Counter(layer.kind for layer in inv2.layers)
    mods = Counter(type(m).__name__ for m in sam2_micro.module.modules())
    assert kinds["linear"] == mods["Linear"]
    assert kinds["conv2d"] == mods["Conv2d"]
    assert kinds["conv_transpose2d"] == mods["ConvTranspose2d"] == 2
    assert kinds["matmul_qk"] == kinds["matmul_sv"] > 0
    weights = sum(layer.params for layer in inv2.layers)
    assert weights == sum(
        p.numel()
        for m in sam2_micro.module.modules()
        if isinstance(m, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d))
        for p in m.parameters(recurse=False)
    )


def test_macs_by_hand(inv2) -> None:
    layers = inv2.by_name()
    # patch embed: Conv2d 3->24, 7x7, stride 4 on 256 px -> 64x64 outputs
    assert layers["image_encoder.trunk.patch_embed.proj"].macs == 24 * 64 * 64 * 3 * 7 * 7
    # first block qkv: Linear 24 -> 72 on 64x64 tokens
    assert layers["image_encoder.trunk.blocks.0.attn.qkv"].macs == 64 * 64 * 24 * 72
    # first block attention: 8x8 windows -> 64 windows of 64 tokens, dim 24
    assert layers["image_encoder.trunk.blocks.0.attn.qk_matmul"].macs == 64 * 64 * 64 * 24
    assert layers["image_encoder.trunk.blocks.0.attn.qkv"].in_shape == [64, 8, 8, 24]  # windowed
    # mask decoder token->image cross attention: 7 tokens (obj, iou, 4 masks, 1 point + pad)
    site = layers["sam_mask_decoder.transformer.layers.0.cross_attn_token_to_image.qk_matmul"]
    q = layers["sam_mask_decoder.transformer.layers.0.cross_attn_token_to_image.q_proj"]
    k = layers["sam_mask_decoder.transformer.layers.0.cross_attn_token_to_image.k_proj"]
    assert site.macs == q.out_shape[1] * k.out_shape[1] * q.out_shape[2]


def test_memory_path_is_measured(inv2) -> None:
    comps = Counter(layer.component for layer in inv2.layers if layer.ran and layer.macs > 0)
    assert comps["memory_attention"] > 0 and comps["memory_encoder"] > 0


def test_components_and_pairs(inv2) -> None:
    assert component_of("sam_mask_decoder.iou_prediction_head.layers.0") == "mask_decoder"
    assert component_of("memory_attention.layers.0.self_attn.q_proj") == "memory_attention"
    ran = [layer.name for layer in inv2.layers if layer.ran]
    assert inv2.pairs == list(zip(ran, ran[1:]))
    assert all(not layer.ran for layer in inv2.layers[len(ran) :])


def test_graph_edges_follow_data_flow(inv2) -> None:
    g = inv2.graph
    blk = "image_encoder.trunk.blocks.0"
    assert g.has_edge(f"{blk}.attn.qkv", f"{blk}.attn.qk_matmul")
    assert g.has_edge(f"{blk}.attn.qk_matmul", f"{blk}.attn.sv_matmul")
    assert g.has_edge(f"{blk}.attn.sv_matmul", f"{blk}.attn.proj")
    assert not g.has_edge(f"{blk}.attn.qkv", f"{blk}.attn.proj")
    assert g.has_edge(f"{blk}.mlp.layers.0", f"{blk}.mlp.layers.1")
    # the memory encoder's output feeds memory attention keys on the next frame
    assert g.has_edge(
        "memory_encoder.out_proj", "memory_attention.layers.0.cross_attn_image.k_proj"
    )
    # unrelated branches are not connected directly
    assert not g.has_edge(f"{blk}.mlp.layers.1", "sam_mask_decoder.iou_prediction_head.layers.0")


def test_json_document(inv2) -> None:
    doc = inv2.to_json()
    assert doc["random_weights"] is True and doc["model"] == "sam2-micro"
    assert set(doc["layers"][0]) >= {
        "name",
        "kind",
        "component",
        "params",
        "macs",
        "in_shape",
        "out_shape",
    }


def test_sam_micro_inventory(sam_micro) -> None:
    inv = build_inventory(sam_micro)
    kinds = Counter(layer.kind for layer in inv.layers)
    assert kinds["conv_transpose2d"] == 2 and kinds["matmul_qk"] == 4 + 7
    assert {layer.component for layer in inv.layers} == {
        "image_encoder",
        "prompt_encoder",
        "mask_decoder",
    }


@pytest.mark.slow
def test_sam2_tiny_counts() -> None:
    from profiling.models import ModelSpec, build_model

    inv = build_inventory(build_model(ModelSpec("sam2.1-hiera-tiny", image_size=512)))
    kinds = Counter(layer.kind for layer in inv.layers)
    assert (kinds["linear"], kinds["conv2d"], kinds["conv_transpose2d"]) == (149, 20, 2)
    assert inv.total_params == 38_962_498

"""A checkpoint saved at one image size loads at another: SAM's position embeddings are
interpolated (and said so), SAM2's Hiera interpolates its own at run time."""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.nn.functional as F
from segment_anything.modeling.image_encoder import get_rel_pos

from profiling.errors import BadCheckpoint
from profiling.models import ModelSpec, build_model
from profiling.models.checkpoint import save_checkpoint


def _saved(name: str, size: int, path) -> dict[str, torch.Tensor]:
    loaded = build_model(ModelSpec(name, image_size=size, seed=5))
    save_checkpoint(loaded.module, path)
    return {k: v.clone() for k, v in loaded.module.state_dict().items()}


def test_sam_checkpoint_at_256_loads_at_512_with_interpolated_positions(tmp_path) -> None:
    path = tmp_path / "sam256.pt"
    saved = _saved("sam-micro", 256, path)
    loaded = build_model(ModelSpec("sam-micro", image_size=512, checkpoint=str(path)))
    note = loaded.resized_from
    assert note is not None and note["image_size"] == 256 and note["to_image_size"] == 512
    rel = [k for k in saved if k.endswith((".rel_pos_h", ".rel_pos_w"))]
    changed = [k for k in rel if saved[k].shape[0] == 31]  # the global-attention blocks
    assert sorted(note["tensors"]) == sorted(["image_encoder.pos_embed", *changed])
    assert note["tensors"]["image_encoder.pos_embed"] == [[1, 16, 16, 64], [1, 32, 32, 64]]
    state = loaded.module.state_dict()
    grid = saved["image_encoder.pos_embed"].permute(0, 3, 1, 2)
    want = F.interpolate(grid, size=(32, 32), mode="bicubic", align_corners=False)
    torch.testing.assert_close(state["image_encoder.pos_embed"], want.permute(0, 2, 3, 1))
    for key in changed:  # the table segment-anything's get_rel_pos would build at run time
        torch.testing.assert_close(
            get_rel_pos(32, 32, state[key]), get_rel_pos(32, 32, saved[key]), rtol=0, atol=0
        )
    for key in set(saved) - set(note["tensors"]):  # everything else as saved
        assert torch.equal(state[key], saved[key]), key
    image = torch.rand(1, 3, 512, 512) * 255
    sam: Any = loaded.module
    with torch.no_grad():
        emb = sam.image_encoder(sam.preprocess(image))
    assert emb.shape == (1, 64, 32, 32) and torch.isfinite(emb).all()


def test_same_size_checkpoint_says_nothing(tmp_path) -> None:
    path = tmp_path / "sam256.pt"
    _saved("sam-micro", 256, path)
    assert build_model(ModelSpec("sam-micro", checkpoint=str(path))).resized_from is None


def test_sam2_checkpoint_at_256_loads_at_512_hiera_interpolates_at_run_time(tmp_path) -> None:
    path = tmp_path / "sam2_256.pt"
    saved = _saved("sam2-micro", 256, path)
    loaded = build_model(ModelSpec("sam2-micro", image_size=512, checkpoint=str(path)))
    model: Any = loaded.module
    assert loaded.resized_from is None  # no tensor depends on the image size
    state = loaded.module.state_dict()
    assert all(torch.equal(state[k], saved[k]) for k in saved)
    trunk = model.image_encoder.trunk
    feats = trunk.patch_embed(torch.zeros(1, 3, 512, 512))
    pos = trunk._get_pos_embed(feats.shape[1:3])  # bicubic from the saved (fixed-size) table
    assert (
        pos.shape[1:3] == (128, 128)
        and trunk.pos_embed.shape == saved["image_encoder.trunk.pos_embed"].shape
    )
    with torch.no_grad():
        out = model.forward_image(torch.rand(1, 3, 512, 512))
    assert out["vision_features"].shape[-2:] == (32, 32)


def test_other_tensors_that_do_not_fit_are_named(tmp_path) -> None:
    path = tmp_path / "bad.pt"
    state = _saved("sam-micro", 256, path)
    state["image_encoder.patch_embed.proj.weight"] = torch.zeros(64, 3, 8, 8)
    torch.save({"model": state}, path)
    with pytest.raises(BadCheckpoint) as err:
        build_model(ModelSpec("sam-micro", image_size=512, checkpoint=str(path)))
    msg = str(err.value)
    assert "image_encoder.patch_embed.proj.weight (64, 3, 8, 8)" in msg
    assert "pos_embed" not in msg and "rel_pos" not in msg and "\n" not in msg

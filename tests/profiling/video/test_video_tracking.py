"""Real tracking on sam2-micro: the float model with FIFO is SAM2's own video predictor exactly;
Mutual-KV at threshold 1 is FIFO end to end; SIS keeps the bank within capacity and always
attends to the conditioning frame."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from PIL import Image

from profiling.models import LoadedModel
from profiling.video.clips import Clip, synthetic_clips
from profiling.video.cost import MemoryMeter
from profiling.video.folders import load_clips
from profiling.video.memory import FifoPolicy, MutualKVPolicy, SisPolicy
from profiling.video.track import encode_frames, frames_tensor, track_object
from profiling.video.validation import run_clip, video_ready


def stock_predictor(loaded: LoadedModel, state: dict[str, torch.Tensor]) -> Any:
    """sam2's ``SAM2VideoPredictor`` from the same micro config, with the same weights."""
    from profiling.models.sam2_build import sam2_config

    cfg = sam2_config("configs/sam2.1/sam2.1_hiera_t.yaml", loaded.spec.size, micro=True)
    cfg.model._target_ = "sam2.sam2_video_predictor.SAM2VideoPredictor"
    predictor = instantiate(cfg.model, _recursive_=True)
    predictor.load_state_dict(state)
    return predictor.eval()


def jpeg_clip(clip: Clip, folder: Path) -> Clip:
    """The clip written as a JPEG sequence and read back (what the predictor reads)."""
    folder.mkdir()
    for t, frame in enumerate(clip.frames):
        Image.fromarray(frame).save(folder / f"{t:05d}.jpg", quality=95)
    frames = load_clips(folder)[0].frames
    return Clip(clip.name, frames, clip.objects)


def test_float_fifo_matches_the_stock_sam2_video_predictor(
    micro128: LoadedModel, clip6: Clip, tmp_path: Path
) -> None:
    ready = video_ready(micro128)
    clip = jpeg_clip(clip6, tmp_path / "frames")
    obj = clip.objects[0]
    predictor = stock_predictor(micro128, ready.module.state_dict())
    with torch.inference_mode():
        state = predictor.init_state(str(tmp_path / "frames"))
        predictor.add_new_points_or_box(state, frame_idx=0, obj_id=obj.obj_id, box=obj.box)
        stock = {t: m[0, 0] for t, _, m in predictor.propagate_in_video(state)}
    assert sorted(stock) == list(range(len(clip)))

    feats = encode_frames(ready.module, frames_tensor(clip.frames, ready.module.image_size))
    ours = track_object(ready.module, feats, obj, clip.hw, "box", FifoPolicy())
    up = F.interpolate(ours, size=clip.hw, mode="bilinear", align_corners=False)[:, 0]
    for t in range(len(clip)):
        torch.testing.assert_close(up[t], stock[t].float(), rtol=0, atol=1e-5)
    assert any((stock[t] > 0).any() for t in range(1, len(clip)))  # a non-trivial track


def test_mutual_kv_threshold_one_equals_fifo_on_a_clip(micro128: LoadedModel, clip6: Clip) -> None:
    ready = video_ready(micro128).module
    fifo = run_clip(ready, clip6, FifoPolicy())
    mkv_policy = MutualKVPolicy(threshold=1.0)
    mkv = run_clip(ready, clip6, mkv_policy)
    assert not mkv_policy.stock  # the policy's memory replaced SAM2's own: same tensors
    torch.testing.assert_close(mkv.logits[1], fifo.logits[1], rtol=0, atol=0)
    assert [c.memory_tokens for c in mkv.costs] == [c.memory_tokens for c in fifo.costs]
    assert mkv_policy.events.get("reused", 0) == 0
    # a low threshold reuses keys and values: fewer memory tokens than FIFO
    low = MutualKVPolicy(threshold=-1.0)
    cheap = run_clip(ready, clip6, low)
    assert low.events["reused"] == len(clip6) - 2
    assert sum(c.memory_tokens for c in cheap.costs) < sum(c.memory_tokens for c in fifo.costs)


def test_sis_keeps_the_bank_within_capacity_and_the_conditioning_frame(
    micro128: LoadedModel,
) -> None:
    module = video_ready(micro128).module
    clip = synthetic_clips(1, frames=10, seed=3, long_side=96)[0]
    feats = encode_frames(module, frames_tensor(clip.frames, module.image_size))
    policy = SisPolicy(k=3, capacity=4)
    attended: list[torch.Tensor] = []
    inner = module.memory_attention.forward

    def spy(*args: Any, **kwargs: Any) -> Any:  # sees the memory after every hook
        attended.append(kwargs["memory"].detach().clone())
        return inner(*args, **kwargs)

    bank_sizes: list[int] = []
    add = policy.add

    def add_and_count(frame_idx: int, out: Any) -> None:
        add(frame_idx, out)
        bank_sizes.append(len(policy.slots))

    policy.add = add_and_count  # type: ignore[method-assign]
    module.memory_attention.forward = spy
    try:
        with MemoryMeter(module) as meter:
            track_object(module, feats, clip.objects[0], clip.hw, "box", policy, meter)
    finally:
        del module.memory_attention.forward
    assert policy.events["merged"] >= 1
    assert max(bank_sizes) <= 3 and all(c.slots <= 3 for c in meter.frames)
    # the conditioning frame (frame 0) is always the first spatial memory attended to
    cond = _cond_memory(module, feats, clip)
    hw = cond.shape[0]
    assert len(attended) == len(clip) - 1
    for mem, cost in zip(attended, meter.frames):
        torch.testing.assert_close(mem[:hw], cond, rtol=0, atol=1e-6)
        assert cost.memory_tokens == (cost.slots + 1) * hw
        assert mem.shape[0] >= cost.memory_tokens


def _cond_memory(module: Any, feats: list, clip: Clip) -> torch.Tensor:
    """Frame 0's memory features as memory attention reads them (tokens, 1, C)."""
    recorded: list[torch.Tensor] = []
    inner = module.memory_attention.forward

    def spy(*args: Any, **kwargs: Any) -> Any:
        recorded.append(kwargs["memory"].detach().clone())
        return inner(*args, **kwargs)

    module.memory_attention.forward = spy
    try:
        track_object(module, feats[:2], clip.objects[0], clip.hw, "box", FifoPolicy())
    finally:
        del module.memory_attention.forward
    mem = recorded[0]  # frame 1 attends to frame 0 only (plus object pointers)
    n_ptr = mem.shape[0] - int(np.prod(feats[0].sizes[-1]))
    return mem[: mem.shape[0] - n_ptr]

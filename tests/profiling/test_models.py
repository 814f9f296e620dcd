"""Model zoo: every spec builds, seeds and checkpoints round-trip, bad checkpoints fail clearly."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from profiling.errors import BadCheckpoint, BadInput, UnknownModel
from profiling.models import REGISTRY, ModelSpec, build_model
from profiling.models.adapter import Prompts, TaskAdapter
from profiling.models.checkpoint import read_state_dict, save_checkpoint

FULL_PARAMS = {
    "sam2.1-hiera-tiny": 38_962_498,
    "sam2.1-hiera-small": 46_060_354,
    "sam2.1-hiera-base-plus": 80_850_178,
    "sam2.1-hiera-large": 224_446_642,
    "sam-vit-b": 93_735_472,
    "sam-vit-l": 312_342_832,
    "sam-vit-h": 641_090_608,
}


def _image() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 255, (200, 300, 3), dtype=np.uint8)


def _run(loaded) -> torch.Tensor:
    prompts = Prompts(
        points=torch.tensor([[[50.0, 60.0]], [[200.0, 100.0]]]),
        labels=torch.ones(2, 1, dtype=torch.int32),
    )
    with torch.no_grad():
        return TaskAdapter(loaded)(_image(), prompts).logits


@pytest.mark.parametrize("name", ["sam2-micro", "sam-micro"])
def test_micro_specs_build_and_run(name: str) -> None:
    loaded = build_model(ModelSpec(name))
    assert 3e5 < loaded.num_params < 3e6
    out = _run(loaded)
    assert out.shape == (2, 1, 64, 64) and torch.isfinite(out).all()


def test_sam2_micro_is_about_two_million() -> None:
    assert 1.5e6 < build_model(ModelSpec("sam2-micro")).num_params < 2.5e6


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(FULL_PARAMS))
def test_full_specs_parameter_counts(name: str) -> None:
    loaded = build_model(ModelSpec(name))
    assert loaded.num_params == FULL_PARAMS[name]
    assert set(REGISTRY) >= set(FULL_PARAMS)


def test_seed_is_deterministic_and_matters() -> None:
    a = build_model(ModelSpec("sam2-micro", seed=1))
    b = build_model(ModelSpec("sam2-micro", seed=1))
    c = build_model(ModelSpec("sam2-micro", seed=2))
    assert a.weights_hash == b.weights_hash != c.weights_hash


@pytest.mark.parametrize("size", [128, 512])
def test_sam2_image_size_follows(size: int) -> None:
    loaded = build_model(ModelSpec("sam2-micro", image_size=size))
    rope = loaded.module.memory_attention.layers[0].self_attn
    assert list(rope.freqs_cis.shape)[0] == (size // 16) ** 2
    assert _run(loaded).shape[-1] == size // 4


@pytest.mark.parametrize("name", ["sam2-micro", "sam-micro"])
def test_checkpoint_round_trip_gives_identical_outputs(name: str, tmp_path) -> None:
    seeded = build_model(ModelSpec(name, seed=7))
    path = tmp_path / "model.pt"
    save_checkpoint(seeded.module, path)
    loaded = build_model(ModelSpec(name, checkpoint=str(path)))
    assert not loaded.random_weights and seeded.random_weights
    assert loaded.weights_hash == seeded.weights_hash
    assert torch.equal(_run(seeded), _run(loaded))


def test_bare_state_dict_is_accepted(tmp_path) -> None:
    seeded = build_model(ModelSpec("sam-micro", seed=3))
    torch.save(seeded.module.state_dict(), tmp_path / "bare.pth")
    loaded = build_model(ModelSpec("sam-micro", checkpoint=str(tmp_path / "bare.pth")))
    assert loaded.weights_hash == seeded.weights_hash


class _Evil:
    def __reduce__(self):  # pragma: no cover - must never run
        return (print, ("pwned",))


def test_bad_checkpoints(tmp_path) -> None:
    torch.save({"model": _Evil()}, tmp_path / "evil.pt")
    with pytest.raises(BadCheckpoint, match="weights_only"):
        build_model(ModelSpec("sam-micro", checkpoint=str(tmp_path / "evil.pt")))
    torch.save([torch.zeros(1)], tmp_path / "list.pt")
    with pytest.raises(BadCheckpoint, match="no state dict"):
        build_model(ModelSpec("sam-micro", checkpoint=str(tmp_path / "list.pt")))
    save_checkpoint(build_model(ModelSpec("sam-micro")).module, tmp_path / "sam.pt")
    with pytest.raises(BadCheckpoint, match="missing keys: .*unexpected keys"):
        build_model(ModelSpec("sam2-micro", checkpoint=str(tmp_path / "sam.pt")))
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(BadCheckpoint):
        build_model(ModelSpec("sam-micro", checkpoint=str(tmp_path / "junk.pt")))
    with pytest.raises(BadCheckpoint, match="does not exist"):
        build_model(ModelSpec("sam-micro", checkpoint=str(tmp_path / "none.pt")))


# bytes on which torch's weights-only unpickler raises something other than UnpicklingError
# (found by feeding it random bytes): each must still be one BadCheckpoint
ODD_BYTES = {
    "KeyError": "80026851",
    "IndexError": "8002870a44c657e11bc02ccfab77e914f53489fbc9f2875c75ba519a49e92323f4c9d1",
    "struct.error": "477ea64d2c36ffac",
}


@pytest.mark.parametrize("kind", sorted(ODD_BYTES))
def test_random_bytes_are_a_bad_checkpoint(kind: str, tmp_path) -> None:
    path = tmp_path / "garbage.pt"
    path.write_bytes(bytes.fromhex(ODD_BYTES[kind]))
    with pytest.raises(BadCheckpoint, match=f"cannot be read as plain tensors.*{kind}"):
        read_state_dict(path)


@pytest.mark.parametrize(
    "checkpoint, needle",
    [
        ("a\x00b.pt", "NUL byte"),
        ("/tmp/" + "n" * 256 + ".pt", "a name in the path is 259 bytes"),
        ("/tmp/" + "d/" * 2100 + "x.pt", "at most 4096"),
    ],
)
def test_impossible_checkpoint_paths_are_refused_by_name(checkpoint: str, needle: str) -> None:
    with pytest.raises(BadInput, match=f"checkpoint: .*{needle}"):
        ModelSpec("sam-micro", checkpoint=checkpoint)
    with pytest.raises(BadInput, match=needle):
        read_state_dict(checkpoint)


@pytest.mark.parametrize("seed", [-1, 2**31, 2**63])
def test_seed_outside_the_stored_range_is_refused(seed: int) -> None:
    with pytest.raises(BadInput, match="seed: must be an integer from 0 to 2147483647"):
        ModelSpec("sam-micro", seed=seed)


def test_unknown_model_lists_known_ones() -> None:
    with pytest.raises(UnknownModel, match="sam2.1-hiera-tiny.*sam-micro"):
        ModelSpec("sam3-giant")
    with pytest.raises(BadInput, match="image_size 300"):
        ModelSpec("sam2-micro", image_size=300)


def test_box_and_point_prompts_batch(sam2_micro, sam_micro) -> None:
    for loaded in (sam2_micro, sam_micro):
        adapter = TaskAdapter(loaded)
        both = Prompts(
            points=torch.tensor([[[50.0, 60.0]]]),
            labels=torch.ones(1, 1, dtype=torch.int32),
            boxes=torch.tensor([[10.0, 10.0, 150.0, 120.0]]),
        )
        with torch.no_grad():
            out = adapter(_image(), both)
        assert out.logits.shape[:2] == (1, 1) and out.iou.shape == (1, 1)
    with pytest.raises(BadInput):
        Prompts(points=torch.zeros(2, 1, 2), labels=torch.ones(3, 1))

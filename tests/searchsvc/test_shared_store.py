"""The shared store and a worker's inputs: the folder store round-trips files by name; a
worker without the checkpoint file or the calibration folder of the machine that asked for the
profile gets both from the store by content hash, or one clear error."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from profiling.errors import BitbudgetError
from profiling.models import ModelSpec
from profiling.sensitivity import ProfileRequest
from profiling.sensitivity.runner import calibration_of
from searchsvc.profiles.inputs import local_inputs, publish_inputs
from searchsvc.settings import Settings
from searchsvc.shared_store import StoreUnreachable, open_store


def test_folder_store_round_trip(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "store"))
    store.check()
    (tmp_path / "a.bin").write_bytes(b"abc")
    assert not store.has("x/a.bin")
    store.put("x/a.bin", tmp_path / "a.bin")
    assert store.has("x/a.bin") and store.fetch("x/a.bin", tmp_path / "copy.bin")
    assert (tmp_path / "copy.bin").read_bytes() == b"abc"
    assert not store.fetch("x/none", tmp_path / "none")
    with pytest.raises(StoreUnreachable, match="unknown scheme 'ftp'"):
        open_store("ftp://host/x")


def _folder(path: Path) -> Path:
    path.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        px = rng.integers(0, 255, (96, 128, 3), dtype=np.uint8)
        Image.fromarray(px).save(path / f"img{i}.png")
    return path


def test_a_worker_elsewhere_takes_its_inputs_from_the_store(tmp_path: Path) -> None:
    from profiling.models import build_model
    from profiling.models.checkpoint import save_checkpoint

    ckpt = tmp_path / "micro.pt"
    loaded = build_model(ModelSpec("sam2-micro"))
    save_checkpoint(loaded.module, ckpt)
    spec = ModelSpec("sam2-micro", checkpoint=str(ckpt))
    req = ProfileRequest(
        spec, "wais", ("w8a8",), images=2, holdout=1, source=str(_folder(tmp_path / "imgs"))
    )
    calib = calibration_of(req)
    store = open_store(str(tmp_path / "store"))
    ctx = SimpleNamespace(weights_hash=loaded.weights_hash, calibration_key=calib.key)
    ctx.walker = SimpleNamespace(calib=calib)
    publish_inputs(store, checkpoint=str(ckpt), ctx=ctx)

    # another machine: neither the checkpoint path nor the image folder exists there
    ckpt.unlink()
    for f in (tmp_path / "imgs").iterdir():
        f.unlink()
    (tmp_path / "imgs").rmdir()
    worker = Settings(data_dir=tmp_path / "worker")
    mine, got = local_inputs(worker, store, req, loaded.weights_hash, calib.key)
    assert Path(mine.model.checkpoint).is_file() and mine.model.checkpoint != str(ckpt)
    assert build_model(mine.model).weights_hash == loaded.weights_hash
    assert got.key == calib.key and len(got.samples) == 2

    empty = open_store(str(tmp_path / "empty"))
    with pytest.raises(BitbudgetError, match="neither in the shared store"):
        local_inputs(Settings(data_dir=tmp_path / "w2"), empty, req, loaded.weights_hash, calib.key)

"""Video-test fixtures: sam2-micro at 128 px, one short synthetic clip, one torch thread."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

from profiling.models import LoadedModel, ModelSpec, build_model
from profiling.video.clips import Clip, synthetic_clips


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Small models on a shared machine run fastest (and reproducibly) on one thread."""
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)


@pytest.fixture(scope="session")
def micro128() -> LoadedModel:
    return build_model(ModelSpec("sam2-micro", image_size=128))


@pytest.fixture(scope="session")
def clip6() -> Clip:
    """A 6-frame clip over the astronaut photograph, frames 128 px on the long side."""
    return synthetic_clips(1, frames=6, seed=0, long_side=128)[0]

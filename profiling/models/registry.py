"""Model specs: the registry of the SAM2.1 and SAM families, plus the micro test configs."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import Any

from profiling.errors import BadInput, UnknownModel

__all__ = [
    "ModelSpec",
    "FamilyInfo",
    "REGISTRY",
    "get_spec",
    "list_specs",
    "check_checkpoint_path",
    "MAX_SEED",
    "NAME_MAX",
    "PATH_MAX",
]

MAX_SEED = 2**31 - 1  # seeds are stored as 32-bit integers
NAME_MAX = 255  # bytes in one part of a path (Linux' NAME_MAX)
PATH_MAX = 4096  # bytes in a whole path (Linux' PATH_MAX)


def check_checkpoint_path(path: str) -> None:
    """Refuse a checkpoint path no file system can hold (a NUL byte, a name part over 255 bytes,
    over 4,096 bytes in all) with one line naming the field, before anything opens it."""
    if "\x00" in path:
        raise BadInput("checkpoint: the path contains a NUL byte")
    raw = os.fsencode(path)
    if len(raw) > PATH_MAX:
        raise BadInput(f"checkpoint: the path is {len(raw)} bytes long (at most {PATH_MAX})")
    longest = max((len(part) for part in raw.split(b"/")), default=0)
    if longest > NAME_MAX:
        raise BadInput(
            f"checkpoint: a name in the path is {longest} bytes long (at most {NAME_MAX})"
        )


@dataclass(frozen=True)
class FamilyInfo:
    """A registered architecture: which family, which config, its default image size."""

    name: str
    family: str  # "sam2" or "sam"
    config: str  # sam2 Hydra config name, or a SAM ViT size ("b", "l", "h"), or "micro"
    default_image_size: int
    image_sizes: tuple[int, ...]
    description: str


REGISTRY: dict[str, FamilyInfo] = {
    info.name: info
    for info in [
        FamilyInfo(
            "sam2.1-hiera-tiny",
            "sam2",
            "configs/sam2.1/sam2.1_hiera_t.yaml",
            1024,
            (256, 512, 1024),
            "SAM2.1 Hiera-T (38.9 M)",
        ),
        FamilyInfo(
            "sam2.1-hiera-small",
            "sam2",
            "configs/sam2.1/sam2.1_hiera_s.yaml",
            1024,
            (256, 512, 1024),
            "SAM2.1 Hiera-S (46.0 M)",
        ),
        FamilyInfo(
            "sam2.1-hiera-base-plus",
            "sam2",
            "configs/sam2.1/sam2.1_hiera_b+.yaml",
            1024,
            (256, 512, 1024),
            "SAM2.1 Hiera-B+ (80.8 M)",
        ),
        FamilyInfo(
            "sam2.1-hiera-large",
            "sam2",
            "configs/sam2.1/sam2.1_hiera_l.yaml",
            1024,
            (256, 512, 1024),
            "SAM2.1 Hiera-L (224.4 M)",
        ),
        FamilyInfo("sam-vit-b", "sam", "b", 1024, (256, 512, 1024), "SAM ViT-B (93.7 M)"),
        FamilyInfo("sam-vit-l", "sam", "l", 1024, (256, 512, 1024), "SAM ViT-L (312.3 M)"),
        FamilyInfo("sam-vit-h", "sam", "h", 1024, (256, 512, 1024), "SAM ViT-H (641.1 M)"),
        FamilyInfo(
            "sam2-micro",
            "sam2",
            "micro",
            256,
            (128, 256, 512),
            "micro SAM2 from the real sam2 modules (tests)",
        ),
        FamilyInfo(
            "sam-micro",
            "sam",
            "micro",
            256,
            (128, 256, 512),
            "micro SAM from the real segment-anything modules (tests)",
        ),
    ]
}


def list_specs() -> list[FamilyInfo]:
    """Every registered architecture, in registry order."""
    return list(REGISTRY.values())


@dataclass(frozen=True)
class ModelSpec:
    """What to build: a registered name, an image size, and weights (checkpoint or seed)."""

    name: str
    image_size: int | None = None
    checkpoint: str | None = None
    seed: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        info = get_spec(self.name)
        if isinstance(self.seed, bool) or not 0 <= self.seed <= MAX_SEED:
            raise BadInput(f"seed: must be an integer from 0 to {MAX_SEED}, got {self.seed!r}")
        if self.checkpoint is not None:
            check_checkpoint_path(self.checkpoint)
        if self.image_size is None:
            object.__setattr__(self, "image_size", info.default_image_size)
        if self.image_size not in info.image_sizes:
            sizes = ", ".join(str(s) for s in info.image_sizes)
            raise BadInput(
                f"image_size {self.image_size} is not supported by {self.name}; "
                f"choose one of {sizes}"
            )

    @property
    def info(self) -> FamilyInfo:
        return get_spec(self.name)

    @property
    def size(self) -> int:
        """The image size, resolved (never None after construction)."""
        assert self.image_size is not None
        return self.image_size

    @property
    def random_weights(self) -> bool:
        return self.checkpoint is None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def get_spec(name: str) -> FamilyInfo:
    """Look a name up; an unknown name lists the known ones."""
    try:
        return REGISTRY[name]
    except KeyError:
        known = ", ".join(REGISTRY)
        raise UnknownModel(f"unknown model {name!r}; known models: {known}") from None

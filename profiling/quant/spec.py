"""Quantization specs: granularity as a type and one frozen, validated ``QuantSpec`` per layer.

A candidate id such as ``"w4a8"`` names the weight and activation bits; everything else
(symmetry, granularity, weight-range method) defaults to the PTQ4SAM setup: asymmetric
per-channel weights, asymmetric per-tensor activations.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields
from typing import Any

from profiling.errors import BadInput

__all__ = [
    "W_BITS",
    "A_BITS",
    "W_METHODS",
    "PerTensor",
    "PerChannel",
    "PerGroup",
    "Granularity",
    "QuantSpec",
    "FLOAT_SPEC",
    "granularity_from_dict",
    "parse_candidate",
    "parse_option",
]

W_BITS = (2, 3, 4, 5, 6, 8, 16)
A_BITS = (4, 6, 8, 16)
W_METHODS = ("minmax", "percentile", "mse")


@dataclass(frozen=True)
class PerTensor:
    """One scale for the whole tensor."""

    @property
    def kind(self) -> str:
        return "per_tensor"

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.kind}


@dataclass(frozen=True)
class PerChannel:
    """One scale per slice along ``axis`` (for weights: the layer's output-channel axis)."""

    axis: int = 0

    @property
    def kind(self) -> str:
        return "per_channel"

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.kind, "axis": self.axis}


@dataclass(frozen=True)
class PerGroup:
    """One scale per ``group_size`` consecutive elements of each slice along ``axis``."""

    group_size: int
    axis: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.group_size, int) or self.group_size <= 0:
            raise BadInput(f"PerGroup.group_size: must be a positive int, got {self.group_size!r}")

    @property
    def kind(self) -> str:
        return "per_group"

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.kind, "group_size": self.group_size, "axis": self.axis}


Granularity = PerTensor | PerChannel | PerGroup
_GRANULARITY_TYPES: dict[str, type] = {
    "per_tensor": PerTensor,
    "per_channel": PerChannel,
    "per_group": PerGroup,
}


def granularity_from_dict(d: dict[str, Any], field_name: str = "granularity") -> Granularity:
    """Inverse of ``Granularity.to_dict``; an unknown type raises ``BadInput`` naming the field."""
    args = dict(d)
    kind = args.pop("type", None)
    if kind not in _GRANULARITY_TYPES:
        known = ", ".join(_GRANULARITY_TYPES)
        raise BadInput(f"{field_name}: unknown granularity type {kind!r}; known: {known}")
    try:
        return _GRANULARITY_TYPES[kind](**args)  # type: ignore[no-any-return]
    except TypeError as err:
        raise BadInput(f"{field_name}: {err}") from None


def _check_choice(name: str, value: object, allowed: tuple[object, ...]) -> None:
    if value not in allowed or isinstance(value, bool):
        raise BadInput(f"QuantSpec.{name}: {value!r} is not allowed; allowed: {list(allowed)}")


@dataclass(frozen=True)
class QuantSpec:
    """How one layer is quantized; ``16`` bits means left in float."""

    w_bits: int = 16
    a_bits: int = 16
    w_symmetric: bool = False
    a_symmetric: bool = False
    w_granularity: Granularity = field(default_factory=PerChannel)
    a_granularity: Granularity = field(default_factory=PerTensor)
    w_method: str = "minmax"
    a_log: bool = False  # PTQ4SAM AGQ: log2 levels for a matmul_sv site's post-softmax operand

    def __post_init__(self) -> None:
        _check_choice("w_bits", self.w_bits, W_BITS)
        _check_choice("a_bits", self.a_bits, A_BITS)
        _check_choice("w_method", self.w_method, W_METHODS)
        for name in ("w_symmetric", "a_symmetric", "a_log"):
            if not isinstance(getattr(self, name), bool):
                raise BadInput(f"QuantSpec.{name}: must be true or false")
        for name in ("w_granularity", "a_granularity"):
            if not isinstance(getattr(self, name), PerTensor | PerChannel | PerGroup):
                raise BadInput(f"QuantSpec.{name}: must be PerTensor, PerChannel or PerGroup")
        if self.a_log and (self.w_bits != 16 or self.a_bits >= 16):
            raise BadInput("QuantSpec.a_log: only for a weightless site quantized below 16 bits")

    @property
    def id(self) -> str:
        """The candidate id, e.g. ``"w4a8"`` (``"w16a8log"`` for the AGQ option of a site)."""
        return f"w{self.w_bits}a{self.a_bits}" + ("log" if self.a_log else "")

    @property
    def is_float(self) -> bool:
        """True when neither weights nor activations are quantized."""
        return self.w_bits == 16 and self.a_bits == 16

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form; ``from_dict`` inverts it."""
        out: dict[str, Any] = {f.name: getattr(self, f.name) for f in fields(self)}
        out["w_granularity"] = self.w_granularity.to_dict()
        out["a_granularity"] = self.a_granularity.to_dict()
        if not self.a_log:  # written only when set: specs made before it existed read the same
            del out["a_log"]
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> QuantSpec:
        """Build from ``to_dict`` output; unknown keys raise ``BadInput`` naming them."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise BadInput(f"QuantSpec: unknown field(s) {unknown}; known: {sorted(known)}")
        args = dict(d)
        for name in ("w_granularity", "a_granularity"):
            if isinstance(args.get(name), dict):
                args[name] = granularity_from_dict(args[name], f"QuantSpec.{name}")
        return cls(**args)


FLOAT_SPEC = QuantSpec()
_CANDIDATE = re.compile(r"^w(\d+)a(\d+)$")
_OPTION = re.compile(r"^(?:w16)?a(\d+)(log)?$")


def parse_candidate(cid: str, **overrides: Any) -> QuantSpec:
    """``"w4a8"`` -> ``QuantSpec(4, 8, **overrides)``; a bad id raises ``BadInput``."""
    m = _CANDIDATE.match(cid.strip().lower()) if isinstance(cid, str) else None
    if m is None:
        raise BadInput(
            f"candidate {cid!r}: expected 'w<bits>a<bits>' with weight bits in {list(W_BITS)} "
            f"and activation bits in {list(A_BITS)}"
        )
    return QuantSpec(w_bits=int(m.group(1)), a_bits=int(m.group(2)), **overrides)


def parse_option(cid: str, **overrides: Any) -> QuantSpec:
    """A layer's plan choice: a candidate id (``"w4a8"``) or an attention site's option id
    (``"a8"``, or ``"a8log"`` for PTQ4SAM's log2 quantizer on the post-softmax operand)."""
    m = _OPTION.match(cid.strip().lower()) if isinstance(cid, str) else None
    if m is None:
        return parse_candidate(cid, **overrides)
    return QuantSpec(w_bits=16, a_bits=int(m.group(1)), a_log=bool(m.group(2)), **overrides)

"""Per-option costs of a layer: memory bytes, BOPs, weight bits and latency.

Memory comes from the one size function (``solvers.sizes``); BOPs are MACs × w × a; latency is a
user lookup table ``{layer: {option: ms}}`` or a roofline over a ``HardwareProfile``
(``solvers/hardware/*.json``), which also says which (w, a) a layer may take.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from solvers import sizes
from solvers.latency_table import MeasuredProfile, is_measured, read_hardware_file

__all__ = [
    "FLOAT_BITS",
    "LayerDesc",
    "QuantConfig",
    "SupportRule",
    "HardwareProfile",
    "Hardware",
    "MeasuredProfile",
    "hardware_from_dict",
    "parse_candidate",
    "candidate_id",
    "memory_bytes",
    "bops",
    "weight_bits",
    "average_bits",
    "latency_from_table",
    "hardware_profiles",
    "load_hardware",
    "option_costs",
    "candidates_for",
    "cost_table",
    "SITE_KINDS",
    "parse_site_option",
    "site_option_costs",
    "site_cost_table",
]

FLOAT_BITS = 16  # a bit-width of 16 means "kept in float"
_CANDIDATE = re.compile(r"w(\d+)a(\d+)")
_SITE_OPTION = re.compile(r"a(\d+)(log)?")
SITE_KINDS = ("matmul_qk", "matmul_sv")  # attention matmul sites: two activation operands


def parse_candidate(candidate: str) -> tuple[int, int]:
    """``"w4a8"`` -> (4, 8); bits must be 1..8 or 16 (float)."""
    match = _CANDIDATE.fullmatch(candidate) if isinstance(candidate, str) else None
    if match is None:
        raise ValueError(
            f"candidate {candidate!r}: expected 'w<bits>a<bits>', e.g. 'w4a8' or 'w16a16'"
        )
    w, a = int(match[1]), int(match[2])
    for part, bits in (("weight", w), ("activation", a)):
        if not (1 <= bits <= 8 or bits == FLOAT_BITS):
            raise ValueError(f"candidate {candidate!r}: {part} bits must be 1..8 or 16, got {bits}")
    return w, a


def candidate_id(w: int, a: int) -> str:
    """(4, 8) -> ``"w4a8"`` (checked)."""
    cid = f"w{w}a{a}"
    parse_candidate(cid)
    return cid


@dataclass(frozen=True)
class LayerDesc:
    """A quantizable site: weight elements, out channels, bias elements, MACs per forward.

    Activation-only sites (softmax, matmul inputs) have ``numel == 0``; ``act_numel`` (elements
    read and written per forward) feeds the roofline's memory traffic and may be 0 if unknown.
    """

    name: str
    kind: str
    numel: int
    channels: int = 1
    bias_numel: int = 0
    macs: int = 0
    act_numel: int = 0

    def __post_init__(self) -> None:
        for key in ("numel", "channels", "bias_numel", "macs", "act_numel"):
            if getattr(self, key) < 0:
                raise ValueError(f"layer {self.name!r}: {key} must be >= 0")
        if self.numel and (self.channels <= 0 or self.numel % self.channels):
            raise ValueError(
                f"layer {self.name!r}: numel {self.numel} does not split "
                f"into {self.channels} channels"
            )


@dataclass(frozen=True)
class QuantConfig:
    """How quantized tensors are stored (passed through to ``solvers.sizes``)."""

    granularity: str = "per_channel"
    group_size: int | None = None
    symmetric: bool = False
    float_dtype: str = "bfloat16"


def memory_bytes(layer: LayerDesc, w: int, a: int, config: QuantConfig = QuantConfig()) -> int:
    """Stored bytes: weight (packed + scales, or float) + bias in float + activation qparams."""
    weight = 0
    if layer.numel:
        weight = sizes.weight_bytes(
            layer.numel,
            layer.channels,
            w,
            config.granularity,
            config.group_size,
            config.symmetric,
            config.float_dtype,
        )
    bias = sizes.float_bytes(layer.bias_numel, config.float_dtype)
    return weight + bias + sizes.activation_param_bytes(a, config.symmetric)


def bops(layer: LayerDesc, w: int, a: int) -> int:
    """Bit operations: MACs × w × a."""
    return layer.macs * w * a


def weight_bits(layer: LayerDesc, w: int) -> int:
    """Σ numel·w for this layer (the ``weight_bits`` resource; average bits = total / Σ numel)."""
    return layer.numel * w


def average_bits(layers: Iterable[LayerDesc], choices: Mapping[str, str]) -> float:
    """Parameter-weighted average weight bit-width of a plan's choices."""
    pairs = [
        (layer.numel, parse_candidate(choices[layer.name])[0]) for layer in layers if layer.numel
    ]
    total = sum(n for n, _ in pairs)
    return sum(n * w for n, w in pairs) / total if total else 0.0


def latency_from_table(
    table: Mapping[str, Mapping[str, float]], layer: str, candidate: str
) -> float:
    """A measured latency from a user table ``{layer: {option: ms}}``; gaps are named."""
    if layer not in table:
        raise ValueError(f"latency table: no entry for layer {layer!r}")
    if candidate not in table[layer]:
        raise ValueError(
            f"latency table: layer {layer!r} has no option {candidate!r}; "
            f"has {', '.join(table[layer])}"
        )
    value = float(table[layer][candidate])
    if not value >= 0:
        raise ValueError(f"latency table: {layer}.{candidate} must be >= 0, got {value}")
    return value


@dataclass(frozen=True)
class SupportRule:
    """Weight bits × activation bits (optionally only some layer kinds) run on one compute type."""

    w: tuple[int, ...]
    a: tuple[int, ...]
    compute: str
    kinds: tuple[str, ...] = ()

    def matches(self, w: int, a: int, kind: str) -> bool:
        """True when this rule covers (w, a) for a layer of ``kind``."""
        return w in self.w and a in self.a and (not self.kinds or kind in self.kinds)


@dataclass(frozen=True)
class HardwareProfile:
    """Peak ops per compute type, memory bandwidth and the supported (w, a) rules of a device."""

    name: str
    title: str
    peak_tops: dict[str, float]
    bandwidth_gbps: float
    rules: tuple[SupportRule, ...]
    sources: dict[str, Any] = field(default_factory=dict)
    kind: str = "estimate"  # a roofline from datasheet figures, not a measurement

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> HardwareProfile:
        """Read the ``bitbudget.hardware/v1`` JSON document."""
        if raw.get("format") != "bitbudget.hardware/v1":
            raise ValueError(
                "hardware profile: format must be 'bitbudget.hardware/v1', "
                f"got {raw.get('format')!r}"
            )
        peak = {k: float(v["value"]) for k, v in raw["peak_tops"].items()}
        rules = tuple(
            SupportRule(tuple(r["w"]), tuple(r["a"]), r["compute"], tuple(r.get("kinds", ())))
            for r in raw["supported"]
        )
        for rule in rules:
            if rule.compute not in peak:
                raise ValueError(
                    f"hardware profile {raw['name']}: rule uses unknown compute type "
                    f"{rule.compute!r}"
                )
        bandwidth = float(raw["memory_bandwidth_gbps"]["value"])
        return cls(
            raw["name"], raw["title"], peak, bandwidth, rules, {"sources": raw.get("sources", [])}
        )

    def compute_type(self, w: int, a: int, kind: str = "") -> str | None:
        """The compute type that runs (w, a) for this kind of layer, or None if unsupported."""
        return next((r.compute for r in self.rules if r.matches(w, a, kind)), None)

    def latency_ms(
        self, layer: LayerDesc, w: int, a: int, config: QuantConfig = QuantConfig()
    ) -> float:
        """Roofline: max(2·MACs / peak, bytes moved / bandwidth), in milliseconds."""
        compute = self.compute_type(w, a, layer.kind)
        if compute is None:
            raise ValueError(
                f"{self.name}: {candidate_id(w, a)} is not supported "
                f"for {layer.kind} layer {layer.name!r}"
            )
        moved = memory_bytes(layer, w, a, config) + layer.act_numel * min(a, FLOAT_BITS) / 8
        seconds = max(
            2.0 * layer.macs / (self.peak_tops[compute] * 1e12), moved / (self.bandwidth_gbps * 1e9)
        )
        return seconds * 1e3


def hardware_profiles() -> list[str]:
    """Names of the shipped profiles (``solvers/hardware/*.json``)."""
    folder = resources.files("solvers") / "hardware"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".json"))


Hardware = HardwareProfile | MeasuredProfile


def hardware_from_dict(raw: Mapping[str, Any]) -> Hardware:
    """A roofline estimate or, when it carries a ``latency_table``, a measured profile."""
    if is_measured(raw):
        return MeasuredProfile.from_dict(raw)
    return HardwareProfile.from_dict(raw)


def load_hardware(name: str | Path | Mapping[str, Any]) -> Hardware:
    """A shipped profile by name (e.g. ``nvidia_t4``), a JSON file path or a loaded document."""
    if isinstance(name, Mapping):
        return hardware_from_dict(name)
    if str(name).endswith(".json"):
        return hardware_from_dict(read_hardware_file(name))
    if str(name) not in hardware_profiles():
        raise ValueError(
            f"unknown hardware profile {str(name)!r}; known: {', '.join(hardware_profiles())}"
        )
    text = (resources.files("solvers") / "hardware" / f"{name}.json").read_text(encoding="utf-8")
    return HardwareProfile.from_dict(json.loads(text))


def candidates_for(
    layer: LayerDesc, candidates: Iterable[str], hardware: Hardware | None = None
) -> list[str]:
    """The candidates this layer may take (all of them without a hardware profile; those the
    table timed with a measured one)."""
    out = []
    for cid in candidates:
        w, a = parse_candidate(cid)
        if isinstance(hardware, MeasuredProfile):
            if hardware.has(layer.name, cid):
                out.append(cid)
        elif hardware is None or hardware.compute_type(w, a, layer.kind) is not None:
            out.append(cid)
    return out


def option_costs(
    layer: LayerDesc,
    candidate: str,
    *,
    hardware: Hardware | None = None,
    latency_table: Mapping[str, Mapping[str, float]] | None = None,
    config: QuantConfig = QuantConfig(),
) -> dict[str, float]:
    """memory_bytes, bops, weight_bits and (given a table or a profile) latency_ms of one option."""
    w, a = parse_candidate(candidate)
    out: dict[str, float] = {
        "memory_bytes": memory_bytes(layer, w, a, config),
        "bops": bops(layer, w, a),
        "weight_bits": weight_bits(layer, w),
    }
    if latency_table is not None:
        out["latency_ms"] = latency_from_table(latency_table, layer.name, candidate)
    elif isinstance(hardware, MeasuredProfile):
        out["latency_ms"] = hardware.layer_ms(layer.name, candidate)
    elif hardware is not None:
        out["latency_ms"] = hardware.latency_ms(layer, w, a, config)
    return out


def cost_table(
    layers: Iterable[LayerDesc],
    candidates: Iterable[str],
    *,
    hardware: Hardware | None = None,
    latency_table: Mapping[str, Mapping[str, float]] | None = None,
    config: QuantConfig = QuantConfig(),
) -> dict[str, dict[str, dict[str, float]]]:
    """{layer: {candidate: costs}} over the candidates each layer may take on ``hardware``."""
    wanted = list(candidates)
    return {
        layer.name: {
            cid: option_costs(
                layer, cid, hardware=hardware, latency_table=latency_table, config=config
            )
            for cid in candidates_for(layer, wanted, hardware)
        }
        for layer in layers
    }


def parse_site_option(option: str) -> tuple[int, bool]:
    """An attention site option: ``"a8"`` -> (8, False), ``"a4log"`` -> (4, True)."""
    match = _SITE_OPTION.fullmatch(option) if isinstance(option, str) else None
    bits = int(match[1]) if match else 0
    if match is None or not (1 <= bits <= 8 or (bits == FLOAT_BITS and not match[2])):
        raise ValueError(f"site option {option!r}: expected 'a<bits>' or 'a<bits>log', e.g. 'a8'")
    return bits, bool(match[2])


def site_option_costs(
    layer: LayerDesc,
    option: str,
    *,
    hardware: HardwareProfile | None = None,
    config: QuantConfig = QuantConfig(),
) -> dict[str, float] | None:
    """Costs of an attention matmul site at ``option`` (both operands at its width; a log2
    operand is costed as a uniform one of the same width): no weight, the two operands'
    stored qparams as memory, BOPs = MACs × a × a, and a roofline latency as a ``matmul``
    (a measured table's own cell). None when ``hardware`` cannot run that width, or when a
    measured table has no cell for it."""
    bits, _ = parse_site_option(option)
    out: dict[str, float] = {
        "memory_bytes": 2 * sizes.activation_param_bytes(bits, config.symmetric),
        "bops": layer.macs * bits * bits,
        "weight_bits": 0,
    }
    if isinstance(hardware, MeasuredProfile):
        # a table times the layers it names; a site it does not name stays float, its float
        # time inside the table's non-layer constant (fixed_ms)
        if not hardware.has(layer.name, option):
            return None
        out["latency_ms"] = hardware.layer_ms(layer.name, option)
    elif hardware is not None:
        compute = hardware.compute_type(bits, bits, "matmul")
        if compute is None:
            return None
        seconds = max(
            2.0 * layer.macs / (hardware.peak_tops[compute] * 1e12),
            (out["memory_bytes"] + layer.act_numel * bits / 8) / (hardware.bandwidth_gbps * 1e9),
        )
        out["latency_ms"] = seconds * 1e3
    return out


def site_cost_table(
    layers: Iterable[LayerDesc],
    options: Mapping[str, Iterable[str]],
    *,
    hardware: HardwareProfile | None = None,
    config: QuantConfig = QuantConfig(),
) -> dict[str, dict[str, dict[str, float]]]:
    """{site: {option: costs}} over the options (``options[site]``) the hardware can run."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for layer in layers:
        costs = {
            o: site_option_costs(layer, o, hardware=hardware, config=config)
            for o in options[layer.name]
        }
        out[layer.name] = {o: c for o, c in costs.items() if c is not None}
    return out

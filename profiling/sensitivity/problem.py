"""``problem_from_profile``: a profile, the model's inventory and a budget -> solver Problem."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from profiling.errors import BadInput
from profiling.sensitivity.profile import Profile
from profiling.sensitivity.synergy import pair_matrix
from solvers import Problem
from solvers.costs import (
    SITE_KINDS,
    LayerDesc,
    MeasuredProfile,
    cost_table,
    load_hardware,
    site_cost_table,
)
from solvers.latency_table import check_table, is_measured, read_hardware_file
from solvers.objectives import mix_qsam2_problem, mix_qsam_problem, profiled_problem
from solvers.sizes import float_bytes

__all__ = [
    "problem_from_profile",
    "layer_descs",
    "site_descs",
    "pinned_candidate",
    "fixed_memory_bytes",
]

RESOURCES = ("memory_bytes", "latency_ms", "bops", "avg_bits")


def layer_descs(inventory: dict[str, Any]) -> dict[str, LayerDesc]:
    """Cost descriptions of every weight layer in an inventory JSON document."""
    out = {}
    for x in inventory["layers"]:
        if x.get("weight_numel"):
            out[x["name"]] = LayerDesc(
                name=x["name"],
                kind=x["kind"],
                numel=x["weight_numel"],
                channels=x["channels"],
                bias_numel=x["params"] - x["weight_numel"],
                macs=x["macs"],
            )
    return out


def site_descs(inventory: dict[str, Any]) -> dict[str, LayerDesc]:
    """Cost descriptions of the attention matmul sites of an inventory (no weight; MACs)."""
    return {
        x["name"]: LayerDesc(name=x["name"], kind=x["kind"], numel=0, macs=x["macs"])
        for x in inventory["layers"]
        if x["kind"] in SITE_KINDS
    }


def fixed_memory_bytes(inventory: dict[str, Any], float_dtype: str = "bfloat16") -> int:
    """Stored bytes of everything outside the weight layers, as the packer stores it: the state
    dict's other floating-point tensors (norms, embeddings, buffers) in ``float_dtype`` and its
    non-float tensors as they are. Inventories made before buffers were counted
    (no ``state_float_numel``) fall back to the parameters alone."""
    weights = sum(int(x["params"]) for x in inventory["layers"] if x.get("weight_numel"))
    floats = int(inventory.get("state_float_numel") or inventory["total_params"])
    return float_bytes(floats - weights, float_dtype) + int(inventory.get("state_other_bytes", 0))


def pinned_candidate(candidates: list[str]) -> str:
    """The candidate unmeasured layers keep: the most precise quantized one."""
    quantized = [c for c in candidates if c != "w16a16"]
    return max(
        quantized or candidates, key=lambda c: (int(c[1:].split("a")[0]), int(c.split("a")[1]))
    )


def problem_from_profile(
    profile: Profile,
    inventory: dict[str, Any],
    budget: dict[str, Any],
    hardware: str | Mapping[str, Any] | None = None,
    pair_profile: Profile | None = None,
    options: dict[str, Any] | None = None,
) -> Problem:
    """Build the solver problem; layers the profile could not measure are pinned."""
    unknown = set(budget) - set(RESOURCES)
    if unknown:
        raise BadInput(f"budget: unknown resource {sorted(unknown)}; known: {', '.join(RESOURCES)}")
    hw = _hardware(hardware, inventory, profile.candidates)
    if budget.get("latency_ms") is not None and hw is None:
        raise BadInput("a latency budget needs a hardware profile")
    descs = layer_descs(inventory)
    opts = options or {}
    measured = _measured(profile)
    sites = [d for n, d in site_descs(inventory).items() if n in measured]
    problem = _core(profile, [descs[n] for n in descs if n in measured], hw, opts, sites)
    raw = problem.to_dict()
    pin = pinned_candidate(profile.candidates)
    pinned = [d for n, d in descs.items() if n not in measured]
    pinned_costs = cost_table(pinned, [pin], hardware=hw)
    raw["layers"] += [
        {"name": n, "options": [{"id": pin, "loss": 0.0, **c[pin]}]}
        for n, c in pinned_costs.items()
    ]
    for key in ("bops", "weight_bits"):  # a builder's target-width budgets cover its own layers
        if raw["budget"].get(key) is not None:
            raw["budget"][key] += sum(c[pin].get(key, 0.0) for c in pinned_costs.values())
    if pair_profile is not None and profile.metric not in ("mixqsam", "wais"):
        raw["pairs"] += _pairs(pair_profile, raw["layers"])
    raw["fixed"] = {
        "memory_bytes": float(fixed_memory_bytes(inventory)),
        "bops": 0.0,
        "weight_bits": 0.0,
    } | ({"latency_ms": hw.fixed_ms if isinstance(hw, MeasuredProfile) else 0.0} if hw else {})
    raw["budget"] = _budget(budget, sum(d.numel for d in descs.values()), raw["budget"])
    raw.setdefault("meta", {}).update(
        {
            "profile": profile.key,
            "pinned": {d.name: pin for d in pinned},
            "random_weights": profile.random_weights,
        }
    )
    return Problem.from_dict(raw)


def _hardware(
    hardware: str | Mapping[str, Any] | None, inventory: dict[str, Any], candidates: list[str]
) -> Any:
    """The roofline or measured profile; a measured table must be for this model and size and
    time every layer at every candidate."""
    if not hardware:
        return None
    try:
        doc = read_hardware_file(hardware) if isinstance(hardware, str) else hardware
        if is_measured(doc):
            check_table(doc, inventory, candidates)
        return load_hardware(doc)
    except ValueError as exc:  # TableError, unknown names, unreadable files: the user's input
        raise BadInput(f"hardware: {exc}") from None


def _measured(profile: Profile) -> set[str]:
    return set(profile.layers) | set(profile.scores)


def _core(
    profile: Profile,
    descs: list[LayerDesc],
    hw: Any,
    opts: dict[str, Any],
    sites: list[LayerDesc] | None = None,
) -> Problem:
    if profile.metric == "mixqsam":
        syn = {(s["a"], s["b"]): s["value"] for s in profile.synergy}
        names = [d.name for d in descs]
        return mix_qsam_problem(
            descs,
            [profile.scores[n] for n in names],
            [syn.get((a, b), 0.0) for a, b in zip(names, names[1:])],
            bits=opts.get("bits", (4, 6, 8)),
            target_bits=opts.get("target_bits", 8),
            hardware=hw,
        )
    if profile.metric == "wais":
        return mix_qsam2_problem(
            descs,
            [profile.scores[d.name] for d in descs],
            bits=opts.get("bits", (3, 4, 5, 6, 8)),
            avg_bits=opts.get("target_bits", 8),
            act_bits=opts.get("act_bits", 8),
            hardware=hw,
        )
    if profile.metric == "synergy":
        raise BadInput(
            "a synergy profile holds pair terms only; pair it with a kl or fisher_kl profile"
        )
    losses = profile.losses()
    costs = cost_table(descs, profile.candidates, hardware=hw)
    sites = sites or []
    costs |= site_cost_table(sites, {d.name: list(losses[d.name]) for d in sites}, hardware=hw)
    empty = {d.name for d in sites if not costs[d.name]}  # no width the hardware runs: float
    costs = {n: c for n, c in costs.items() if n not in empty}
    losses = {
        n: {c: v for c, v in t.items() if c in costs[n]} for n, t in losses.items() if n in costs
    }
    return profiled_problem(losses, costs)


def _pairs(pair_profile: Profile, layers: list[dict[str, Any]]) -> list[dict[str, Any]]:
    opts = {x["name"]: [o["id"] for o in x["options"]] for x in layers}
    return [
        {
            "a": p["a"],
            "b": p["b"],
            "loss": pair_matrix(p["interaction"], opts[p["a"]], opts[p["b"]], pair_profile.probes),
        }
        for p in pair_profile.pairs
        if p["a"] in opts and p["b"] in opts
    ]


def _budget(budget: dict[str, Any], numel: int, builder: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in builder.items() if k not in ("weight_bits",)}
    for key in ("memory_bytes", "latency_ms", "bops"):
        if budget.get(key) is not None:
            if float(budget[key]) <= 0:
                raise BadInput(f"budget.{key} must be positive")
            out[key] = float(budget[key])
    if budget.get("avg_bits") is not None:
        if not 1 <= float(budget["avg_bits"]) <= 16:
            raise BadInput("budget.avg_bits must be between 1 and 16")
        out["weight_bits"] = float(budget["avg_bits"]) * numel
    elif (
        "weight_bits" in builder
        and builder["weight_bits"] is not None
        and not any(budget.get(k) is not None for k in ("memory_bytes", "latency_ms", "bops"))
    ):
        out["weight_bits"] = builder["weight_bits"]
    return out

"""The solver's input (``Problem``) and output (``Plan``), as the JSON of DESIGN.md.

Both formats are specified in full in docs/formats.md. Every validation failure raises
``ProblemError`` (a ``ValueError``) whose message starts with the offending field's path, e.g.
``layers[3].options[1].memory_bytes: must be finite and >= 0``.
"""

from __future__ import annotations

import copy
import functools
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "PROBLEM_FORMAT",
    "PLAN_FORMAT",
    "RESOURCES",
    "STATUSES",
    "ProblemError",
    "Option",
    "Layer",
    "Pair",
    "Problem",
    "Plan",
]

PROBLEM_FORMAT = "bitbudget.problem/v1"
PLAN_FORMAT = "bitbudget.plan/v1"
# weight_bits (Σ numel·w) is an added resource: average weight bits = weight_bits / Σ numel.
RESOURCES = ("memory_bytes", "bops", "latency_ms", "weight_bits")
STATUSES = ("optimal", "feasible", "infeasible", "unknown")


class ProblemError(ValueError):
    """A problem or plan document that does not follow the format; the message names the field."""


def _fail(path: str, why: str) -> ProblemError:
    return ProblemError(f"{path}: {why}")


def _number(value: Any, path: str) -> float:
    """Return ``value`` if it is a finite number >= 0 (ints stay ints), else raise."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _fail(path, f"must be a number, got {type(value).__name__}")
    if not math.isfinite(value) or value < 0:
        raise _fail(path, "must be finite and >= 0")
    return value


def _text(value: Any, path: str) -> str:
    if not isinstance(value, str) or not value:
        raise _fail(path, "must be a non-empty string")
    return value


def _mapping(value: Any, path: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _fail(path, f"must be an object, got {type(value).__name__}")
    return value


def _sequence(value: Any, path: str) -> list[Any]:
    if not isinstance(value, list):
        raise _fail(path, f"must be a list, got {type(value).__name__}")
    return value


def _resource_map(raw: Any, path: str, *, nullable: bool) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for key, value in _mapping(raw, path).items():
        if key not in RESOURCES:
            raise _fail(f"{path}.{key}", f"unknown resource; known: {', '.join(RESOURCES)}")
        out[key] = None if (nullable and value is None) else _number(value, f"{path}.{key}")
    return out


@dataclass(frozen=True)
class Option:
    """One candidate for a layer: its id (e.g. ``w4a8``), loss and per-resource costs."""

    id: str
    loss: float
    costs: dict[str, float] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, raw: Any, path: str) -> Option:
        """Parse one option object; unknown keys are kept in ``extra``."""
        raw = _mapping(raw, path)
        if "id" not in raw or "loss" not in raw:
            raise _fail(path, "needs 'id' and 'loss'")
        costs = {r: _number(raw[r], f"{path}.{r}") for r in RESOURCES if r in raw}
        extra = {k: v for k, v in raw.items() if k not in costs and k not in ("id", "loss")}
        return cls(
            _text(raw["id"], f"{path}.id"), _number(raw["loss"], f"{path}.loss"), costs, extra
        )

    def to_dict(self) -> dict[str, Any]:
        """The option as JSON-ready data."""
        return {"id": self.id, "loss": self.loss, **self.costs, **self.extra}


@dataclass(frozen=True)
class Layer:
    """A layer (keyed by fully qualified module name) and its candidate options."""

    name: str
    options: list[Option]
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, raw: Any, path: str) -> Layer:
        """Parse one layer object."""
        raw = _mapping(raw, path)
        name = _text(raw.get("name"), f"{path}.name")
        items = _sequence(raw.get("options"), f"{path}.options")
        options = [Option.from_dict(o, f"{path}.options[{i}]") for i, o in enumerate(items)]
        extra = {k: v for k, v in raw.items() if k not in ("name", "options")}
        return cls(name, options, extra)

    def to_dict(self) -> dict[str, Any]:
        """The layer as JSON-ready data."""
        return {"name": self.name, "options": [o.to_dict() for o in self.options], **self.extra}

    def option_ids(self) -> list[str]:
        """The option ids in order."""
        return [o.id for o in self.options]


@dataclass(frozen=True)
class Pair:
    """A pair term: ``loss[i][j]`` is added when ``a`` takes option i and ``b`` option j."""

    a: str
    b: str
    loss: list[list[float]]
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, raw: Any, path: str) -> Pair:
        """Parse one pair object (shape is checked against the layers by ``Problem``)."""
        raw = _mapping(raw, path)
        rows = _sequence(raw.get("loss"), f"{path}.loss")
        matrix = [
            [
                _number(v, f"{path}.loss[{i}][{j}]")
                for j, v in enumerate(_sequence(r, f"{path}.loss[{i}]"))
            ]
            for i, r in enumerate(rows)
        ]
        extra = {k: v for k, v in raw.items() if k not in ("a", "b", "loss")}
        return cls(
            _text(raw.get("a"), f"{path}.a"), _text(raw.get("b"), f"{path}.b"), matrix, extra
        )

    def to_dict(self) -> dict[str, Any]:
        """The pair as JSON-ready data."""
        return {"a": self.a, "b": self.b, "loss": self.loss, **self.extra}

    @functools.cached_property
    def matrix(self) -> np.ndarray:
        """``loss`` as a float array (computed once)."""
        return np.asarray(self.loss, dtype=np.float64)


@dataclass(frozen=True)
class Problem:
    """Choose one option per layer; minimise Σ loss + Σ pair loss under every non-null budget."""

    layers: list[Layer]
    pairs: list[Pair] = field(default_factory=list)
    ties: list[list[str]] = field(default_factory=list)
    fixed: dict[str, float] = field(default_factory=dict)
    budget: dict[str, float | None] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _validate(self)

    @classmethod
    def from_dict(cls, raw: Any) -> Problem:
        """Parse and validate a problem document."""
        raw = _mapping(raw, "problem")
        if raw.get("format") != PROBLEM_FORMAT:
            raise _fail("format", f"must be {PROBLEM_FORMAT!r}, got {raw.get('format')!r}")
        layers = _sequence(raw.get("layers"), "layers")
        pairs = _sequence(raw.get("pairs", []), "pairs")
        ties = [
            [_text(n, f"ties[{i}][{j}]") for j, n in enumerate(_sequence(t, f"ties[{i}]"))]
            for i, t in enumerate(_sequence(raw.get("ties", []), "ties"))
        ]
        fixed = _resource_map(raw.get("fixed", {}), "fixed", nullable=False)
        known = ("format", "layers", "pairs", "ties", "fixed", "budget")
        return cls(
            layers=[Layer.from_dict(item, f"layers[{i}]") for i, item in enumerate(layers)],
            pairs=[Pair.from_dict(item, f"pairs[{i}]") for i, item in enumerate(pairs)],
            ties=ties,
            fixed={k: v for k, v in fixed.items() if v is not None},
            budget=_resource_map(raw.get("budget", {}), "budget", nullable=True),
            extra={k: v for k, v in raw.items() if k not in known},
        )

    def to_dict(self) -> dict[str, Any]:
        """The problem as JSON-ready data (the same document ``from_dict`` reads)."""
        return {
            "format": PROBLEM_FORMAT,
            "layers": [layer.to_dict() for layer in self.layers],
            "pairs": [p.to_dict() for p in self.pairs],
            "ties": [list(t) for t in self.ties],
            "fixed": dict(self.fixed),
            "budget": dict(self.budget),
            **self.extra,
        }

    @classmethod
    def from_json(cls, text: str) -> Problem:
        """Parse JSON text; malformed JSON is a ``ProblemError`` too."""
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ProblemError(f"problem: not valid JSON ({exc})") from None
        return cls.from_dict(raw)

    def to_json(self, indent: int | None = None) -> str:
        """The problem as JSON text."""
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def load(cls, path: str | Path) -> Problem:
        """Read a problem file."""
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ProblemError(f"problem: cannot read {path} ({exc})") from None
        return cls.from_json(text)

    @functools.cached_property
    def carried(self) -> tuple[str, ...]:
        """The resources every option of every layer carries."""
        return tuple(
            r for r in RESOURCES if all(r in o.costs for x in self.layers for o in x.options)
        )

    def constrained(self) -> dict[str, float]:
        """The resources with a non-null budget, mapped to their budgets."""
        return {r: float(v) for r, v in self.budget.items() if v is not None}

    def with_budget(self, **budget: float | None) -> Problem:
        """A copy with some budgets replaced (``None`` lifts one); only the budget is re-checked."""
        out = copy.copy(self)
        object.__setattr__(out, "budget", {**self.budget, **budget})
        _validate_budget(out)
        return out


def _validate_layers(layers: list[Layer]) -> dict[str, int]:
    if not layers:
        raise _fail("layers", "must list at least one layer")
    index: dict[str, int] = {}
    for i, layer in enumerate(layers):
        if layer.name in index:
            raise _fail(
                f"layers[{i}].name", f"duplicate {layer.name!r} (as layers[{index[layer.name]}])"
            )
        index[layer.name] = i
        if not layer.options:
            raise _fail(f"layers[{i}].options", "a layer needs at least one option")
        ids: set[str] = set()
        for j, opt in enumerate(layer.options):
            path = f"layers[{i}].options[{j}]"
            if opt.id in ids:
                raise _fail(f"{path}.id", f"duplicate option id {opt.id!r}")
            ids.add(opt.id)
            _number(opt.loss, f"{path}.loss")
            for key, value in opt.costs.items():
                _resource_map({key: value}, path, nullable=False)
    return index


def _validate_pairs(p: Problem, index: dict[str, int]) -> None:
    for k, pair in enumerate(p.pairs):
        for end in ("a", "b"):
            if getattr(pair, end) not in index:
                raise _fail(f"pairs[{k}].{end}", f"unknown layer {getattr(pair, end)!r}")
        if pair.a == pair.b:
            raise _fail(f"pairs[{k}].b", "a pair needs two different layers")
        rows, cols = (len(p.layers[index[n]].options) for n in (pair.a, pair.b))
        if len(pair.loss) != rows or any(len(r) != cols for r in pair.loss):
            got = f"{len(pair.loss)}x{','.join(sorted({str(len(r)) for r in pair.loss})) or '0'}"
            raise _fail(f"pairs[{k}].loss", f"must be {rows}x{cols} (options of a x b), got {got}")
        for i, row in enumerate(pair.loss):
            for j, value in enumerate(row):
                _number(value, f"pairs[{k}].loss[{i}][{j}]")


def _validate_ties(p: Problem, index: dict[str, int]) -> None:
    parent = list(range(len(p.layers)))

    def root(i: int) -> int:
        while parent[i] != i:
            i = parent[i]
        return i

    for k, tie in enumerate(p.ties):
        if len(tie) < 2 or len(set(tie)) != len(tie):
            raise _fail(f"ties[{k}]", "a tie needs at least two different layers")
        for j, name in enumerate(tie):
            if name not in index:
                raise _fail(f"ties[{k}][{j}]", f"unknown layer {name!r}")
            parent[root(index[name])] = root(index[tie[0]])
    for k, tie in enumerate(p.ties):
        group = [layer for i, layer in enumerate(p.layers) if root(i) == root(index[tie[0]])]
        if not set.intersection(*(set(layer.option_ids()) for layer in group)):
            names = ", ".join(layer.name for layer in group)
            raise _fail(f"ties[{k}]", f"tied layers {names} share no option id")


def _validate(p: Problem) -> None:
    """Raise ``ProblemError`` naming the first field that breaks the format's rules."""
    index = _validate_layers(p.layers)
    _resource_map(p.fixed, "fixed", nullable=False)
    _validate_budget(p)
    _validate_pairs(p, index)
    _validate_ties(p, index)


def _validate_budget(p: Problem) -> None:
    """Budgets name known resources, are finite and >= 0, and every option carries them."""
    _resource_map(p.budget, "budget", nullable=True)
    for resource in p.constrained():
        if resource in p.carried:
            continue
        for i, layer in enumerate(p.layers):
            for j, opt in enumerate(layer.options):
                if resource not in opt.costs:
                    path = f"layers[{i}].options[{j}].{resource}"
                    raise _fail(path, f"missing, but budget.{resource} is set")


@dataclass(frozen=True)
class Plan:
    """A solver's answer: a status that is never assumed, choices, objective, bound and totals."""

    status: str
    choices: dict[str, str]
    objective: float | None
    bound: float | None
    totals: dict[str, float]
    solver: str
    solve_seconds: float
    gap: float | None = None
    explanation: dict[str, dict[str, float]] | None = None
    scaling_error: dict[str, float] | None = None
    message: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise _fail("status", f"must be one of {', '.join(STATUSES)}, got {self.status!r}")

    @classmethod
    def from_dict(cls, raw: Any) -> Plan:
        """Parse a plan document."""
        raw = _mapping(raw, "plan")
        if raw.get("format") != PLAN_FORMAT:
            raise _fail("format", f"must be {PLAN_FORMAT!r}, got {raw.get('format')!r}")
        known: tuple[str, ...] = ("format", "status", "choices", "objective", "bound", "totals")
        known += ("solver", "solve_seconds", "gap", "explanation", "scaling_error", "message")
        return cls(
            status=raw.get("status", ""),
            choices=dict(_mapping(raw.get("choices", {}), "choices")),
            objective=raw.get("objective"),
            bound=raw.get("bound"),
            totals=dict(_mapping(raw.get("totals", {}), "totals")),
            solver=str(raw.get("solver", "")),
            solve_seconds=float(_number(raw.get("solve_seconds", 0.0), "solve_seconds")),
            gap=raw.get("gap"),
            explanation=raw.get("explanation"),
            scaling_error=raw.get("scaling_error"),
            message=str(raw.get("message", "")),
            extra={k: v for k, v in raw.items() if k not in known},
        )

    def to_dict(self) -> dict[str, Any]:
        """The plan as JSON-ready data; optional fields appear only when set."""
        out: dict[str, Any] = {"format": PLAN_FORMAT, "status": self.status}
        out |= {"choices": dict(self.choices), "objective": self.objective, "bound": self.bound}
        out |= {"totals": dict(self.totals), "solver": self.solver}
        out |= {"solve_seconds": self.solve_seconds, "gap": self.gap}
        for key in ("explanation", "scaling_error"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        if self.message:
            out["message"] = self.message
        return out | self.extra

    @classmethod
    def from_json(cls, text: str) -> Plan:
        """Parse plan JSON text."""
        try:
            return cls.from_dict(json.loads(text))
        except json.JSONDecodeError as exc:
            raise ProblemError(f"plan: not valid JSON ({exc})") from None

    def to_json(self, indent: int | None = None) -> str:
        """The plan as JSON text."""
        return json.dumps(self.to_dict(), indent=indent)

    @property
    def has_solution(self) -> bool:
        """True when the plan carries choices that meet every budget."""
        return self.status in ("optimal", "feasible")

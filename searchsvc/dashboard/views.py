"""What each dashboard page shows, computed from the database (read-only: a model page shows the
exact Pareto front when a job built one, else the fast front, as ``GET /v1/models/{id}/pareto``
does, and stores nothing).
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from searchsvc.catalog import repository as models
from searchsvc.dashboard import queries
from searchsvc.db.tables import ModelRow, PlanRow, ProfileRow, ValidationRow
from searchsvc.errors import BadInput, NotFound
from searchsvc.settings import Settings

__all__ = [
    "RESOURCES",
    "Y_METRICS",
    "PageInfo",
    "model_cards",
    "front_view",
    "plan_points",
    "plan_heatmap",
    "size_breakdown",
    "validation_view",
    "refinement_view",
    "jf_of",
    "layer_groups",
]

MB = 1_000_000
GIGA = 1_000_000_000

# resource -> (axis label, divisor to the axis unit)
RESOURCES: dict[str, tuple[str, float]] = {
    "memory_bytes": ("memory (MB)", MB),
    "latency_ms": ("latency (ms)", 1.0),
    "bops": ("BOPs (G)", GIGA),
}
# y metric -> axis label (loss is predicted; the others are measured by a validation)
Y_METRICS: dict[str, str] = {
    "loss": "predicted loss (objective)",
    "iou": "measured mask IoU vs float",
    "kl": "measured output KL vs float",
    "jf": "measured video J&F",
}


@dataclass
class PageInfo:
    """Where a paginated list stands."""

    page: int
    per_page: int
    total: int

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.per_page))

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.per_page


# --------------------------------------------------------------------------------------- models


def _front_points(points: list[tuple[float, float, int]]) -> list[int]:
    """Ids of the non-dominated (memory, loss) points, cheapest first."""
    best: list[int] = []
    lowest = float("inf")
    for _, loss, plan_id in sorted(points):
        if loss < lowest:
            best.append(plan_id)
            lowest = loss
    return best


def model_cards(session: Session, rows: list[ModelRow]) -> list[dict[str, Any]]:
    """Per model on a page: size, profiling state, plan counts and its best plans."""
    from solvers.sizes import float_bytes

    ids = [m.id for m in rows]
    states = queries.profile_states(session, ids)
    counts = queries.plan_counts(session, ids)
    cards = []
    for m in rows:
        solved = queries.solved_plan_summaries(session, model_id=m.id, limit=500)
        pts = [
            (float(p.totals["memory_bytes"]), float(p.objective), p.id)
            for p in solved
            if p.objective is not None and "memory_bytes" in (p.totals or {})
        ]
        by_id = {p.id: p for p in solved}
        best = [by_id[i] for i in _front_points(pts)]
        if len(best) > 3:  # the cheapest, the middle and the most accurate
            best = [best[0], best[len(best) // 2], best[-1]]
        cards.append(
            {
                "model": m,
                "float_mb": float_bytes(m.num_params) / MB,
                "profiles": states.get(m.id, {}),
                "plans": counts.get(m.id, {}),
                "plans_total": sum(counts.get(m.id, {}).values()),
                "best": [
                    {
                        "id": p.id,
                        "memory_mb": float(p.totals["memory_bytes"]) / MB,
                        "objective": p.objective,
                        "validation_status": p.validation_status,
                    }
                    for p in best
                ],
            }
        )
    return cards


# ----------------------------------------------------------------------------------- the front


class _Problems:
    """Solver problems of ready profiles by (database, profile, hardware), LRU-bounded."""

    def __init__(self, size: int = 8) -> None:
        self.size = size
        self._lock = threading.Lock()
        self._items: OrderedDict[tuple[str, int, str | None], Any] = OrderedDict()

    def get(self, session: Session, settings: Settings, profile_id: int, hw: str | None) -> Any:
        from profiling.sensitivity import Profile, problem_from_profile
        from searchsvc.profiles import repository as profiles

        key = (settings.database, profile_id, hw)
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        row = profiles.get_with_doc(session, profile_id)
        if row is None or row.doc is None:
            raise NotFound(f"profile {profile_id} has no document")
        model = models.get_with_inventory(session, row.model_id)
        if model is None:
            raise NotFound(f"model {row.model_id} is gone")
        try:
            problem = problem_from_profile(Profile.from_json(row.doc), model.inventory, {}, hw)
        except ValueError as exc:
            raise BadInput(str(exc)) from None
        with self._lock:
            self._items[key] = problem
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return problem


_problems = _Problems()


def baselines(problem: Any, resource: str) -> list[dict[str, Any]]:
    """Uniform precision: every layer at one candidate (pinned layers keep their one option;
    an attention site takes the candidate's activation bits, else its first option).

    A candidate some layer may not take (on this hardware) has no uniform baseline.
    """
    ids: list[str] = []
    for layer in problem.layers:
        for option in layer.options:
            if option.id not in ids and not _is_site(layer):
                ids.append(option.id)
    out = []
    for cid in ids:
        loss = 0.0
        total = float(problem.fixed.get(resource, 0.0))
        for layer in problem.layers:
            want = f"a{_bits(cid)[1]}" if _is_site(layer) else cid  # a site: the same a bits
            option = next((o for o in layer.options if o.id == want), None)
            if option is None and _is_site(layer):  # ... or its most precise option
                option = layer.options[0]
            if option is None and len(layer.options) == 1:
                option = layer.options[0]
            if option is None or resource not in option.costs:
                break
            loss += option.loss
            total += float(option.costs[resource])
        else:
            out.append({"id": cid, "total": total, "objective": loss})
    return out


def _is_site(layer: Any) -> bool:
    """An attention matmul site (its options are ``a8``… rather than candidates)."""
    return bool(layer.name.endswith(("qk_matmul", "sv_matmul")))


def _scaled(value: Any, resource: str) -> float | None:
    return None if value is None else float(value) / RESOURCES[resource][1]


def _jf_vs_float(doc: dict[str, Any]) -> float | None:
    """J&F against float of a ``bitbudget.validation/v1`` document with a ``video`` section
    (``video.summary.vs_float.JF``, in percent; see docs/video.md)."""
    video = doc.get("video")
    summary = (video.get("summary") or {}) if isinstance(video, dict) else {}
    vs_float = summary.get("vs_float")
    value = vs_float.get("JF") if isinstance(vs_float, dict) else None
    return float(value) if isinstance(value, int | float) else None


def jf_of(validation: dict[str, Any] | None) -> float | None:
    """The video J&F (against float) of a validation resource: its ``fidelity.video`` or
    document's ``video.summary``; failing those, any J&F-named number under a ``video`` key."""
    if not validation:
        return None
    doc = validation.get("validation") or {}
    video_fid = (validation.get("fidelity") or {}).get("video") or {}
    vs_float = video_fid.get("jf_vs_float")
    if isinstance(vs_float, dict) and isinstance(vs_float.get("JF"), int | float):
        return float(vs_float["JF"])
    found = _jf_vs_float(doc)
    if found is not None:
        return found
    for video in (validation.get("video"), doc.get("video"), (doc.get("metrics") or {})):
        if not isinstance(video, dict):
            continue
        for key, value in _flat(video):
            if re.search(r"(^|[._])(j_?(and|&)?_?f|jf)($|[._])", key.lower()) and isinstance(
                value, int | float
            ):
                return float(value)
    return None


def _measured(validation: ValidationRow | None) -> dict[str, float]:
    """iou / kl / jf of a finished validation."""
    if validation is None or validation.status not in ("passed", "failed"):
        return {}
    doc = validation.metrics or {}
    metrics = doc.get("metrics") or {}
    out = {k: float(metrics[k]) for k in ("iou", "kl") if isinstance(metrics.get(k), int | float)}
    jf = jf_of({"validation": doc})
    if jf is not None:
        out["jf"] = jf
    return out


def plan_points(
    session: Session, *, model_id: int, profile_id: int, resource: str, hardware: str | None
) -> tuple[list[dict[str, Any]], bool]:
    """The solved plans of a profile on the chart's axes (newest 300), and whether any is
    validated. Latency points need the plan to be solved for the same hardware."""
    rows = queries.solved_plan_summaries(session, model_id=model_id, profile_id=profile_id)
    found = queries.latest_validations(session, [r.id for r in rows])
    out = []
    for r in rows:
        if resource == "latency_ms" and r.hardware != hardware:
            continue
        x = _scaled((r.totals or {}).get(resource), resource)
        if x is None:
            continue
        measured = _measured(found.get(r.id))
        out.append(
            {
                "id": r.id,
                "x": x,
                "loss": r.objective,
                **measured,
                "validated": bool(measured),
                "budget": r.budget,
                "status": r.status,
                "validation_status": r.validation_status,
            }
        )
    return out, any(p["validated"] for p in out)


def front_view(
    read: Session,
    settings: Settings,
    *,
    profile: ProfileRow,
    resource: str,
    hardware: str | None,
) -> dict[str, Any]:
    """The exact front when a job built one, else the fast (Lagrangian) front computed on the
    solver pool (nothing stored), the job building the exact one, and the uniform baselines."""
    from searchsvc.pareto.service import (
        active_build,
        check_resource,
        fast_front_future,
        stored_front,
    )
    from searchsvc.plans.service import solve_outcome_of

    check_resource(resource, hardware)
    artifact = stored_front(read, profile=profile, resource=resource, hardware=hardware)
    job = None
    if artifact is not None:
        doc = dict(artifact.doc or {})
    else:
        job = active_build(read, profile=profile, resource=resource, hardware=hardware)
        future = fast_front_future(
            read, settings, profile=profile, resource=resource, hardware=hardware
        )
        doc = solve_outcome_of(future)
    front = [
        {
            "x": _scaled(p.get("total"), resource),
            "loss": p.get("objective"),
            "status": p.get("status"),
            "gap": p.get("gap"),
            "budget": _scaled(p.get("budget"), resource),
        }
        for p in doc.get("points", [])
        if p.get("total") is not None and p.get("objective") is not None
    ]
    problem = _problems.get(read, settings, profile.id, hardware)
    base = [
        {"id": b["id"], "x": _scaled(b["total"], resource), "loss": b["objective"]}
        for b in baselines(problem, resource)
    ]
    gaps = [p["gap"] for p in front if isinstance(p.get("gap"), int | float)]
    return {
        "front": front,
        "baselines": base,
        "solver": doc.get("method", ""),
        "exact": artifact is not None,
        "exact_job": job.id if job is not None else None,
        "max_gap": max(gaps) if gaps else None,
    }


# ---------------------------------------------------------------------------------- plan page

_BLOCK = re.compile(r"^image_encoder\.(?:trunk\.)?blocks\.(\d+)\.")
_ORDER = ("image_encoder", "prompt_encoder", "mask_decoder", "memory_attention", "memory_encoder")
_TITLES = {
    "prompt_encoder": "prompt encoder",
    "mask_decoder": "mask decoder",
    "memory_attention": "memory attention",
    "memory_encoder": "memory encoder",
    "other": "other",
}


@dataclass
class _Group:
    key: tuple[int, int]
    title: str
    names: list[str] = field(default_factory=list)


def layer_groups(inventory: dict[str, Any]) -> dict[str, tuple[tuple[int, int], str]]:
    """Each layer's heatmap group: image-encoder stages (consecutive trunk blocks of one width),
    its stem and neck, then the other components. Returns {name: (sort key, title)}."""
    dims: dict[int, int] = {}
    for x in inventory["layers"]:
        match = _BLOCK.match(x["name"])
        if match and "mlp" in x["name"] and x.get("out_shape"):
            dims[int(match[1])] = int(x["out_shape"][-1])  # the block's last MLP layer: its width
    stage_of: dict[int, int] = {}
    blocks: dict[int, list[int]] = {}
    stage, prev = 0, None
    for idx in sorted(dims):
        if dims[idx] != prev:
            stage, prev = stage + 1, dims[idx]
        stage_of[idx] = stage
        blocks.setdefault(stage, []).append(idx)
    out: dict[str, tuple[tuple[int, int], str]] = {}
    for x in inventory["layers"]:
        name, comp = x["name"], x.get("component", "other")
        if comp == "image_encoder":
            match = _BLOCK.match(name)
            if match and int(match[1]) in stage_of:
                st = stage_of[int(match[1])]
                span = blocks[st]
                label = f"blocks {span[0]}" + (f"–{span[-1]}" if len(span) > 1 else "")
                title = f"image encoder · stage {st} ({label}, width {dims[span[0]]})"
                out[name] = ((0, st), title)
            elif ".neck." in name:
                out[name] = ((0, 1000), "image encoder · neck")
            else:
                out[name] = ((0, 0), "image encoder · stem")
        else:
            rank = _ORDER.index(comp) if comp in _ORDER else len(_ORDER)
            out[name] = ((rank, 0), _TITLES.get(comp, comp.replace("_", " ")))
    return out


def _bits(choice: str) -> tuple[int | None, int | None]:
    """(weight, activation) bits of a choice; an attention site's ``a8`` / ``a4log`` has no
    weight (None, 8)."""
    match = re.fullmatch(r"w(\d+)a(\d+)", choice)
    if match:
        return int(match[1]), int(match[2])
    site = re.fullmatch(r"a(\d+)(?:log)?", choice)
    return (None, int(site[1])) if site else (None, None)


def plan_heatmap(plan: PlanRow, inventory: dict[str, Any]) -> list[dict[str, Any]]:
    """One cell per layer of the plan, grouped (in execution order within a group)."""
    choices: dict[str, str] = dict((plan.doc or {}).get("choices", {}))
    groups = layer_groups(inventory)
    info = {x["name"]: x for x in inventory["layers"]}
    by_group: dict[tuple[int, int], _Group] = {}
    order = [x["name"] for x in inventory["layers"] if x["name"] in choices]
    order += [n for n in choices if n not in info]
    for name in order:
        key, title = groups.get(name, ((len(_ORDER), 0), "other"))
        by_group.setdefault(key, _Group(key, title)).names.append(name)
    out = []
    for key in sorted(by_group):
        g = by_group[key]
        cells = []
        for name in g.names:
            w, a = _bits(choices[name])
            layer = info.get(name, {})
            cells.append(
                {
                    "name": name,
                    "choice": choices[name],
                    "w": w,
                    "a": a,
                    "kind": layer.get("kind", ""),
                    "params": int(layer.get("params") or 0),
                    "log": choices[name].endswith("log"),
                }
            )
        out.append({"title": g.title, "cells": cells})
    return out


def size_breakdown(plan: PlanRow, inventory: dict[str, Any]) -> dict[str, Any]:
    """Stored bytes by component under the plan (the solver's size function), beside float."""
    from profiling.inventory import component_of
    from profiling.sensitivity.problem import fixed_memory_bytes, layer_descs
    from solvers.costs import option_costs
    from solvers.sizes import float_bytes

    choices: dict[str, str] = dict((plan.doc or {}).get("choices", {}))
    descs = layer_descs(inventory)
    comp = {x["name"]: x.get("component") or component_of(x["name"]) for x in inventory["layers"]}
    rows: dict[str, dict[str, float]] = {}
    for name, choice in choices.items():
        desc = descs.get(name)
        if desc is None:
            continue
        row = rows.setdefault(comp.get(name, "other"), {"layers": 0, "bytes": 0.0, "float": 0.0})
        row["layers"] += 1
        row["bytes"] += option_costs(desc, choice)["memory_bytes"]
        row["float"] += float_bytes(desc.numel + desc.bias_numel)
    rest = float(fixed_memory_bytes(inventory))
    ordered = sorted(rows, key=lambda c: _ORDER.index(c) if c in _ORDER else len(_ORDER))
    table: list[dict[str, Any]] = [
        {"component": _TITLES.get(c, c.replace("_", " ")), **rows[c], "ratio": _ratio(rows[c])}
        for c in ordered
    ]
    table.append(
        {"component": "kept in float (norms, embeddings, …)", "layers": 0, "bytes": rest,
         "float": rest, "ratio": 1.0}
    )  # fmt: skip
    total = float(sum(r["bytes"] for r in table))
    planned = (plan.totals or {}).get("memory_bytes")
    return {
        "rows": table,
        "total": total,
        "float_total": sum(r["float"] for r in table),
        "planned": planned,
        "agrees": planned is not None and abs(total - float(planned)) <= 0.005 * float(planned),
    }


def _ratio(row: dict[str, float]) -> float:
    return row["bytes"] / row["float"] if row["float"] else 1.0


def _flat(doc: dict[str, Any], prefix: str = "", depth: int = 0) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for key, value in doc.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and depth < 2:
            out += _flat(value, name + ".", depth + 1)
        elif isinstance(value, str | int | float | bool) or value is None:
            out.append((name, value))
    return out


def _before_after(doc: Any) -> list[dict[str, Any]] | None:
    """Rows (name, before, after) of a refinement section that has ``before`` and ``after``."""
    if not isinstance(doc, dict):
        return None
    before, after = doc.get("before"), doc.get("after")
    if isinstance(before, dict) and isinstance(after, dict):
        b, a = dict(_flat(before)), dict(_flat(after))
        return [{"name": k, "before": b.get(k), "after": a.get(k)} for k in dict.fromkeys([*b, *a])]
    pairs = {
        k.removesuffix("_before"): (v, doc.get(k.removesuffix("_before") + "_after"))
        for k, v in doc.items()
        if k.endswith("_before")
    }
    if pairs:
        return [{"name": k, "before": v[0], "after": v[1]} for k, v in pairs.items()]
    return None


def validation_view(plan: PlanRow, validation: dict[str, Any] | None) -> dict[str, Any] | None:
    """Predicted vs measured rows, fidelity rows, video J&F and refinement before/after."""
    if validation is None:
        return None
    doc = validation.get("validation") or {}
    size = doc.get("size") or {}
    metrics = doc.get("metrics") or {}
    predicted_loss = (doc.get("plan") or {}).get("predicted_loss", plan.objective)
    compare = []
    if size:
        compare.append(
            {
                "name": "size (tensor bytes)",
                "predicted": size.get("predicted_bytes"),
                "measured": size.get("measured_bytes"),
                "note": _rel(size.get("relative_error"), size.get("tolerance")),
            }
        )
    if doc:
        compare.append(
            {
                "name": "loss → output KL vs float",
                "predicted": predicted_loss,
                "measured": metrics.get("kl"),
                "note": f"{plan.method} estimate vs measured",
            }
        )
    fidelity = [(k, v) for k, v in metrics.items() if v is not None]
    jf = jf_of(validation)
    video = (validation.get("fidelity") or {}).get("video")
    video = video or validation.get("video") or doc.get("video")
    if isinstance(video, dict):
        video = {k: v for k, v in video.items() if k != "clips" or not isinstance(v, list)}
    return {
        "status": validation.get("status"),
        "passed": validation.get("passed"),
        "reasons": validation.get("reasons") or [],
        "error": validation.get("error"),
        "job_id": validation.get("job_id"),
        "compare": compare,
        "fidelity": fidelity,
        "iou": metrics.get("iou"),
        "jf": jf,
        "video": _flat(video) if isinstance(video, dict) else None,
        "artifact": validation.get("artifact"),
        "size": size,
        "random_weights": doc.get("random_weights"),
        "seconds": doc.get("seconds"),
    }


def refinement_view(
    plan: PlanRow, validation: dict[str, Any] | None, stored: dict[str, Any] | None = None
) -> dict[str, Any] | None:
    """A refinement section (e.g. LSC) wherever it is recorded: the plan's stored refinement
    (``searchsvc.plans.refine.plan_refinement``), the validation resource, its document, or the
    plan document. Rows of before/after when it has them, else flat."""
    doc = (validation or {}).get("validation") or {}
    for found in (stored, (validation or {}).get("refinement"), doc.get("refinement"),
                  (plan.doc or {}).get("refinement")):  # fmt: skip
        if isinstance(found, dict) and found:
            return {"rows": _before_after(found), "flat": _flat(found)}
    return None


def _rel(err: Any, tol: Any) -> str:
    if not isinstance(err, int | float):
        return ""
    text = f"off by {err * 100:.3f} %"
    return text + (f" (tolerance {tol * 100:.1f} %)" if isinstance(tol, int | float) else "")

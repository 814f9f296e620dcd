"""``bitbudget video``: J&F of a plan over clips against the float model, and memory-bank costs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from searchsvc.cli.common import (
    console,
    fail,
    print_json,
    random_weights_note,
    read_json_plan,
    resized_note,
    user_errors,
)

__all__ = ["register", "video_cmd"]


def _policy(name: str | None, threshold: float | None, capacity: int | None, k: int | None) -> Any:
    if name is None:
        if threshold is not None or capacity is not None or k is not None:
            fail("--threshold / --capacity / --k need --policy")
        return None
    params: dict[str, Any] = {"name": name}
    if threshold is not None:
        params["threshold"] = threshold
    if capacity is not None:
        params["capacity"] = capacity
    if k is not None:
        params["k"] = k
    return params


def _plan(loaded: Any, plan: Path | None, uniform: str | None) -> Any:
    from profiling.errors import BadInput
    from profiling.quant.plan import uniform_plan

    if plan is not None and uniform is not None:
        fail("give at most one of --plan PLAN.json and --uniform CANDIDATE")
    if uniform is not None:
        return uniform_plan(loaded.module, uniform)
    if plan is None:
        return None
    doc = read_json_plan(plan, f"--plan {plan}")
    if not isinstance(doc, dict):
        raise BadInput(f"--plan {plan}: expected a JSON object with choices")
    return doc


def _fmt(s: dict[str, float] | None) -> str:
    return "—" if s is None else f"{s['JF']:.2f} (J {s['J']:.2f} / F {s['F']:.2f})"


def _print(doc: dict[str, Any]) -> None:
    table = Table(title=f"{doc['model']['name']} — policy {doc['policy']}")
    for col in ("clip", "frames", "J&F vs float", "J&F vs ground truth"):
        table.add_column(col)
    for row in doc["clips"]:
        table.add_row(row["name"], str(row["frames"]), _fmt(row["vs_float"]), _fmt(row["vs_gt"]))
    s = doc["summary"]
    table.add_row("mean", "", _fmt(s["vs_float"]), _fmt(s["vs_gt"]))
    console.print(table)
    mem = Table(title="memory path per frame (mean over frames after the first)")
    for col in ("run", "slots", "tokens", "bank bytes", "mem-attn MACs", "mem-attn ms", "ms"):
        mem.add_column(col)
    for name, m in (
        ("this run", doc["memory"]["policy"]),
        ("float FIFO", doc["memory"]["reference"]),
    ):
        mem.add_row(
            name, f"{m['slots']:.2f}", f"{m['memory_tokens']:.0f}", f"{m['bank_bytes']:.0f}",
            f"{m['memory_attention_macs']:.3g}", f"{m['memory_attention_ms']:.1f}",
            f"{m['ms_per_frame']:.1f}",
        )  # fmt: skip
    console.print(mem)
    if doc["object_bias"]:
        console.print(f"object-score bias +{doc['object_bias']:g} (random weights; docs/video.md)")


def video_cmd(
    model: str = typer.Argument(..., help="registered SAM2 model name"),
    plan: Path = typer.Option(None, "--plan", help="solver plan JSON (its memory_policy is used)"),
    uniform: str = typer.Option(None, "--uniform", help="uniform candidate, e.g. w8a8"),
    policy: str = typer.Option(None, "--policy", help="fifo | sis | mutual_kv"),
    threshold: float = typer.Option(None, "--threshold", help="mutual_kv cosine threshold"),
    capacity: int = typer.Option(None, "--capacity", help="sis bank capacity (<= 7)"),
    k: int = typer.Option(None, "--k", help="sis frames merged"),
    clips: int = typer.Option(3, "--clips", help="clips (synthetic, or the first N videos)"),
    frames: int = typer.Option(8, "--frames", help="frames per clip"),
    folder: Path = typer.Option(None, "--folder", help="DAVIS / SA-V frame folder"),
    prompt: str = typer.Option("box", "--prompt", help="box | point | mask"),
    image_size: int = typer.Option(None, "--image-size"),
    checkpoint: str = typer.Option(None, help="official-format checkpoint"),
    seed: int = typer.Option(0),
    as_json: bool = typer.Option(False, "--json", help="print the validation document"),
    out: Path = typer.Option(None, "--out", help="also write the document here"),
) -> None:
    """Track clips with MODEL in float (FIFO) and with a plan under a memory policy."""
    from profiling.models import ModelSpec, build_model
    from profiling.quant.spec import parse_candidate
    from profiling.video import load_clips, synthetic_clips, video_validation
    from profiling.video.memory import make_policy
    from profiling.video.track import PROMPTS

    with user_errors():
        spec = ModelSpec(model, image_size=image_size, checkpoint=checkpoint, seed=seed)
        if spec.info.family != "sam2":
            fail(f"{model} is not a SAM2 model: video tracking needs the memory path")
        # everything the user typed is checked before the model is built
        pol = _policy(policy, threshold, capacity, k)
        if pol is not None:
            make_policy(dict(pol))
        if prompt not in PROMPTS:
            fail(f"unknown prompt {prompt!r}; known: {', '.join(PROMPTS)}")
        if clips < 1 or frames < 2:
            fail("--clips must be >= 1 and --frames >= 2 (a clip needs at least 2 frames)")
        if uniform is not None:
            parse_candidate(uniform)
        plan_doc = _plan(None, plan, None)
        if plan_doc is not None and uniform is not None:
            fail("give at most one of --plan PLAN.json and --uniform CANDIDATE")
        if folder is not None:
            data = load_clips(folder, videos=clips, max_frames=frames, seed=seed)
        else:
            data = synthetic_clips(clips, frames=frames, seed=seed, long_side=spec.size)
        loaded = build_model(spec)
        qplan = plan_doc if uniform is None else _plan(loaded, None, uniform)
        doc = video_validation(loaded, qplan, data, pol, prompt=prompt)
    if out is not None:
        out.write_text(json.dumps(doc, indent=1))
    if as_json:
        print_json(doc)
        return
    _print(doc)
    random_weights_note(doc["random_weights"])
    resized_note(doc.get("resized_from"))


def register(app: typer.Typer) -> None:
    """Add the command to ``app``."""
    app.command("video")(video_cmd)

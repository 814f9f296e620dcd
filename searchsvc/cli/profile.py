"""``bitbudget profile``: run the sensitivity profiler with a progress bar, write the JSON."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import typer

from searchsvc.cli.common import fail, progress_bar, random_weights_note, resized_note, user_errors

__all__ = ["register", "default_work_dir"]


def default_work_dir() -> Path:
    """Where profiles and their per-unit checkpoints live (``$BITBUDGET_DATA_DIR/profiles``)."""
    return Path(os.environ.get("BITBUDGET_DATA_DIR", "data")) / "profiles"


def _processes() -> int:
    """``BITBUDGET_PROFILE_PROCESSES`` (one clear line when it is not a count), or the cores."""
    raw = os.environ.get("BITBUDGET_PROFILE_PROCESSES", "").strip()
    if not raw:
        return os.cpu_count() or 1
    if not raw.isdigit() or int(raw) < 1:
        fail(f"BITBUDGET_PROFILE_PROCESSES must be a whole number of processes, got {raw!r}")
    return int(raw)


def profile_cmd(
    model: str = typer.Argument(..., help="registered model name"),
    metric: str = typer.Option("fisher_kl", help="kl | fisher_kl | mixqsam | synergy | wais"),
    images: int = typer.Option(8, help="calibration images"),
    image_size: int = typer.Option(None, "--image-size"),
    candidates: str = typer.Option(None, help="comma-separated ids, e.g. w8a8,w4a8,w2a16"),
    checkpoint: str = typer.Option(None, help="official-format checkpoint"),
    seed: int = typer.Option(0),
    source: str = typer.Option("shipped", help="shipped | IMAGE_FOLDER | COCO.json"),
    work_dir: Path = typer.Option(None, help="cache / checkpoint folder"),
    device: str = typer.Option(None, help="cpu or cuda (default: cuda when available)"),
    out: Path = typer.Option(..., "--out", help="where to write profile.json"),
    fisher_sample: float = typer.Option(
        None, help="fisher_kl: share of tokens for the Δh products (default 1/8; 1 = all)"
    ),
    processes: int = typer.Option(
        None,
        min=1,
        help="local processes the units run on (default BITBUDGET_PROFILE_PROCESSES, or cores)",
    ),
    threads: int = typer.Option(
        None, min=1, help="torch threads per process (default cores / processes)"
    ),
    video: bool = typer.Option(
        False, "--video", help="SAM2: also profile the memory path on clips (hierarchical)"
    ),
    clips: int = typer.Option(None, "--clips", help="--video: clips (default 2)"),
    frames: int = typer.Option(None, "--frames", help="--video: frames per clip (default 6)"),
    folder: Path = typer.Option(None, "--folder", help="--video: DAVIS / SA-V frame folder"),
    attention: bool = typer.Option(
        False, "--attention", help="also profile the attention matmul sites (qk, sv)"
    ),
    attention_options: str = typer.Option(
        None, help="attention site options, e.g. a8,a4,a8log (implies --attention)"
    ),
) -> None:
    """Profile MODEL's per-layer sensitivity; a killed run resumes, a repeated one is cached."""
    from profiling.models import ModelSpec
    from profiling.sensitivity import DEFAULT_CANDIDATES, ProfileRequest, run_profile
    from profiling.video.hierarchical import (
        VideoCalibration,
        run_hierarchical_profile,
        video_request,
    )

    if device not in (None, "cpu", "cuda"):
        fail(f"unknown device {device!r}; use cpu or cuda")
    if not video and (clips, frames, folder) != (None, None, None):
        fail("--clips / --frames / --folder need --video")
    with user_errors():
        cands = (
            tuple(c.strip() for c in candidates.split(",")) if candidates else DEFAULT_CANDIDATES
        )
        spec = ModelSpec(model, image_size=image_size, checkpoint=checkpoint, seed=seed)
        opts: dict[str, object] = {} if fisher_sample is None else {"fisher_sample": fisher_sample}
        if attention or attention_options is not None:  # options imply --attention
            opts["attention"] = True
        if attention_options is not None:
            opts["attention_options"] = [o.strip() for o in attention_options.split(",")]
        req = ProfileRequest(
            spec,
            metric=metric,
            candidates=cands,
            images=images,
            source=source,
            seed=seed,
            options=opts,
        )
        if video:
            cal = VideoCalibration(
                2 if clips is None else clips,
                6 if frames is None else frames,
                None if folder is None else str(folder),
            )
            req = video_request(req, cal)
        with progress_bar() as bar:
            task = bar.add_task(f"{metric} on {model}", total=1.0)
            root = work_dir or default_work_dir()

            def run_image(r: ProfileRequest, progress: Any) -> Any:
                return run_profile(
                    r, root, device=device, progress=progress,
                    processes=processes or _processes(), threads=threads,
                )  # fmt: skip

            def show(f: float, msg: str) -> None:
                bar.update(task, completed=f, description=msg)

            if video:
                profile = run_hierarchical_profile(req, root, run_image, show)
            else:
                profile = run_image(req, show)
    out.write_text(json.dumps(profile.to_json(), indent=1))
    st = profile.stats
    typer.echo(
        f"profile {profile.key} ({metric}) -> {out}: "
        f"{len(profile.layers) or len(profile.scores) or len(profile.pairs)} entries, "
        f"{st.get('computed_units', 0)} units computed, {st.get('resumed_units', 0)} resumed"
        f"{', served from cache' if st.get('cache_hit') else ''}"
    )
    if "video" in st:
        typer.echo(
            f"memory path: {len(st['video']['layers'])} layers profiled on "
            f"{st['video']['clips']['clips']} clips of {st['video']['clips']['frames']} frames "
            f"({st['video']['metric']}, video profile {st['video']['profile']})"
        )
    by_worker = st.get("units_by_worker") or {}
    if by_worker and not st.get("cache_hit"):
        typer.echo("units by process: " + ", ".join(f"{w} {n}" for w, n in by_worker.items()))
    random_weights_note(profile.random_weights)
    resized_note(profile.stats.get("resized_from"))


def register(app: typer.Typer) -> None:
    """Add the command to ``app``."""
    app.command("profile")(profile_cmd)

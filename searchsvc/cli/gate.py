"""``bitbudget validate`` and ``bitbudget gate``: validate a plan, and fail a build on its checks.

A plan is a ``bitbudget.plan/v1`` file validated here (``--model`` names the model unless the
file does), a ``bitbudget.validation/v1`` file used as it is, or ``--plan-id`` on a server
(validated there when it was not yet). ``validate --video`` adds video fidelity (J&F of the plan
tracked over clips against the float model, SAM2 only; docs/video.md). Gate exit codes: 0 every
check passes, 1 a check fails, 2 malformed input or a validation that could not run (one line on
stderr).
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, NoReturn

import typer
from rich.table import Table

from searchsvc.cli.common import (
    console,
    err_console,
    print_json,
    random_weights_note,
    resized_note,
)

__all__ = ["register", "EXIT_PASS", "EXIT_FAIL", "EXIT_INPUT"]

EXIT_PASS, EXIT_FAIL, EXIT_INPUT = 0, 1, 2
VALIDATION_FORMAT = "bitbudget.validation/v1"
DEFAULT_SERVER = "http://127.0.0.1:8000"
CHECKPOINT_HELP = "the model's checkpoint (default: the plan's, when the file is here)"


def _fail(message: str) -> NoReturn:
    """One line on stderr, exit 2."""
    sys.stderr.write(f"error: {' '.join(str(message).split())}\n")
    raise typer.Exit(EXIT_INPUT)


def _float(name: str, text: str | None) -> float | None:
    if text is None:
        return None
    try:
        return float(text)
    except ValueError:
        _fail(f"{name}: expected a number, got {text!r}")


def _read(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        _fail(f"cannot read {path}: {exc.strerror or exc}")
    except json.JSONDecodeError as exc:
        _fail(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})")
    if not isinstance(doc, dict):
        _fail(f"{path}: expected a JSON object (a plan or a validation)")
    return doc


def _plan_of(doc: dict[str, Any]) -> dict[str, Any]:
    """A plan resource as ``GET /v1/plans/{id}`` answers it becomes its ``bitbudget.plan/v1``
    document, with the model it is for and its memory budget; any other document stays."""
    if doc.get("format") or "plan" not in doc or "budget" not in doc:
        return doc
    inner = doc.get("plan")
    if not isinstance(inner, dict):
        _fail(f"plan {doc.get('id')} is {doc.get('status')}: there is no plan to validate yet")
    out = dict(inner)
    if not out.get("model") and isinstance(doc.get("model"), dict):
        out["model"] = doc["model"]
    memory_mb = (doc.get("budget") or {}).get("memory_mb")
    if memory_mb is not None and "budget" not in out:
        out["budget"] = {"memory_bytes": float(memory_mb) * 1e6}
    return out


def _model_spec(
    plan: dict[str, Any], model: str | None, image_size: int | None, checkpoint: Path | None
) -> Any:
    from profiling.models import ModelSpec

    named, seed, ckpt = plan.get("model"), 0, str(checkpoint) if checkpoint else None
    if model is None and isinstance(named, dict):
        model, image_size = named.get("name"), image_size or named.get("image_size")
        seed, ckpt = int(named.get("seed") or 0), ckpt or named.get("checkpoint")
        if ckpt and not Path(ckpt).is_file():
            _fail(
                f"the plan's model was loaded from checkpoint {ckpt} (where the plan was made); "
                "pass --checkpoint PATH to a copy of it"
            )
    elif model is None and isinstance(named, str):
        model = named
    if not model:
        _fail("the plan does not name its model; pass --model (e.g. --model sam2-micro)")
    return ModelSpec(str(model), image_size=image_size, checkpoint=ckpt, seed=seed)


def _video_request(
    video: bool, clips: int, frames: int, folder: Path | None, policy: str | None
) -> dict[str, Any] | None:
    """The video options of ``validate --video`` (None without ``--video``)."""
    if not video:
        if folder is not None or policy is not None:
            _fail("--video-folder / --policy need --video")
        return None
    if clips < 1 or frames < 2:
        _fail("--clips must be >= 1 and --frames >= 2")
    pol: Any = policy
    if policy is not None and policy.lstrip().startswith("{"):
        try:
            pol = json.loads(policy)
        except json.JSONDecodeError as exc:
            _fail(f"--policy: not valid JSON ({exc.msg})")
    name = pol.get("name") if isinstance(pol, dict) else pol
    if pol is not None and name not in ("fifo", "sis", "mutual_kv"):
        _fail(f"--policy: unknown memory policy {name!r}; known: fifo, sis, mutual_kv")
    req: dict[str, Any] = {"clips": clips, "frames": frames, "seed": 0, "policy": pol}
    if folder is not None:
        if not folder.is_dir():
            _fail(f"--video-folder {folder}: no such folder")
        req["folder"] = str(folder)
    return req


def _local(path: Path, opts: dict[str, Any]) -> dict[str, Any]:
    """A validation document: the file itself, or the plan in it validated here."""
    from profiling.errors import BitbudgetError

    doc = _plan_of(_read(path))
    runtime = opts.get("runtime") or "pytorch"
    if doc.get("format") == VALIDATION_FORMAT:
        if opts.get("video") and "video" not in doc:
            _fail(f"{path} is a validation without video fidelity; validate the plan with --video")
        if runtime == "onnxruntime" and "runtime" not in doc:
            _fail(
                f"{path} is a validation in PyTorch; validate the plan with --runtime onnxruntime"
            )
        return doc
    if not (opts["model"] or doc.get("model")):
        _fail("the plan does not name its model; pass --model (e.g. --model sam2-micro)")
    if opts.get("clipping") is not None and not Path(opts["clipping"]).is_file():
        _fail(f"--clipping {opts['clipping']}: no such file (an LSC sidecar from bitbudget refine)")
    from profiling.validate import DataSpec, VideoSpec, run_validation  # torch: only here

    try:
        spec = _model_spec(doc, opts["model"], opts["image_size"], opts.get("checkpoint"))
        data = DataSpec(source=opts["source"], images=opts["images"], holdout=opts["holdout"])
        video = VideoSpec.from_dict(opts["video"]) if opts.get("video") else None
        with tempfile.TemporaryDirectory() as tmp, err_console.status("validating") as status:
            art = opts["artifact"] or Path(tmp) / "plan.safetensors"
            export_dir = None
            if runtime == "onnxruntime":
                export_dir = opts.get("export") or Path(tmp) / "export"
            return run_validation(
                doc, spec, art, data, progress=lambda f, m: status.update(f"{f:4.0%} {m}"),
                video=video, clipping=opts.get("clipping"), runtime=runtime, export_dir=export_dir,
            )  # fmt: skip
    except (BitbudgetError, ValueError) as exc:
        _fail(str(exc))


def _client(server: str, token: str | None) -> Any:
    import httpx

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=server.rstrip("/"), headers=headers, timeout=60)


def _call(client: Any, method: str, url: str, **kwargs: Any) -> Any:
    """One request; a transport error or a 4xx/5xx ends with its message (exit 2)."""
    import httpx

    try:
        r = client.request(method, url, **kwargs)
    except httpx.HTTPError as exc:
        _fail(f"cannot reach {client.base_url}: {exc}")
    if r.status_code >= 400:
        try:
            message = r.json()["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = r.text[:200]
        if r.status_code == 401:
            message += " (pass --token TOKEN or set BITBUDGET_TOKEN)"
        _fail(f"{method} {url}: HTTP {r.status_code}: {message}")
    return r.json()


def _remote(
    plan_id: int,
    server: str,
    token: str | None,
    timeout: float,
    video: dict | None = None,
    runtime: str = "pytorch",
) -> dict[str, Any]:
    """The plan's finished validation on ``server``, asking for one and waiting when needed
    (with ``video``: one that measured video fidelity; ``runtime``: one run in it)."""
    with _client(server, token) as client:
        current = _call(client, "GET", f"/v1/plans/{plan_id}").get("validation")
        asked = (current or {}).get("request") or {}
        lacks_video = video is not None and (current is None or not asked.get("video"))
        lacks_runtime = runtime != "pytorch" and asked.get("runtime") != runtime
        if current is None or current["status"] == "error" or lacks_video or lacks_runtime:
            body = None if video is None else {"video": True} | video
            if runtime != "pytorch":
                body = (body or {}) | {"runtime": runtime}
            if body is not None and body.get("folder"):
                _fail("--video-folder is a local folder; a server validates on synthetic clips")
            if body is not None:
                body.pop("folder", None)
            queued = _call(client, "POST", f"/v1/plans/{plan_id}/validate", json=body)
            current = queued["validation"]
        deadline = time.monotonic() + timeout
        with err_console.status(f"validating plan {plan_id} on {server}"):
            while current["status"] in ("pending", "running"):
                if time.monotonic() > deadline:
                    _fail(
                        f"plan {plan_id}: validation still {current['status']} after {timeout:g} s"
                    )
                time.sleep(1.0)
                current = _call(client, "GET", f"/v1/plans/{plan_id}/validation")
    if current["status"] == "error":
        _fail(f"plan {plan_id}: validation failed to run: {current.get('error')}")
    return dict(current["validation"])


def _runtime(runtime: str, export: Path | None) -> None:
    """Refuse an unknown ``--runtime``, and ``--export`` without ONNX Runtime."""
    if runtime not in ("pytorch", "onnxruntime"):
        _fail(f"--runtime: unknown runtime {runtime!r}; known: pytorch, onnxruntime")
    if export is not None and runtime != "onnxruntime":
        _fail("--export needs --runtime onnxruntime")
    if export is not None and export.exists() and not export.is_dir():
        _fail(f"--export {export}: is a file, not a folder")


def _source(plan: Path | None, plan_id: int | None, server: str | None) -> None:
    if (plan is None) == (plan_id is None):
        _fail("give exactly one of PLAN.json (--plan) or --plan-id")
    if plan_id is not None and not server:
        _fail("--plan-id needs --server URL (or BITBUDGET_SERVER)")


def _fmt(value: Any, spec: str = ".4f") -> str:
    return "—" if value is None else format(value, spec)


def _table(doc: dict[str, Any]) -> Table:
    m, size, plan = doc.get("metrics", {}), doc.get("size", {}), doc.get("plan", {})
    model = doc.get("model", {})
    verdict = "PASSED" if doc.get("passed") else "FAILED"
    table = Table(
        title=f"validation of {model.get('name')} at {model.get('image_size')} px: {verdict}"
    )
    table.add_column("measure")
    table.add_column("value", justify="right")
    rows = [
        ("mask IoU vs float (mean)", _fmt(m.get("iou"))),
        ("mask IoU vs float (worst)", _fmt(m.get("iou_min"))),
        ("mask-logit KL (per pixel)", _fmt(m.get("kl"), ".4g")),
        ("IoU-head |Δ| (mean)", _fmt(m.get("iou_head_mae"), ".4g")),
        ("IoU-head argmax agreement", _fmt(m.get("iou_head_argmax"))),
        (
            "GT mIoU float / quantized",
            f"{_fmt(m.get('gt_miou_float'))} / {_fmt(m.get('gt_miou_quant'))}",
        ),
        ("held-out images / masks", f"{m.get('images')} / {m.get('masks')}"),
        ("predicted loss (objective)", _fmt(plan.get("predicted_loss"), ".4g")),
        ("artifact tensor bytes", f"{size.get('measured_bytes', 0):,}"),
        (
            "predicted bytes",
            f"{size.get('predicted_bytes', 0):,.0f} ({size.get('predicted_from')})",
        ),
        ("size difference", f"{100 * size.get('relative_error', 0):.3f} %"),
        ("artifact file bytes", f"{size.get('file_bytes', 0):,}"),
        (
            "budget bytes",
            "—" if size.get("budget_bytes") is None else f"{size['budget_bytes']:,.0f}",
        ),
    ]
    video = doc.get("video")
    if isinstance(video, dict):
        s = video.get("summary") or {}
        jf = lambda x: "—" if not x else f"{x['JF']:.2f} (J {x['J']:.2f} / F {x['F']:.2f})"  # noqa: E731
        pol = video.get("policy") or {}
        rows += [
            (f"video J&F vs float ({len(video.get('clips', []))} clips, {pol.get('name')})",
             jf(s.get("vs_float"))),
            ("video J&F vs ground truth quantized / float",
             f"{jf(s.get('vs_gt'))} / {jf(s.get('float_vs_gt'))}"),
        ]  # fmt: skip
        mem = (video.get("memory") or {}).get("policy") or {}
        if mem.get("frames"):
            rows.append(
                ("memory bank bytes / mem-attn MACs per frame",
                 f"{mem['bank_bytes']:,.0f} / {mem['memory_attention_macs']:.3g}")
            )  # fmt: skip
    rows += _runtime_rows(doc)
    for row in rows:
        table.add_row(*row)
    return table


def _runtime_rows(doc: dict[str, Any]) -> list[tuple[str, str]]:
    """The rows of an ONNX Runtime validation: fake-quant beside it, and the files that ship."""
    ort = doc.get("runtime")
    if not isinstance(ort, dict):
        return []
    fq, diff = ort.get("fake_quant") or {}, ort.get("difference") or {}
    agree = ort.get("vs_fake_quant") or {}
    files = (ort.get("export") or {}).get("file_bytes")
    return [
        ("measured in", f"onnxruntime {ort.get('version')} ({ort.get('threads')} threads)"),
        ("fake-quant mask IoU vs float", _fmt(fq.get("iou"))),
        ("IoU difference (onnxruntime - fake-quant)", _fmt(diff.get("iou"), "+.4f")),
        ("mask IoU onnxruntime vs fake-quant", _fmt(agree.get("iou"))),
        ("exported files on disk (bytes)", "—" if files is None else f"{files:,}"),
    ]


def validate_cmd(
    plan: Path = typer.Argument(None, help="plan JSON (bitbudget.plan/v1) or a validation JSON"),
    plan_id: int = typer.Option(None, "--plan-id", help="a plan on --server"),
    server: str = typer.Option(None, "--server", envvar="BITBUDGET_SERVER", help="service URL"),
    token: str = typer.Option(None, "--token", envvar="BITBUDGET_TOKEN", help="bearer token"),
    model: str = typer.Option(None, "--model", help="model name (default: the plan's)"),
    image_size: int = typer.Option(None, "--image-size"),
    checkpoint: Path = typer.Option(None, "--checkpoint", help=CHECKPOINT_HELP),
    images: int = typer.Option(8, "--images", help="calibration images"),
    holdout: int = typer.Option(4, "--holdout", help="held-out images measured"),
    source: str = typer.Option("shipped", "--source", help="shipped | IMAGE_FOLDER | COCO.json"),
    artifact: Path = typer.Option(None, "--artifact", help="keep the packed file here"),
    out: Path = typer.Option(None, "--out", help="also write the validation JSON here"),
    as_json: bool = typer.Option(False, "--json", help="print the validation JSON"),
    timeout: float = typer.Option(1800, "--timeout", help="seconds to wait for the server"),
    video: bool = typer.Option(False, "--video", help="also measure video J&F (SAM2 only)"),
    clips: int = typer.Option(2, "--clips", help="--video: synthetic clips (or folder videos)"),
    frames: int = typer.Option(6, "--frames", help="--video: frames per clip"),
    video_folder: Path = typer.Option(None, "--video-folder", help="--video: DAVIS/SA-V folder"),
    policy: str = typer.Option(
        None, "--policy", help='--video: fifo | sis | mutual_kv or {"name": ...} (default: plan\'s)'
    ),
    clipping: Path = typer.Option(
        None, "--clipping", help="LSC learned-clipping sidecar (bitbudget refine --out)"
    ),
    runtime: str = typer.Option(
        "pytorch", "--runtime", help="pytorch (fake-quant) | onnxruntime (the ONNX export)"
    ),
    export: Path = typer.Option(
        None, "--export", help="--runtime onnxruntime: keep the exported files in this folder"
    ),
) -> None:
    """Validate a plan against the float model and print its fidelity and size."""
    _source(plan, plan_id, server)
    _runtime(runtime, export)
    vreq = _video_request(video, clips, frames, video_folder, policy)
    if plan is not None:
        opts = dict(model=model, image_size=image_size, images=images, holdout=holdout)
        extra = {"source": source, "artifact": artifact, "video": vreq, "clipping": clipping}
        extra |= {"checkpoint": checkpoint, "runtime": runtime, "export": export}
        doc = _local(plan, opts | extra)
    else:
        if clipping is not None or export is not None:
            _fail("--clipping / --export are for a local plan; a served plan has its own")
        doc = _remote(plan_id, server, token, timeout, vreq, runtime)
    if out is not None:
        out.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    if as_json:
        print_json(doc)
        return
    console.print(_table(doc))
    refined = doc.get("refinement") or {}
    if refined.get("before") and refined.get("after"):
        before, after = refined["before"].get("iou"), refined["after"].get("iou")
        console.print(f"LSC refinement: mask IoU {before:.4f} before, {after:.4f} after")
    for reason in doc.get("reasons", []):
        console.print(f"[red]reason:[/] {reason}", highlight=False)
    random_weights_note(bool(doc.get("random_weights")))
    resized_note(doc.get("resized_from"))


def gate_cmd(
    plan: Path = typer.Option(None, "--plan", help="plan JSON, or a validation JSON"),
    plan_id: int = typer.Option(None, "--plan-id", help="a plan on --server"),
    server: str = typer.Option(None, "--server", envvar="BITBUDGET_SERVER", help="service URL"),
    token: str = typer.Option(None, "--token", envvar="BITBUDGET_TOKEN", help="bearer token"),
    max_size_mb: str = typer.Option(None, "--max-size-mb", help="artifact tensor MB (10^6 B)"),
    min_iou: str = typer.Option(None, "--min-iou", help="least mean mask IoU against float"),
    max_kl: str = typer.Option(None, "--max-kl", help="largest mean mask-logit KL"),
    junit: Path = typer.Option(None, "--junit", help="write a JUnit XML report here"),
    model: str = typer.Option(None, "--model", help="model name (default: the plan's)"),
    image_size: int = typer.Option(None, "--image-size"),
    checkpoint: Path = typer.Option(None, "--checkpoint", help=CHECKPOINT_HELP),
    images: int = typer.Option(8, "--images", help="calibration images"),
    holdout: int = typer.Option(4, "--holdout", help="held-out images measured"),
    source: str = typer.Option("shipped", "--source", help="shipped | IMAGE_FOLDER | COCO.json"),
    timeout: float = typer.Option(1800, "--timeout", help="seconds to wait for the server"),
    max_file_mb: str = typer.Option(
        None, "--max-file-mb", help="the exported ONNX files on disk, MB (10^6 B)"
    ),
    export: Path = typer.Option(
        None, "--export", help="a folder `bitbudget export` wrote: --max-file-mb weighs its files"
    ),
    runtime: str = typer.Option(
        None, "--runtime", help="pytorch | onnxruntime (default: onnxruntime with --max-file-mb)"
    ),
) -> None:
    """Exit 0 when the plan meets every limit, 1 when one fails, 2 on malformed input."""
    from profiling.errors import BitbudgetError
    from searchsvc.validation.gate import Check, GateLimits, gate_checks, junit_xml

    _source(plan, plan_id, server)
    size = _float("--max-size-mb", max_size_mb)
    if size is None:
        _fail("--max-size-mb is required (the artifact's size limit in MB)")
    file_mb = _float("--max-file-mb", max_file_mb)
    try:
        limits = GateLimits(size, _float("--min-iou", min_iou), _float("--max-kl", max_kl), file_mb)
    except BitbudgetError as exc:
        _fail(str(exc))
    if export is not None and file_mb is None:
        _fail("--export is weighed by --max-file-mb; give it too")
    if runtime is None:  # the exported files must exist to be weighed
        runtime = "onnxruntime" if file_mb is not None and export is None else "pytorch"
    _runtime(runtime, None)
    on_disk = None
    if export is not None:
        from profiling.shipped import export_files

        try:
            on_disk = int(export_files(export)["file_bytes"])
        except BitbudgetError as exc:
            _fail(f"--export {exc}")
    if plan is not None:
        opts = dict(model=model, image_size=image_size, images=images, holdout=holdout)
        extra = {"source": source, "artifact": None, "checkpoint": checkpoint, "runtime": runtime}
        doc = _local(plan, opts | extra)
        try:
            checks = gate_checks(doc, limits, on_disk)
        except BitbudgetError as exc:
            _fail(f"{plan}: {exc}")
    else:
        if export is not None:
            _fail("--export is for a local plan; a served plan's newest export is weighed")
        _remote(plan_id, server, token, timeout, runtime=runtime)
        body = {"plan_id": plan_id, "max_size_mb": limits.max_size_mb}
        body |= {"min_iou": limits.min_iou, "max_kl": limits.max_kl}
        if file_mb is not None:
            body["max_file_mb"] = file_mb
        with _client(server, token) as client:
            out = _call(client, "POST", "/v1/gate", json=body)
        checks = [Check(**c) for c in out["checks"]]
        doc = {"random_weights": out.get("random_weights")}
    for check in checks:
        sys.stdout.write(check.line + "\n")
    if junit is not None:
        props = {"random_weights": doc.get("random_weights"), "plan": str(plan or plan_id)}
        junit.write_text(junit_xml(checks, props), encoding="utf-8")
    if doc.get("random_weights"):
        sys.stderr.write("note: random_weights: true (seeded random weights, not a checkpoint)\n")
    raise typer.Exit(EXIT_PASS if all(c.passed for c in checks) else EXIT_FAIL)


def register(app: typer.Typer) -> None:
    """Add ``validate`` and ``gate`` to the ``bitbudget`` app."""
    app.command("validate")(validate_cmd)
    app.command("gate")(gate_cmd)

"""``bitbudget serve``, ``worker``, ``db``, ``token`` and the one-shot ``plan`` — the same services
and database as the API."""

from __future__ import annotations

import os
import time
from collections import Counter, defaultdict
from typing import Any

import typer
from rich.table import Table

from searchsvc.cli.common import console, fail, print_json, random_weights_note, user_errors

__all__ = ["register"]

_DEV_TOKEN_FILE = "dev-token"


def _settings(**overrides: Any) -> Any:
    """Settings from the environment with command-line overrides; bad values are one line."""
    from pydantic import ValidationError

    from searchsvc.settings import Settings

    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        lines = [str(e.get("msg", "")).removeprefix("Value error, ") for e in exc.errors()]
        fail("; ".join(lines))


def _dev_token(settings: Any) -> tuple[str | None, bool]:
    """In dev mode on loopback: the token to print, creating one when none exists."""
    from searchsvc.auth.service import create_token, hash_token, tokens_exist
    from searchsvc.db.session import session_scope

    saved = settings.data_dir / _DEV_TOKEN_FILE
    with session_scope(settings.database) as session:  # a write: the token may be created
        if tokens_exist(session, settings=settings):
            if saved.is_file():
                token = saved.read_text().strip()
                from searchsvc.auth import repository

                if repository.by_hash(session, hash_token(token)) is not None:
                    return token, False
            return None, False
        _, token = create_token(session, name="dev")
    saved.parent.mkdir(parents=True, exist_ok=True)
    saved.write_text(token + "\n")
    os.chmod(saved, 0o600)
    return token, True


def _banner(settings: Any, token: str | None, created: bool) -> None:
    base = f"http://{settings.host}:{settings.port}"
    where = "embedded: in-process jobs" if settings.embedded else f"broker {settings.broker_url}"
    console.print(f"[bold]bitbudget[/] on {base}  ({where}; database {settings.database})")
    console.print(f"dashboard: {base}/dashboard")
    console.print(f"API docs:  {base}/docs")
    if token:
        note = (
            " (new; saved in " + str(settings.data_dir / _DEV_TOKEN_FILE) + ")" if created else ""
        )
        console.print(f"token:     {token}{note}", highlight=False, soft_wrap=True)
    elif not settings.open_writes:
        console.print("token:     writes need a bearer token — `bitbudget token create`")
    auth = f' -H "Authorization: Bearer {token or "$TOKEN"}"'
    json_h = " -H 'content-type: application/json'"
    console.print("register a model, then POST a budget:", highlight=False)
    model = '{"name": "sam2-micro"}'  # as README.md and docs/service.md
    plan = '{"model_id": 1, "budget": {"avg_bits": 6}, "validate": true}'
    console.print(
        f"  curl -X POST {base}/v1/models{auth}{json_h} -d '{model}'",
        highlight=False,
        soft_wrap=True,
    )
    console.print(
        f"  curl -X POST {base}/v1/plans{auth}{json_h} -d '{plan}'", highlight=False, soft_wrap=True
    )


def serve_cmd(
    host: str = typer.Option("127.0.0.1", help="address to bind"),
    port: int = typer.Option(8000, help="port"),
    dev: bool = typer.Option(False, "--dev", help="development mode: make a token on loopback"),
    log_level: str = typer.Option("info", help="uvicorn log level"),
) -> None:
    """Run the API (and, without BITBUDGET_BROKER_URL, the in-process job runner)."""
    import uvicorn

    from searchsvc.app import create_app
    from searchsvc.db import migrate
    from searchsvc.settings import is_loopback

    settings = _settings(host=host, port=port, dev=dev)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    with user_errors():
        migrate.upgrade(settings.database)
    token, created = (None, False)
    if dev and is_loopback(host):
        token, created = _dev_token(settings)
    elif dev:
        console.print("[yellow]--dev on a non-loopback address: no token is made for you[/]")
    _banner(settings, token, created)
    from searchsvc.plans.service import shutdown_solver

    try:
        uvicorn.run(create_app(settings), host=host, port=port, log_level=log_level)
    finally:  # the app's shutdown already did this, unless start-up failed half-way
        shutdown_solver()


def worker_cmd(
    pool: str = typer.Option("solo", help="celery pool: solo, threads or prefork"),
    concurrency: int = typer.Option(1, min=1, help="tasks at once (threads/prefork)"),
    loglevel: str = typer.Option("info", help="celery log level"),
    queues: str = typer.Option(
        None, help="comma-separated queues (default BITBUDGET_WORKER_QUEUES: all of them)"
    ),
) -> None:
    """Run a Celery worker on BITBUDGET_BROKER_URL (start as many as you like, anywhere)."""
    settings = _settings(worker_queues=queues)
    if settings.broker_url is None:
        fail("BITBUDGET_BROKER_URL is not set: without a broker, jobs run inside `bitbudget serve`")
    from searchsvc.shared_store import open_store

    with user_errors():
        open_store(settings.store_url).check()
    if settings.profile_threads is not None:
        import torch

        torch.set_num_threads(settings.profile_threads)
    from searchsvc.worker import app

    argv = ["worker", f"--pool={pool}", f"--concurrency={concurrency}", f"--loglevel={loglevel}"]
    queue_list = ",".join(settings.worker_queues)
    app.worker_main([*argv, "-Q", queue_list, "-n", f"bitbudget-{os.getpid()}@%h"])


def db_upgrade_cmd() -> None:
    """Apply every migration (``alembic upgrade head``)."""
    from searchsvc.db import migrate

    settings = _settings()
    with user_errors():
        migrate.upgrade(settings.database)
        console.print(f"database at revision {migrate.current_revision(settings.database)}")


def db_check_cmd() -> None:
    """Fail when the tables and the migrations disagree (``alembic check``)."""
    from searchsvc.db import migrate

    with user_errors():
        migrate.check(_settings().database)
    console.print("tables and migrations agree")


def token_create_cmd(name: str = typer.Option("cli", help="a label for the token")) -> None:
    """Create an API token; it is printed once (only its sha256 is stored)."""
    from searchsvc.auth.service import create_token
    from searchsvc.db import migrate
    from searchsvc.db.session import session_scope

    settings = _settings()
    migrate.upgrade(settings.database)
    with session_scope(settings.database) as session:
        _, token = create_token(session, name=name)
    print(token)


def _wait(settings: Any, job_id: int) -> Any:
    """Poll the job row until it ends, printing progress; returns the final job."""
    from searchsvc.db.session import session_scope
    from searchsvc.jobs.service import get_job, job_out

    last = ""
    with console.status("queued") as status:
        while True:
            with session_scope(settings.database, write=False) as session:
                job = job_out(session, get_job(session, job_id=job_id))
            line = f"{job.progress * 100:5.1f}%  {job.message}"
            if line != last:
                status.update(line)
                last = line
            if job.state in ("succeeded", "failed", "cancelled"):
                return job
            time.sleep(0.5)


def _table(plan: Any, model: Any) -> Table:
    """Per-component counts of each chosen candidate."""
    components = {x["name"]: x["component"] for x in model.inventory["layers"]}
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    for layer, choice in (plan.doc or {}).get("choices", {}).items():
        counts[components.get(layer, "other")][choice] += 1
    choices = sorted({c for row in counts.values() for c in row})
    table = Table(title=f"plan {plan.id}: {model.name} at {model.image_size} px — {plan.status}")
    for col in ["component", *choices]:
        table.add_column(col, justify="left" if col == "component" else "right")
    for component, row in counts.items():
        table.add_row(component, *[str(row.get(c, 0)) for c in choices])
    return table


def plan_cmd(
    model: str = typer.Argument(..., help="registered model name (see `bitbudget models`)"),
    memory_mb: float = typer.Option(None, "--memory-mb", help="memory budget, MB (10^6 B)"),
    latency_ms: float = typer.Option(
        None, "--latency-ms", help="latency budget (needs --hardware)"
    ),
    hardware: str = typer.Option(
        None,
        "--hardware",
        help="hardware profile: a shipped estimate (nvidia_t4) or a stored table",
    ),
    bops_g: float = typer.Option(None, "--bops-g", help="BOPs budget, 10^9"),
    avg_bits: float = typer.Option(None, "--avg-bits", help="average weight bits"),
    method: str = typer.Option(None, "--method", help="profile metric (default fisher_kl)"),
    solver: str = typer.Option(None, "--solver", help="cpsat, milp, dp, lagrangian, greedy"),
    image_size: int = typer.Option(None, "--image-size", help="input size in pixels"),
    images: int = typer.Option(None, "--images", help="calibration images"),
    candidates: str = typer.Option(None, "--candidates", help="comma-separated, e.g. w8a8,w4a8"),
    as_json: bool = typer.Option(False, "--json", help="print the plan resource as JSON"),
    video: bool = typer.Option(
        False, "--video", help="SAM2: solve over the hierarchical profile (memory path on clips)"
    ),
    clips: int = typer.Option(None, "--clips", help="--video: clips (default 2)"),
    frames: int = typer.Option(None, "--frames", help="--video: frames per clip (default 6)"),
    attention: bool = typer.Option(
        False, "--attention", help="attention matmul sites in the plan (profiled with it)"
    ),
    attention_options: str = typer.Option(
        None, "--attention-options", help="site options, e.g. a8,a4,a8log (implies --attention)"
    ),
) -> None:
    """Profile MODEL if needed, solve the budget and print the plan (same DB as the API)."""
    from pydantic import ValidationError

    from searchsvc.plans.schemas import PlanCreate

    wanted = [c.strip() for c in candidates.split(",")] if candidates else None
    limits: dict[str, Any] = {"memory_mb": memory_mb, "latency_ms": latency_ms}
    limits |= {"bops_g": bops_g, "avg_bits": avg_bits, "hardware": hardware}
    fields = {"model_id": 1, "budget": limits, "method": method, "solver": solver}
    if not video and (clips, frames) != (None, None):
        fail("--clips / --frames need --video")
    if video:
        counts = {"clips": clips, "frames": frames}
        fields["video"] = {k: v for k, v in counts.items() if v is not None}
    try:
        site_opts = [o.strip() for o in attention_options.split(",")] if attention_options else None
        fields |= {"attention": attention or bool(site_opts), "attention_options": site_opts}
        body = PlanCreate.model_validate(fields | {"candidates": wanted, "images": images})
    except ValidationError as exc:  # one line naming each field (--memory-mb 1e308: memory_mb)
        fail("; ".join(_field_error(e) for e in exc.errors()))
    with user_errors():
        _plan(model, image_size, body, as_json)


def _field_error(error: Any) -> str:
    """``budget.memory_mb: Input should be ...`` (the CLI option is the field's name)."""
    where = ".".join(str(p) for p in error.get("loc", ()) if p != "budget")
    message = str(error["msg"]).removeprefix("Value error, ")
    return f"{where}: {message}" if where else message


def _plan(name: str, image_size: int | None, body: Any, as_json: bool) -> None:
    from searchsvc.catalog import service as catalog
    from searchsvc.db import migrate
    from searchsvc.db.session import session_scope
    from searchsvc.jobs.dispatch import configure_dispatcher, shutdown_dispatcher
    from searchsvc.plans.service import create_plan, draft_plan, get_plan, plan_out

    settings = _settings()
    migrate.upgrade(settings.database)
    configure_dispatcher(settings)
    try:
        spec = catalog.resolve_spec(
            settings, name=name, image_size=image_size, checkpoint=None, seed=0
        )
        with session_scope(settings.database, write=False) as read:
            row = catalog.find_registered(read, spec=spec)
        if row is None:
            with console.status(f"building {name} for its inventory"):
                built = catalog.build_row(spec)
            with session_scope(settings.database) as session:
                row, _ = catalog.save_model(session, row=built)
        body.model_id = row.id
        with session_scope(settings.database, write=False) as read:
            draft = draft_plan(read, settings=settings, body=body)
        with session_scope(settings.database) as session:
            result = create_plan(session, settings=settings, draft=draft)
            session.flush()
            plan_id, job_id = result.plan.id, result.job.id if result.job else None
        if job_id is not None:
            job = _wait(settings, job_id)
            if job.state != "succeeded":
                fail(f"job {job_id} {job.state}: {job.error}")
        with session_scope(settings.database, write=False) as session:
            plan = get_plan(session, plan_id=plan_id)
            model = catalog.get_model(session, model_id=plan.model_id, inventory=True)
            out = plan_out(plan, model)
            if as_json:
                print_json(out.model_dump(mode="json", by_alias=True))
                return
            console.print(_table(plan, model))
    finally:
        shutdown_dispatcher(settings)
    usage = ", ".join(f"{k} {v:g}" for k, v in out.usage.items())
    asked = ", ".join(f"{k} {v}" for k, v in out.budget.items())
    console.print(
        f"budget: {asked}\nuses:   {usage}\nobjective {out.objective:.6g}", highlight=False
    )
    console.print(f"plan {out.id} ({out.method}, {out.solver}); GET /v1/plans/{out.id} for choices")
    if out.video:
        console.print(
            f"hierarchical profile: memory path profiled on {out.video['clips']} clips of "
            f"{out.video['frames']} frames (docs/video.md)"
        )
    random_weights_note(out.random_weights)


def register(app: typer.Typer) -> None:
    """Add the service commands to ``app``."""
    app.command("serve")(serve_cmd)
    app.command("worker")(worker_cmd)
    app.command("plan")(plan_cmd)
    db = typer.Typer(help="database migrations", no_args_is_help=True)
    db.command("upgrade")(db_upgrade_cmd)
    db.command("check")(db_check_cmd)
    app.add_typer(db, name="db")
    token = typer.Typer(help="API tokens", no_args_is_help=True)
    token.command("create")(token_create_cmd)
    app.add_typer(token, name="token")

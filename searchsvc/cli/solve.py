"""``bitbudget solve`` and ``bitbudget pareto``: the solvers on a problem JSON file.

Exit codes: 0 a plan (optimal or feasible), 3 infeasible (explanation on stderr and in the JSON),
2 malformed input (unreadable file, bad JSON, a field that breaks the format, an unknown or
inapplicable solver), 1 no plan within the limit and no proof there is none (status unknown).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import NoReturn

import typer
from rich.console import Console
from rich.table import Table

__all__ = ["register", "EXIT_OK", "EXIT_UNKNOWN", "EXIT_INPUT", "EXIT_INFEASIBLE"]

EXIT_OK, EXIT_UNKNOWN, EXIT_INPUT, EXIT_INFEASIBLE = 0, 1, 2, 3


def _fail(message: str, code: int = EXIT_INPUT) -> NoReturn:
    """One line on stderr, then exit."""
    sys.stderr.write(f"error: {' '.join(message.split())}\n")
    raise typer.Exit(code)


def _load(path: Path, hardware: str | None = None) -> object:
    """The validated problem (its latencies from a measured table when ``hardware`` names one),
    or exit 2 with the validation message."""
    from profiling.errors import BitbudgetError
    from solvers import Problem, ProblemError

    try:
        if hardware is None:
            return Problem.load(path)
        from searchsvc.cli.latency import resolve_table
        from solvers.latency_table import apply_table

        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ProblemError(f"problem: cannot read {path} ({exc})") from None
        if not isinstance(raw, dict):
            raise ProblemError("problem: must be a JSON object")
        return Problem.from_dict(apply_table(raw, resolve_table(hardware)))
    except ValueError as exc:  # ProblemError, TableError, an unknown hardware name
        _fail(str(exc))
    except BitbudgetError as exc:  # a stored name that is unknown or a roofline estimate
        _fail(str(exc))


_HARDWARE_HELP = "measured latency table: a stored hardware profile's name or a JSON file"


def solve_cmd(
    problem: Path = typer.Argument(..., help="problem JSON (bitbudget.problem/v1)"),
    solver: str = typer.Option("cpsat", "--solver", help="cpsat | milp | dp | lagrangian | greedy"),
    time_limit: float = typer.Option(None, "--time-limit", help="seconds (default: none)"),
    out: Path = typer.Option(None, "--out", help="also write the plan JSON here"),
    hardware: str = typer.Option(None, "--hardware", help=_HARDWARE_HELP),
) -> None:
    """Solve PROBLEM and print the plan JSON."""
    from solvers import BACKENDS, solve

    if solver not in BACKENDS:
        _fail(f"unknown solver {solver!r}; known: {', '.join(BACKENDS)}")
    loaded = _load(problem, hardware)
    try:
        plan = solve(loaded, solver, time_limit=time_limit)  # type: ignore[arg-type]
    except ValueError as exc:
        _fail(str(exc))
    text = plan.to_json(indent=2)
    sys.stdout.write(text + "\n")
    if out is not None:
        out.write_text(text + "\n", encoding="utf-8")
    if plan.status == "infeasible":
        sys.stderr.write(f"{plan.message}\n")
        raise typer.Exit(EXIT_INFEASIBLE)
    if plan.status == "unknown":
        sys.stderr.write(f"{plan.message}\n")
        raise typer.Exit(EXIT_UNKNOWN)


def pareto_cmd(
    problem: Path = typer.Argument(..., help="problem JSON (bitbudget.problem/v1)"),
    resource: str = typer.Option("memory_bytes", "--resource", help="resource to sweep"),
    points: int = typer.Option(20, "--points", min=1, help="budgets in the sweep"),
    method: str = typer.Option("auto", "--method", help="auto | dp | cpsat | milp | lagrangian"),
    lo: float = typer.Option(None, "--lo", help="smallest budget (default: least reachable)"),
    hi: float = typer.Option(
        None, "--hi", help="largest budget (default: where loss stops falling)"
    ),
    time_limit: float = typer.Option(None, "--time-limit", help="seconds per point"),
    total_time: float = typer.Option(
        None,
        "--total-time",
        min=0.01,
        help="seconds for the whole front (points share what is left)",
    ),
    as_json: bool = typer.Option(False, "--json", help="print JSON instead of a table"),
    hardware: str = typer.Option(None, "--hardware", help=_HARDWARE_HELP),
) -> None:
    """The least loss against RESOURCE over a range of budgets (non-dominated points)."""
    from solvers.pareto import pareto_front

    loaded = _load(problem, hardware)
    try:
        front = pareto_front(
            loaded,  # type: ignore[arg-type]
            resource,
            points,
            lo=lo,
            hi=hi,
            method=method,
            time_limit=time_limit,
            total_time=total_time,
        )
    except ValueError as exc:
        _fail(str(exc))
    if as_json:
        sys.stdout.write(json.dumps(front.to_dict(), indent=2) + "\n")
        return
    title = f"Pareto front over {resource} ({front.method}, {front.solve_seconds:.2f} s)"
    table = Table(title=title)
    for col in ("budget", "total", "loss", "bound", "gap", "status"):
        table.add_column(col, justify="right")
    for p in front.points:
        gap = "" if p.plan.gap is None else f"{100 * p.plan.gap:.3f}%"
        row = (f"{p.budget:.6g}", f"{p.plan.totals[resource]:.6g}", f"{p.plan.objective:.6g}")
        table.add_row(*row, f"{p.plan.bound:.6g}", gap, p.plan.status)
    Console(width=None if sys.stdout.isatty() else 160).print(table)


def register(app: typer.Typer) -> None:
    """Add ``solve`` and ``pareto`` to the ``bitbudget`` app."""
    app.command("solve")(solve_cmd)
    app.command("pareto")(pareto_cmd)

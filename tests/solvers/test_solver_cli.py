"""``bitbudget solve`` / ``bitbudget pareto`` through Typer's CliRunner: output and exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from solver_helpers import random_doc
from typer.testing import CliRunner

from searchsvc.cli.solve import register


@pytest.fixture(scope="module")
def app() -> typer.Typer:
    app = typer.Typer()
    register(app)
    return app


def _write(tmp_path: Path, doc: object, name: str = "problem.json") -> str:
    path = tmp_path / name
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return str(path)


def test_solve_prints_the_plan_and_writes_it(app: typer.Typer, tmp_path: Path) -> None:
    out = tmp_path / "plan.json"
    result = CliRunner().invoke(
        app, ["solve", _write(tmp_path, random_doc(6, 3, 0)), "--out", str(out)]
    )
    assert result.exit_code == 0, result.stderr
    plan = json.loads(result.stdout)
    assert plan["status"] == "optimal" and plan["solver"] == "cpsat" and len(plan["choices"]) == 6
    assert json.loads(out.read_text()) == plan


@pytest.mark.parametrize("solver", ["milp", "lagrangian", "greedy"])
def test_solve_with_other_backends(app: typer.Typer, tmp_path: Path, solver: str) -> None:
    args = [
        "solve",
        _write(tmp_path, random_doc(6, 3, 1)),
        "--solver",
        solver,
        "--time-limit",
        "20",
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0 and json.loads(result.stdout)["solver"] == solver


def test_infeasible_exits_3_with_the_explanation(app: typer.Typer, tmp_path: Path) -> None:
    doc = random_doc(6, 3, 0)
    doc["budget"]["memory_bytes"] = 30
    result = CliRunner().invoke(app, ["solve", _write(tmp_path, doc)])
    assert result.exit_code == 3
    plan = json.loads(result.stdout)
    assert plan["status"] == "infeasible" and plan["explanation"]["memory_bytes"]["budget"] == 30
    assert plan["explanation"]["memory_bytes"]["least"] > 30
    assert "memory_bytes: least" in result.stderr and "vs budget 30" in result.stderr


@pytest.mark.parametrize(
    "content, message",
    [
        ("{not json", "error: problem: not valid JSON"),
        (
            {"format": "bitbudget.problem/v1", "layers": []},
            "error: layers: must list at least one layer",
        ),
        ("NEGATIVE", "error: layers[3].options[1].memory_bytes: must be finite and >= 0"),
    ],
)
def test_malformed_input_exits_2_with_one_line(
    app: typer.Typer, tmp_path: Path, content, message
) -> None:
    if content == "NEGATIVE":
        content = random_doc(5, 3, 0)
        content["layers"][3]["options"][1]["memory_bytes"] = -1
    result = CliRunner().invoke(app, ["solve", _write(tmp_path, content)])
    assert result.exit_code == 2
    assert result.stderr.startswith(message) and result.stderr.count("\n") == 1
    assert "Traceback" not in result.stderr + result.stdout and result.stdout == ""


def test_unreadable_file_unknown_solver_and_dp_on_a_non_chain_exit_2(
    app: typer.Typer, tmp_path: Path
) -> None:
    runner = CliRunner()
    missing = runner.invoke(app, ["solve", str(tmp_path / "nope.json")])
    assert missing.exit_code == 2 and missing.stderr.startswith("error: problem: cannot read")
    path = _write(tmp_path, random_doc(6, 3, 0))
    unknown = runner.invoke(app, ["solve", path, "--solver", "gurobi"])
    assert unknown.exit_code == 2 and "known: cpsat, milp, dp, lagrangian, greedy" in unknown.stderr
    dp = runner.invoke(app, ["solve", path, "--solver", "dp"])
    assert dp.exit_code == 2 and dp.stderr.startswith("error: dp: needs a chain")


def test_pareto_json_and_table(app: typer.Typer, tmp_path: Path) -> None:
    path = _write(tmp_path, random_doc(6, 3, 2, chain_only=True, budgets=()))
    result = CliRunner().invoke(
        app, ["pareto", path, "--resource", "memory_bytes", "--points", "5", "--json"]
    )
    assert result.exit_code == 0, result.stderr
    front = json.loads(result.stdout)
    assert front["method"] == "dp" and front["requested_points"] == 5 and front["points"]
    table = CliRunner().invoke(app, ["pareto", path, "--points", "5"])
    assert table.exit_code == 0 and "Pareto front over memory_bytes" in table.stdout
    assert f"{front['points'][0]['objective']:.6g}" in table.stdout
    bad = CliRunner().invoke(app, ["pareto", path, "--resource", "flops"])
    assert bad.exit_code == 2 and bad.stderr.startswith("error: resource 'flops'")
    boxed = CliRunner().invoke(
        app, ["pareto", path, "--points", "5", "--method", "cpsat", "--total-time", "5", "--json"]
    )
    assert boxed.exit_code == 0, boxed.stderr
    assert json.loads(boxed.stdout)["method"] == "cpsat" and json.loads(boxed.stdout)["points"]
    negative = CliRunner().invoke(app, ["pareto", path, "--total-time", "-1"])
    assert negative.exit_code == 2 and "--total-time" in negative.stderr


def test_the_bitbudget_app_lists_the_solve_module() -> None:
    source = (Path(__file__).resolve().parents[2] / "searchsvc" / "cli" / "__init__.py").read_text()
    assert '"searchsvc.cli.solve",' in source

"""``bitbudget refine`` offline: bad input is one line and exit code 2, never a traceback."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from searchsvc.cli import app

runner = CliRunner()


def _run(*args: str):  # noqa: ANN202
    return runner.invoke(app, ["refine", *args])


def test_refine_cli_bad_input(tmp_path: Path) -> None:
    cases = [
        (["--steps", "2"], "exactly one of PLAN.json or --plan-id"),
        ([str(tmp_path / "missing.json"), "--steps", "2"], "cannot read a JSON plan"),
        ([str(tmp_path / "plan.json"), "--steps", "0"], "--steps"),
    ]
    (tmp_path / "plan.json").write_text(json.dumps({"choices": {"nope": "w3a8"}}))
    cases.append(([str(tmp_path / "plan.json"), "--steps", "1"], "names no model"))
    cases.append(
        (
            [str(tmp_path / "plan.json"), "--steps", "1", "--model", "sam2-micro"],
            "not a quantizable layer",
        )
    )
    for args, message in cases:
        res = _run(*args)
        assert res.exit_code == 2, (args, res.output)
        assert message in res.output, (args, res.output)
        assert "Traceback" not in res.output


def test_refine_then_validate_with_the_learned_clipping(tmp_path: Path) -> None:
    """Offline: ``refine PLAN.json --out SIDECAR`` then ``validate PLAN.json --clipping SIDECAR``
    reports the fidelity of post-training clipping (before) and of the learned one (after)."""
    from profiling.inventory import build_inventory
    from profiling.models import ModelSpec, build_model
    from profiling.validate import priced_plan

    inv = build_inventory(build_model(ModelSpec("sam2-micro"))).to_json()
    choices = {x["name"]: "w3a8" for x in inv["layers"] if x.get("weight_numel")}
    doc = priced_plan(inv, choices) | {"status": "optimal", "model": {"name": "sam2-micro"}}
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps(doc))
    sidecar = tmp_path / "clipping.safetensors"
    small = ["--images", "1", "--holdout", "1"]
    res = _run(str(plan), "--steps", "1", *small, "--out", str(sidecar))
    assert res.exit_code == 0, res.output
    assert sidecar.is_file()
    out = runner.invoke(app, ["validate", str(plan), *small, "--clipping", str(sidecar), "--json"])
    assert out.exit_code == 0, out.output
    validated = json.loads(out.stdout)
    assert validated["refinement"]["clipping"] == sidecar.name
    assert validated["metrics"] == validated["refinement"]["after"]
    missing = runner.invoke(app, ["validate", str(plan), "--clipping", str(tmp_path / "no")])
    assert missing.exit_code == 2 and "no such file" in missing.output

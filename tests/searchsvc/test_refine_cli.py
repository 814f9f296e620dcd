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

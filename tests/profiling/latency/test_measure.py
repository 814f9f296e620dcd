"""A sam2-micro latency table measured in torch (one repeat per cell): its format, a solve under
a latency budget on it, and the CLI: check, bad input, and a killed run that resumes without
re-timing the cells it had finished."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from profiling.inventory import build_inventory
from profiling.latency import MeasureRequest, cells_path, measure_table
from profiling.sensitivity import Profile, problem_from_profile
from profiling.sensitivity.problem import layer_descs
from solvers import solve
from solvers.latency_table import check_table, predict_latency, timed_layers

OPTIONS = ["w8a8", "w16a16"]


@pytest.fixture(scope="module")
def measured(sam2_micro: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("latency") / "micro.json"
    req = MeasureRequest("sam2-micro", candidates=("w8a8",), runtime="torch", warmup=0, repeats=1)
    table = measure_table(req, out, loaded=sam2_micro)
    return {"table": table, "out": out, "inventory": build_inventory(sam2_micro).to_json()}


def test_table_format(measured: dict[str, Any]) -> None:
    table, inventory = measured["table"], measured["inventory"]
    check_table(table, inventory, OPTIONS)
    assert json.loads(measured["out"].read_text()) == table
    assert set(table["latency_table"]) == set(timed_layers(inventory))
    m = table["measured"]
    assert m["runtime"] == "torch" and m["threads"] == 2 and m["repeats"] == 1 and m["host"]
    encoder = table["end_to_end_layers"]
    assert encoder and all(
        n.startswith(("image_encoder", "sam_mask_decoder.conv_s")) for n in encoder
    )
    layer_sum = sum(table["latency_table"][n]["w16a16"]["median_ms"] for n in encoder)
    assert table["fixed_ms"] == max(0.0, table["float_ms"]["median_ms"] - layer_sum)
    assert not cells_path(measured["out"]).read_text().count("\n") < len(timed_layers(inventory))


def _profile(inventory: dict[str, Any]) -> Profile:
    names = list(layer_descs(inventory))
    layers = {
        n: {"weight": {"8": 0.01 * (i % 7 + 1)}, "act": {"8": 0.002 * (i % 5 + 1)}}
        for i, n in enumerate(names)
    }
    return Profile("t", {}, "kl", list(OPTIONS), True, "seeded", {}, layers=layers)


def test_solve_on_measured_table_is_within_budget(measured: dict[str, Any]) -> None:
    table, inventory = measured["table"], measured["inventory"]
    profile = _profile(inventory)
    free = problem_from_profile(profile, inventory, {}, table)
    assert free.fixed["latency_ms"] == table["fixed_ms"]
    spans = [[o.costs["latency_ms"] for o in x.options] for x in free.layers]
    least = free.fixed["latency_ms"] + sum(min(c) for c in spans)
    most = free.fixed["latency_ms"] + sum(max(c) for c in spans)
    budget = least + 0.3 * (most - least)
    plan = solve(problem_from_profile(profile, inventory, {"latency_ms": budget}, table), "cpsat")
    assert plan.status in ("optimal", "feasible"), plan.message
    assert plan.totals["latency_ms"] <= budget * (1 + 1e-9)
    assert plan.totals["latency_ms"] == pytest.approx(
        predict_latency(table, plan.choices), rel=1e-12
    )


def test_table_for_another_model_is_refused(measured: dict[str, Any], sam_micro: Any) -> None:
    from profiling.errors import BadInput

    inventory = build_inventory(sam_micro).to_json()
    with pytest.raises(BadInput, match=r"hardware: model: the table is for 'sam2-micro'"):
        problem_from_profile(_profile(inventory), inventory, {}, measured["table"])


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = os.environ | {"PYTHONPATH": os.getcwd()}
    return subprocess.run(
        [sys.executable, "-m", "searchsvc.cli", *args],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )


def test_cli_check_and_bad_input(measured: dict[str, Any], tmp_path: Path) -> None:
    ok = _cli("latency", "check", str(measured["out"]))
    assert ok.returncode == 0 and ok.stdout.startswith("ok: "), ok.stderr
    broken = json.loads(measured["out"].read_text())
    first = next(iter(broken["latency_table"]))
    broken["latency_table"][first]["w8a8"]["median_ms"] = -1
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(broken))
    res = _cli("latency", "check", str(bad))
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert f"latency_table.{first}.w8a8.median_ms" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    res = _cli(
        "latency", "measure", "sam2-micro", "--runtime", "tvm", "--out", str(tmp_path / "x.json")
    )
    assert res.returncode == 2 and "runtime: unknown 'tvm'" in res.stderr, res.stderr


def test_killed_measurement_resumes(tmp_path: Path) -> None:
    out = tmp_path / "t.json"
    args = ["latency", "measure", "sam2-micro", "--runtime", "torch", "--candidates", "w8a8"]
    args += ["--repeats", "3", "--warmup", "0", "--out", str(out)]
    env = os.environ | {"PYTHONPATH": os.getcwd()}
    proc = subprocess.Popen(
        [sys.executable, "-m", "searchsvc.cli", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    cells = cells_path(out)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if cells.exists() and cells.read_text().count("\n") > 40:
                break
            time.sleep(0.2)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert not out.exists()  # nothing half-written
    rows = [json.loads(x) for x in cells.read_text().splitlines()[1:] if x.endswith("}")]
    assert len(rows) >= 40
    again = _cli(*args)
    assert again.returncode == 0, again.stderr
    table = json.loads(out.read_text())
    for row in rows:  # the cells timed before the kill are kept as they were, not re-timed
        assert table["latency_table"][row["layer"]][row["option"]] == row["cell"]
    lines = cells.read_text().splitlines()
    timed = [json.loads(x) for x in lines[1:]]
    keys = [(r["layer"], r["option"]) for r in timed]
    assert len(keys) == len(set(keys))  # each cell timed exactly once across both runs


def test_cli_solve_with_hardware_file(measured: dict[str, Any], tmp_path: Path) -> None:
    table, inventory = measured["table"], measured["inventory"]
    free = problem_from_profile(_profile(inventory), inventory, {})
    raw = free.to_dict()
    for layer in raw["layers"]:  # the roofline-free problem: latencies come from --hardware
        for option in layer["options"]:
            option.pop("latency_ms", None)
    spans = [[table_ms(table, x["name"], o["id"]) for o in x["options"]] for x in raw["layers"]]
    least = table["fixed_ms"] + sum(min(s) for s in spans)
    most = table["fixed_ms"] + sum(max(s) for s in spans)
    raw["budget"] = {"latency_ms": least + 0.5 * (most - least)}
    problem = tmp_path / "problem.json"
    problem.write_text(json.dumps(raw))
    res = _cli("solve", str(problem), "--hardware", str(measured["out"]), "--solver", "dp")
    assert res.returncode == 0, res.stderr
    plan = json.loads(res.stdout)
    assert plan["totals"]["latency_ms"] <= raw["budget"]["latency_ms"] * (1 + 1e-9)
    assert plan["totals"]["latency_ms"] == pytest.approx(
        predict_latency(table, plan["choices"]), rel=1e-12
    )
    raw["layers"][0]["options"].append({"id": "w2a8", "loss": 0.0, "memory_bytes": 1})
    problem.write_text(json.dumps(raw))
    res = _cli("solve", str(problem), "--hardware", str(measured["out"]))
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert f"latency_table.{raw['layers'][0]['name']}.w2a8: missing" in res.stderr


def table_ms(table: dict[str, Any], layer: str, option: str) -> float:
    from solvers.latency_table import MeasuredProfile

    return MeasuredProfile.from_dict(table).layer_ms(layer, option)


def test_onnxruntime_table(sam2_micro: Any, tmp_path: Path) -> None:
    """The onnxruntime form: linear / conv2d layers as export's QDQ graphs, ConvTranspose2d
    (no standalone graph) timed in torch and labelled, the float encoder exported and timed."""
    import onnxruntime

    out = tmp_path / "ort.json"
    inventory = build_inventory(sam2_micro).to_json()
    kinds = {x["name"]: x["kind"] for x in inventory["layers"]}
    names = timed_layers(inventory)
    some = [n for n in names if kinds[n] == "conv_transpose2d"][:1]
    some += [n for n in names if kinds[n] == "linear"][:2]
    some += [n for n in names if kinds[n] == "conv2d"][:1]
    req = MeasureRequest(
        "sam2-micro",
        candidates=("w4a8",),
        runtime="onnxruntime",
        warmup=0,
        repeats=1,
        layers=tuple(some),  # a few of each kind: the test is about the form, not the speed
    )
    table = measure_table(req, out, loaded=sam2_micro)
    assert sorted(table["latency_table"]) == sorted(some)
    assert table["measured"]["runtime_version"] == onnxruntime.__version__
    cells = table["latency_table"]
    for name, row in cells.items():
        fell_back = kinds[name] not in ("linear", "conv2d")
        assert all(("runtime" in c) == fell_back for c in row.values()), name
    assert any("runtime" in row["w4a8"] for row in cells.values())  # the upscaling convs
    assert table["float_ms"]["repeats"] >= 10 and table["float_ms"]["spread"] >= 0

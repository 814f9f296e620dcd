"""The CI gate: checks of a validation document against limits, one line each, and JUnit XML.

Checks: ``size`` (the artifact's tensor bytes, MB of 10^6 B, against ``max_size_mb``),
``size-prediction`` (measured against the plan's predicted bytes, always), and when asked,
``iou`` (mean mask IoU against the float model, ``min_iou``), ``kl`` (``max_kl``) and
``file-size`` (the exported ONNX files on disk, MB of 10^6 B, ``max_file_mb``: what ships).
A metric that was not measured fails its check.
"""

from __future__ import annotations

import json
import math
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass
from typing import Any

from profiling.errors import BadInput

__all__ = ["GateLimits", "Check", "gate_checks", "junit_xml", "MB"]

MB = 1_000_000


@dataclass(frozen=True)
class GateLimits:
    """What a build must meet; ``max_size_mb`` always, the fidelity floors when given."""

    max_size_mb: float
    min_iou: float | None = None
    max_kl: float | None = None
    max_file_mb: float | None = None

    def __post_init__(self) -> None:
        if not (math.isfinite(self.max_size_mb) and self.max_size_mb > 0):
            raise BadInput(f"max_size_mb must be a positive number, got {self.max_size_mb}")
        if self.min_iou is not None and not 0 <= self.min_iou <= 1:
            raise BadInput(f"min_iou must lie in [0, 1], got {self.min_iou}")
        if self.max_kl is not None and not (math.isfinite(self.max_kl) and self.max_kl >= 0):
            raise BadInput(f"max_kl must be a non-negative number, got {self.max_kl}")
        mf = self.max_file_mb
        if mf is not None and not (math.isfinite(mf) and mf > 0):
            raise BadInput(f"max_file_mb must be a positive number, got {mf}")


@dataclass(frozen=True)
class Check:
    """One gate check: the measured value, the limit, the relation it must satisfy, the line."""

    name: str
    passed: bool
    value: float | None
    limit: float
    op: str  # "<=" or ">="
    unit: str
    line: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


_NEGATION = {"<=": ">", ">=": "<"}


def _shown(value: float, limit: float, style: tuple[str, int], passed: bool) -> tuple[str, str]:
    """Format value and limit with enough digits that a failing pair never prints equal."""
    kind, digits = style
    for d in range(digits, digits + 8):
        a, b = f"{value:.{d}{kind}}", f"{limit:.{d}{kind}}"
        if passed or a != b:
            return a, b
    return repr(value), repr(limit)


def _check(
    name: str, value: float | None, limit: float, op: str, style: tuple[str, int], unit: str = ""
) -> Check:
    suffix = f" {unit}" if unit else ""
    if value is None or not math.isfinite(value):
        line = f"FAIL {name} not measured (limit {op} {limit:g}{suffix})"
        return Check(name, False, None, limit, op, unit, line)
    passed = value <= limit if op == "<=" else value >= limit
    a, b = _shown(value, limit, style, passed)
    shown_op = op if passed else _NEGATION[op]
    line = f"{'PASS' if passed else 'FAIL'} {name} {a}{suffix} {shown_op} {b}{suffix}"
    return Check(name, passed, value, limit, op, unit, line)


def _number(doc: dict[str, Any], *path: str) -> float | None:
    node: Any = doc
    for key in path:
        if not isinstance(node, dict):
            return None
        node = node.get(key)
    if node is None or isinstance(node, bool) or not isinstance(node, (int, float)):
        return None
    return float(node)


def gate_checks(
    validation: dict[str, Any], limits: GateLimits, file_bytes: int | None = None
) -> list[Check]:
    """The checks of ``validation`` (a ``bitbudget.validation/v1`` document) under ``limits``;
    ``file_bytes``: the exported files as measured on disk now (else the bytes an ONNX Runtime
    validation measured on disk, ``runtime.export.file_bytes``)."""
    if not isinstance(validation, dict) or "size" not in validation:
        raise BadInput("not a validation document (bitbudget.validation/v1 with size, metrics)")
    measured = _number(validation, "size", "measured_bytes")
    size = None if measured is None else measured / MB
    checks = [_check("size", size, limits.max_size_mb, "<=", ("f", 2), "MB")]
    rel = _number(validation, "size", "relative_error")
    tol = _number(validation, "size", "tolerance") or 0.005
    checks.append(
        _check(
            "size-prediction", None if rel is None else 100 * rel, 100 * tol, "<=", ("f", 3), "%"
        )
    )
    if limits.min_iou is not None:
        iou = _number(validation, "metrics", "iou")
        checks.append(_check("iou", iou, limits.min_iou, ">=", ("f", 4)))
    if limits.max_kl is not None:
        kl = _number(validation, "metrics", "kl")
        checks.append(_check("kl", kl, limits.max_kl, "<=", ("g", 4)))
    if limits.max_file_mb is not None:
        on_disk = _number(validation, "runtime", "export", "file_bytes")
        on_disk = float(file_bytes) if file_bytes is not None else on_disk
        mb = None if on_disk is None else on_disk / MB
        checks.append(_check("file-size", mb, limits.max_file_mb, "<=", ("f", 2), "MB"))
    return checks


def junit_xml(checks: list[Check], properties: dict[str, Any] | None = None) -> str:
    """A JUnit XML report: one test case per check, a ``failure`` element for each failed one."""
    failures = sum(not c.passed for c in checks)
    counts = {"tests": str(len(checks)), "failures": str(failures), "errors": "0"}
    root = ET.Element("testsuites", {"name": "bitbudget gate", **counts})
    suite = ET.SubElement(root, "testsuite", {"name": "bitbudget.gate", **counts, "skipped": "0"})
    if properties:
        props = ET.SubElement(suite, "properties")
        for key, value in properties.items():
            shown = value if isinstance(value, str) else json.dumps(value, default=str)
            ET.SubElement(props, "property", {"name": key, "value": shown})
    for check in checks:
        case = ET.SubElement(suite, "testcase", {"classname": "bitbudget.gate", "name": check.name})
        if not check.passed:
            failure = ET.SubElement(case, "failure", {"message": check.line, "type": "threshold"})
            failure.text = check.line
        ET.SubElement(case, "system-out").text = check.line
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"

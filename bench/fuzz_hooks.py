"""Schemathesis hooks of ``bench/fuzz.py`` (loaded through ``SCHEMATHESIS_HOOKS=fuzz_hooks``).

- Every response is logged (method, path template, status) to ``BITBUDGET_FUZZ_LOG``: the
  campaign's request and 5xx counts come from the server's answers, not from a summary.
- ``POST /v1/models`` registers only the micro configurations: registering a full-size model
  builds it (minutes and gigabytes on this machine) — a cost the campaign need not pay a
  thousand times, not a fault it could find.
- Ids: half the generated ones (the odd ones: a function of the value, so Hypothesis can replay
  it) are replaced by the rows the campaign seeded (``BITBUDGET_FUZZ_IDS``, JSON ``{"model_id":
  1, ...}``), so that requests also reach existing models, profiles, plans and jobs instead of
  stopping at a 404.
"""

from __future__ import annotations

import json
import os
import threading
from functools import cache
from typing import Any

import schemathesis

__all__ = ["FULL_SIZE_PREFIXES"]

FULL_SIZE_PREFIXES = ("sam2.1-", "sam-vit-")
_lock = threading.Lock()


def _is_register(context: Any) -> bool:
    operation = getattr(context, "operation", None)
    return bool(operation and operation.method.upper() == "POST" and operation.path == "/v1/models")


@cache
def _seeded() -> dict[str, int]:
    return dict(json.loads(os.environ.get("BITBUDGET_FUZZ_IDS") or "{}"))


def _seed_ids(values: dict[str, Any]) -> dict[str, Any]:
    """Odd integer ids (``*_id``) become the seeded row's id of that name."""
    seeded = _seeded()
    out = dict(values)
    for key, value in values.items():
        if key in seeded and type(value) is int and value % 2:
            out[key] = seeded[key]
    return out


@schemathesis.hook("map_body")
def seeded_and_micro(context: Any, body: Any) -> Any:
    """Seeded ids in bodies; a full-size model's name becomes ``sam2-micro``."""
    if not isinstance(body, dict):
        return body
    body = _seed_ids(body)
    name = body.get("name")
    if _is_register(context) and isinstance(name, str) and name.startswith(FULL_SIZE_PREFIXES):
        body = {**body, "name": "sam2-micro"}
    return body


@schemathesis.hook("map_path_parameters")
def seeded_path_ids(context: Any, path_parameters: Any) -> Any:
    """Seeded ids in paths."""
    return _seed_ids(path_parameters) if isinstance(path_parameters, dict) else path_parameters


@schemathesis.hook("map_query")
def seeded_query_ids(context: Any, query: Any) -> Any:
    """Seeded ids in query strings (``?model_id=``)."""
    return _seed_ids(query) if isinstance(query, dict) else query


@schemathesis.hook
def after_call(context: Any, case: Any, response: Any) -> None:
    """One line per response: ``METHOD PATH STATUS``."""
    path = os.environ.get("BITBUDGET_FUZZ_LOG")
    if not path:
        return
    line = f"{case.operation.method.upper()} {case.operation.path} {response.status_code}\n"
    with _lock, open(path, "a", encoding="utf-8") as fh:
        fh.write(line)


if __name__ == "__main__":  # `make bench` runs every bench/*.py: this one is not a benchmark
    print("schemathesis hooks of bench/fuzz.py (run that one)")

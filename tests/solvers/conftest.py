"""Make ``import solvers`` find the package, not this test folder (also under bare ``pytest``)."""

from __future__ import annotations

import sys
from pathlib import Path

_ROOT = str(Path(__file__).resolve().parents[2])
if sys.path[:1] != [_ROOT]:
    sys.path.insert(0, _ROOT)
if getattr(sys.modules.get("solvers"), "__file__", "") is None:  # the namespace shadow
    del sys.modules["solvers"]

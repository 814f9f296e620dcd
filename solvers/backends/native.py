"""The compiled inner loops (``_native.c``), loaded with ctypes; numpy stays the fallback.

``make venv`` / ``make test`` build the shared library with the machine's C compiler
(``python -m solvers.backends.native`` does the same by hand) into ``build/native/`` at the
repository root. ``BITBUDGET_NATIVE`` may name another library file, or be ``0`` to use the
numpy code. A library that is missing, fails to load, or was built from an older source
(``bb_abi`` differs) is ignored: the numpy path gives the same results, only slower.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["ABI_VERSION", "SOURCE", "default_path", "build", "load", "lib", "ptr"]

ABI_VERSION = 3  # must match ABI_VERSION in _native.c
SOURCE = Path(__file__).with_name("_native.c")
# -ffp-contract=off: no fused multiply-adds, so every sum rounds as numpy's does
FLAGS = ["-O3", "-fPIC", "-shared", "-ffp-contract=off", "-fno-fast-math"]

_P = ctypes.c_void_p
_I = ctypes.c_int64
_SIGNATURES: dict[str, tuple[Any, list[Any]]] = {
    "bb_tree_minimise": (None, [_I, _I, _I, _I, _P, _P, _P, _P, _P, _I, _P, _P, _I, _P, _P, _P]),
    "bb_marginals_up": (None, [_I, _P, _P, _P, _I, _P, _P]),
    "bb_marginals_down": (None, [_I, _P, _P, _P, _P, _P, _P, _I, _P, _P]),
    "bb_local_search": (
        ctypes.c_int,
        [_I, _I, _I, _I, _I, _P, _P, _P, _P, _P, _P, _P, _P, _P, _P, _P, ctypes.c_double, _I],
    ),
    "bb_pair_refresh": (None, [_I, _I, _I, _P, _P, _P, _P]),
    "bb_polish": (
        ctypes.c_int,
        [_I, _I, _I, _I, _P, _P, _P, _P, _P, _P, _P, _P, _I, _P, ctypes.c_double, _I, _P, _P],
    ),
}


def default_path() -> Path:
    """``build/native/libbitbudget_solvers.so`` at the repository root."""
    return Path(__file__).resolve().parents[2] / "build" / "native" / "libbitbudget_solvers.so"


def build(out: Path | None = None, compiler: str | None = None) -> Path:
    """Compile ``_native.c`` into a shared library at ``out``; raises if no compiler works."""
    out = Path(out) if out is not None else default_path()
    cc = compiler or os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if not cc:
        raise RuntimeError("no C compiler found (set CC)")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + f".{os.getpid()}.tmp")
    subprocess.run([cc, *FLAGS, "-o", str(tmp), str(SOURCE), "-lm"], check=True)
    os.replace(tmp, out)  # atomic: a running process keeps the file it mapped
    return out


def load(path: Path | str) -> ctypes.CDLL | None:
    """The library at ``path`` with its signatures set, or None if it is unusable."""
    try:
        handle = ctypes.CDLL(str(path))
        handle.bb_abi.restype = ctypes.c_int
        if handle.bb_abi() != ABI_VERSION:
            return None
        for name, (restype, argtypes) in _SIGNATURES.items():
            fn = getattr(handle, name)
            fn.restype, fn.argtypes = restype, argtypes
    except (OSError, AttributeError):
        return None
    return handle


_CACHE: dict[str, ctypes.CDLL | None] = {}


def lib() -> ctypes.CDLL | None:
    """The compiled kernels, or None (numpy fallback). Loaded once per setting."""
    setting = os.environ.get("BITBUDGET_NATIVE", "")
    if setting not in _CACHE:
        if setting == "0":
            _CACHE[setting] = None
        else:
            path = Path(setting) if setting else default_path()
            _CACHE[setting] = load(path) if path.is_file() else None
    return _CACHE[setting]


def ptr(array: np.ndarray) -> int:
    """The data address of a C-contiguous array (the caller keeps the array alive)."""
    assert array.flags.c_contiguous
    return int(array.ctypes.data)


if __name__ == "__main__":
    try:
        print(f"built {build()}")
    except (RuntimeError, OSError, subprocess.CalledProcessError) as error:
        # not fatal: the numpy path is used without the library
        print(f"solvers: compiled kernels not built ({error}); using numpy", file=sys.stderr)

"""Bit-allocation solvers: ``Problem`` in, ``Plan`` out. Pure numpy + OR-Tools + cvxpy, no torch."""

from __future__ import annotations

from solvers.backends import BACKENDS, NotApplicable, get_backend, solve
from solvers.problem import Plan, Problem, ProblemError

__all__ = ["BACKENDS", "NotApplicable", "Plan", "Problem", "ProblemError", "get_backend", "solve"]

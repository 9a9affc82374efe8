"""solve: an exact CP-SAT planner for serving an LLM on GPUs, with proofs when it cannot be done.

The public Python API (see README "Python API")::

    from solver import load_instance, plan, verify_strategy, diagnose

    problem = load_instance("instances/llama70b_h100.json")
    report = plan(problem)                      # a Report: status, objective, strategy, metrics
    print(report.to_json())                     # exactly `solve ... --format json`

Subpackages, in the one direction data flows (each imports only those before it): ``input``
(schema, catalogs, errors), ``physics`` (the cost model), ``engines`` (per-engine flags and
rules), ``problem`` (resolution), ``verify`` (solver-independent checks), ``search`` (CP-SAT),
``diagnose`` (proofs), ``report`` (JSON, text), ``api`` (this API), ``runners`` (CLI, batch).
The API names are imported on first use, so ``import solver.physics`` stays free of OR-Tools.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .api import Report, diagnose, load_instance, plan, solve_file, verify_strategy
    from .input.errors import InputError
    from .search.planner import SolveParams, VerificationError

_API = {
    "Report": "api", "load_instance": "api", "plan": "api", "verify_strategy": "api", "diagnose": "api",
    "solve_file": "api", "InputError": "input.errors", "SolveParams": "search.planner",
    "VerificationError": "search.planner",
}

__all__ = ["InputError", "Report", "SolveParams", "VerificationError", "diagnose", "load_instance", "plan",
           "solve_file", "verify_strategy"]


def __getattr__(name: str) -> Any:
    """Import an API name on first use (PEP 562)."""
    if name in _API:
        from importlib import import_module

        return getattr(import_module(f".{_API[name]}", __name__), name)
    raise AttributeError(f"module 'solver' has no attribute {name!r}")

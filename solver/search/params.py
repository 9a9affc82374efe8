"""CP-SAT parameters of a solve: deterministic by default (one worker, a fixed seed, limits in work units)."""

from __future__ import annotations

from dataclasses import dataclass

from ortools.sat.python import cp_model


class VerificationError(AssertionError):
    """A decoded plan failed the solver-independent check: a bug, never a result."""


@dataclass(frozen=True)
class SolveParams:
    """CP-SAT parameters (defaults are deterministic: one worker, fixed seed)."""

    time_limit_s: float = 60.0
    workers: int = 1
    seed: int = 0
    # A limit per solve phase in CP-SAT's deterministic units (roughly seconds of one core): the same
    # instance reaches the same point of every phase however loaded the machine; the wall-clock
    # limit is only a safety net. A phase that stops at its limit is reported, never hidden.
    deterministic_time: float | None = 30.0
    probing_level: int = 0  # CP-SAT cp_model_probing_level (its default is 2)


def configured_solver(p: SolveParams, time_limit: float) -> cp_model.CpSolver:
    """A CP-SAT solver set up from ``p`` with a wall-clock safety net of ``time_limit`` seconds."""
    solver = cp_model.CpSolver()
    solver.parameters.max_time_in_seconds = max(0.01, time_limit)
    solver.parameters.num_workers = p.workers
    solver.parameters.random_seed = p.seed
    # Presolve probing costs a flat second on larger option tables and never paid off here
    # (benchmarks/solver_speed.py measures both settings).
    solver.parameters.cp_model_probing_level = p.probing_level
    if p.deterministic_time is not None:
        solver.parameters.max_deterministic_time = p.deterministic_time
    return solver


def status_name(code: int) -> str:
    """CP-SAT's status code as the planner's word."""
    return {cp_model.OPTIMAL: "optimal", cp_model.FEASIBLE: "feasible", cp_model.INFEASIBLE: "infeasible",
            cp_model.MODEL_INVALID: "invalid"}.get(code, "unknown")

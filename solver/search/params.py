"""CP-SAT parameters of a solve: deterministic by default (one worker, a fixed seed, limits in work units)."""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

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
    # time.monotonic() by which the whole command must end: set once per command from time_limit_s
    # (:func:`with_deadline`) and shared by the plan, the proof, its certificates and repairs.
    deadline: float | None = None

    def remaining_s(self) -> float:
        """Wall-clock seconds left to the command (time_limit_s when no deadline is set)."""
        if self.deadline is None:
            return self.time_limit_s
        return max(0.0, self.deadline - time.monotonic())

    def expired(self) -> bool:
        """True once the command's deadline has passed."""
        return self.deadline is not None and time.monotonic() >= self.deadline


# Seconds of the time limit kept back from the solves: CP-SAT overruns its wall limit by up to about
# a second on the largest models (measured: a 4,096-layer diagnosis solve given 8.6 s took 9.5 s),
# and the report, the launch commands and the process exit come after the last solve.
DEADLINE_MARGIN_S = 1.5


def with_deadline(p: SolveParams) -> SolveParams:
    """``p`` with the command's deadline set from its time limit, unless one is already set."""
    if p.deadline is not None:
        return p
    margin = min(DEADLINE_MARGIN_S, 0.15 * p.time_limit_s)
    return replace(p, deadline=time.monotonic() + p.time_limit_s - margin)


def configured_solver(p: SolveParams, time_limit: float) -> cp_model.CpSolver:
    """A CP-SAT solver set up from ``p`` with a wall-clock safety net of ``time_limit`` seconds."""
    solver = cp_model.CpSolver()
    solver.parameters.max_time_in_seconds = max(0.01, min(time_limit, p.remaining_s()))
    solver.parameters.num_workers = p.workers
    solver.parameters.random_seed = p.seed
    # Presolve probing costs a flat second on larger option tables and never paid off here
    # (benchmarks/solver_speed.py measures both settings).
    solver.parameters.cp_model_probing_level = p.probing_level
    # Symmetry detection on the layer-to-stage booleans ignores the time limits: 9.2 s (49.7
    # deterministic units against a limit of 4) on a 4,096-layer model, for no gain on the shipped
    # instances (benchmarks/diagnosis_speed.py and solver_speed.py measure both).
    solver.parameters.symmetry_level = 0
    if p.deterministic_time is not None:
        solver.parameters.max_deterministic_time = p.deterministic_time
    return solver


def status_name(code: int) -> str:
    """CP-SAT's status code as the planner's word."""
    return {cp_model.OPTIMAL: "optimal", cp_model.FEASIBLE: "feasible", cp_model.INFEASIBLE: "infeasible",
            cp_model.MODEL_INVALID: "invalid"}.get(code, "unknown")


def solve_lexicographic(model: cp_model.CpModel, phases: list[tuple[object, int]], read, hint_vars=(), *,
                        time_limit_s: float = 10.0, deterministic_time: float = 10.0, seed: int = 0):
    """Minimise ``sense * expression`` for each phase in turn, each later one holding the earlier optima.

    ``read(solver)`` takes what the caller needs from each phase's solution; the last phase that
    found one is returned with the primary phase's status: ``("optimal" | "feasible", read)``, or
    None when the first phase finds nothing. One worker, a fixed seed and a deterministic limit
    per phase (the wall clock is only a safety net), so the answer does not depend on the load.
    """
    solver = cp_model.CpSolver()
    solver.parameters.num_workers = 1
    solver.parameters.random_seed = seed
    solver.parameters.max_time_in_seconds = time_limit_s
    solver.parameters.max_deterministic_time = deterministic_time
    status, value = None, None
    for phase, (expr, sense) in enumerate(phases):
        model.minimize(sense * expr)
        st = solver.solve(model)
        if st not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
            break
        if phase == 0:
            status = "optimal" if st == cp_model.OPTIMAL else "feasible"
        model.add(sense * expr <= int(round(solver.objective_value)))
        value = read(solver)
        model.clear_hints()
        for var in hint_vars:
            model.add_hint(var, solver.value(var))
    return None if status is None else (status, value)

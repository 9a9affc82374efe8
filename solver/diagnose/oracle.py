"""The diagnosis oracle: feasibility under a subset of the rules, and the deletion filter to a minimal core.

DESIGN rule 4: diagnosis is its own solve. The model holds every candidate (illegal ones too), each
rule family behind a named guard literal. One worker, no objective, no hints, no symmetry-breaking
cuts. The core is shrunk to a minimal one by deletion, then re-checked both ways: the set is
infeasible and dropping any one member makes the rest feasible.
"""

from __future__ import annotations

from ortools.sat.python import cp_model

from ..problem import Problem
from ..search.model import BuiltModel, build_model
from ..search.options import violated_under
from ..search.witness import witness


def _solver(time_limit: float) -> cp_model.CpSolver:
    s = cp_model.CpSolver()
    s.parameters.num_workers = 1  # no interleaving: reproducible answers
    s.parameters.random_seed = 0
    s.parameters.max_time_in_seconds = time_limit
    # Presolve probing costs a flat ~1.3 s per solve on these models and buys nothing here: the
    # bound clauses already propagate (measured on llama70b_t4: 1.3 s -> 0.07 s per solve).
    s.parameters.cp_model_probing_level = 0
    return s


class Oracle:
    """Feasibility and optimisation under a subset S of the rules.

    The model for S holds the candidates that break no static rule of S (the static guards of S,
    fixed true, would forbid the others) and enforces S's dynamic guards; every other guard is a
    free literal, so its rule does not bind. Models are cached per S.
    """

    def __init__(self, problem: Problem, options: list, time_limit: float):
        self.problem = problem
        self.options = options
        # Split-independent bound violations filter exactly like static ones (the model's bound
        # clauses would forbid those options anyway), which keeps each model small.
        self.violations = [frozenset(o.violations) | frozenset(o.bound_violations) for o in options]
        self.time_limit = time_limit
        self.solves = 0
        self._models: dict[frozenset[str], BuiltModel] = {}
        self._feasible: dict[frozenset[str], bool | None] = {}

    def model(self, names: list[str] | frozenset[str], survivors: list | None = None) -> BuiltModel:
        key = frozenset(names)
        if key not in self._models:
            built = build_model(self.problem, self.survivors(key) if survivors is None else survivors,
                                diagnose=True)
            for name in key:
                if name in built.guards:
                    built.model.add(built.guards[name] == 1)
            self._models[key] = built
        return self._models[key]

    def survivors(self, key: frozenset[str]) -> list:
        return [o for o, v in zip(self.options, self.violations, strict=True) if not violated_under(v, key)]

    def witness(self, key: frozenset[str], survivors: list) -> bool:
        """A candidate split that meets every rule of ``key``: feasibility without a solve."""
        return witness(self.problem, survivors, key) is not None

    def feasible(self, names: list[str]) -> bool | None:
        """True / False, or None when the time limit left it open."""
        key = frozenset(names)
        if key not in self._feasible:
            survivors = self.survivors(key)
            if not survivors:
                self._feasible[key] = False
                return False
            if self.witness(key, survivors):
                self._feasible[key] = True
                return True
            built = self.model(key, survivors)
            built.model.clear_objective()
            self.solves += 1
            code = _solver(self.time_limit).solve(built.model)
            self._feasible[key] = (False if code == cp_model.INFEASIBLE
                                   else True if code in (cp_model.OPTIMAL, cp_model.FEASIBLE) else None)
        return self._feasible[key]

    def best(self, names: list[str], quantity: str) -> tuple[int | None, BuiltModel | None, cp_model.CpSolver | None]:
        """Minimum of ``quantity`` with the rules ``names`` enforced (None when infeasible/open)."""
        built = self.model(names)
        built.model.minimize(built.objective(quantity))
        solver = _solver(self.time_limit)
        self.solves += 1
        code = solver.solve(built.model)
        built.model.clear_objective()
        if code not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
            return None, None, None
        return int(round(solver.objective_value)), built, solver


class _Budget(Exception):
    """The alternative-conflict search ran out of its solve budget."""

def minimal_conflict(oracle: Oracle, names: list[str], max_solves: int | None = None) -> tuple[list[str], bool]:
    """Shrink an infeasible rule set by deletion, in :func:`_deletion_order`; returns (set, minimal).

    With ``max_solves``, gives up (returns an empty set) once the oracle has run that many more
    CP-SAT solves: a count, not a time, so the output never depends on the machine's load.
    """
    if max_solves is not None:
        limit = oracle.solves + max_solves
        try:
            return _deletion(oracle, names, lambda: oracle.solves > limit)
        except _Budget:
            return [], False
    return _deletion(oracle, names, lambda: False)


def _deletion(oracle: Oracle, names: list[str], over) -> tuple[list[str], bool]:
    def feasible(rules):
        if over():
            raise _Budget
        return oracle.feasible(rules)

    if feasible(names) is not False:
        return [], False
    current = list(names)
    # A family of several rules (the memory caps of all stages) is first tried as a whole.
    for family in _DELETION_FAMILIES:
        group = [n for n in current if n.startswith(family)]
        if len(group) > 1:
            trial = [n for n in current if n not in group]
            if feasible(trial) is False:
                current = trial
    for member in sorted(current, key=_deletion_order):
        trial = [n for n in current if n != member]
        if feasible(trial) is False:
            current = trial
    # Re-check: the set is infeasible and dropping any one member makes the rest feasible.
    ok = feasible(current) is False and all(feasible([n for n in current if n != m]) is True for m in current)
    return sorted(current, key=rule_order), ok


# Which rules a proof prefers to keep, least preferred first: deletion tries to drop these first.
# Incidental rules (layout, search limits) go before the physics (memory), the targets, the size of
# the cluster, and last the pinned fields a user proposed.
_DELETION_FAMILIES = ["search.", "batch_cap", "ep_layout", "experts_divisible", "pp_within_layers", "weights_allowed",
                      "kv_cache_allowed", "tp_within_node", "heads_divisible", "mem_cap", "slo.", "workload.",
                      "gpu_count", "pin."]


def _deletion_order(name: str) -> tuple:
    for i, f in enumerate(_DELETION_FAMILIES):
        if name.startswith(f):
            return (i, name)
    return (len(_DELETION_FAMILIES), name)


def rule_order(name: str) -> tuple:
    families = ["pin.", "gpu_count", "tp_within_node", "heads_divisible", "experts_divisible", "ep_layout",
                "pp_within_layers", "weights_allowed", "kv_cache_allowed", "batch_cap", "search.", "mem_cap",
                "workload.", "slo."]
    for i, f in enumerate(families):
        if name.startswith(f):
            return (i, name)
    return (len(families), name)

"""The diagnosis oracle: feasibility under a subset of the rules, and the deletion filter to a minimal core.

DESIGN rule 4: diagnosis is its own solve. The model holds every candidate (illegal ones too), each
rule family behind a named guard literal. One worker, no objective, no hints, no symmetry-breaking
cuts. The core is shrunk to a minimal one by deletion, then re-checked both ways: the set is
infeasible and dropping any one member makes the rest feasible.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ortools.sat.python import cp_model

from ..problem import Problem
from ..search.decode import decode
from ..search.exact import learn
from ..search.model import BuiltModel, build_model
from ..search.options import violated_under
from ..search.witness import best_witness_value, option_lower_bound, witness
from ..verify import Placement, evaluate

# Deterministic units per diagnosis solve (roughly seconds of one core).
ORACLE_DETERMINISTIC_TIME = 4.0
# Candidates the verifier may reject for one rule set before its feasibility is left open (each
# rejection teaches the problem facts, so the next candidate is a different one).
MAX_EXACT_CHECKS = 32


def _solver(time_limit: float) -> cp_model.CpSolver:
    s = cp_model.CpSolver()
    s.parameters.num_workers = 1  # no interleaving: reproducible answers
    s.parameters.random_seed = 0
    s.parameters.max_time_in_seconds = time_limit
    # A deterministic budget per solve: the same proof whatever the machine's load; a certificate
    # whose solve stops here is printed as "best found, not proven", never as a minimum.
    s.parameters.max_deterministic_time = ORACLE_DETERMINISTIC_TIME
    # Presolve probing costs a flat ~1.3 s per solve on these models and buys nothing here: the
    # bound clauses already propagate (measured on llama70b_t4: 1.3 s -> 0.07 s per solve).
    s.parameters.cp_model_probing_level = 0
    return s


@dataclass
class Best:
    """A minimum found by the oracle: its value (model units), plan, and whether the solve proved it."""

    raw: int | None
    built: BuiltModel | None
    solver: cp_model.CpSolver | None
    proven: bool
    bound_raw: int | None  # the solve's lower bound; equal to ``raw`` when proven


class Oracle:
    """Feasibility and optimisation under a subset S of the rules.

    The model for S holds the candidates that break no static rule of S (the static guards of S,
    fixed true, would forbid the others) and enforces S's dynamic guards; every other guard is a
    free literal, so its rule does not bind. Models are cached per S.

    The options carry the optimistic tables (demands rounded down, capacities up): "infeasible"
    then holds under the exact physics, and each "feasible" is a candidate the verifier accepted
    under S (a rejected one teaches the problem facts, and the search goes on).
    """

    def __init__(self, problem: Problem, options: list, time_limit: float):
        self.problem = problem
        self.options = options
        # Split-independent bound violations filter exactly like static ones (the model's bound
        # clauses would forbid those options anyway), which keeps each model small.
        self.violations = [frozenset(o.violations) | frozenset(o.bound_violations) for o in options]
        self.time_limit = time_limit
        self.solves = 0
        self._models: dict[tuple[frozenset[str], int], BuiltModel] = {}
        self._feasible: dict[frozenset[str], bool | None] = {}

    def model(self, names: list[str] | frozenset[str], survivors: list | None = None) -> BuiltModel:
        key = frozenset(names)
        cache_key = (key, len(self.problem.learned))  # a model built before new facts lacks them
        if cache_key not in self._models:
            built = build_model(self.problem, self.survivors(key) if survivors is None else survivors,
                                diagnose=True)
            for name in key:
                if name in built.guards:
                    built.model.add(built.guards[name] == 1)
            self._models[cache_key] = built
        return self._models[cache_key]

    def survivors(self, key: frozenset[str]) -> list:
        return [o for o, v in zip(self.options, self.violations, strict=True) if not violated_under(v, key)]

    def witness(self, key: frozenset[str], survivors: list) -> bool:
        """A candidate split that meets every rule of ``key``: feasibility without a solve."""
        return witness(self.problem, survivors, key) is not None

    def feasible(self, names: list[str]) -> bool | None:
        """True / False under the exact physics, or None when a limit left it open."""
        key = frozenset(names)
        if key not in self._feasible:
            self._feasible[key] = self._decide(key)
        return self._feasible[key]

    def _decide(self, key: frozenset[str]) -> bool | None:
        survivors = self.survivors(key)
        if not survivors:
            return False
        for _ in range(MAX_EXACT_CHECKS):
            found = witness(self.problem, survivors, key)
            if found is not None:
                placement = Placement(found[0].cfg, found[0].batch, tuple(found[1]))
            else:
                built = self.model(key, survivors)
                built.model.clear_objective()
                self.solves += 1
                solver = _solver(self.time_limit)
                code = solver.solve(built.model)
                if code == cp_model.INFEASIBLE:
                    return False
                if code not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
                    return None
                placement, _ = decode(built, solver)
            facts = learn(self.problem, placement, evaluate(self.problem, placement, simulate=False), key)
            if not facts:
                return True
            self.problem.learned.extend(facts)
        return None

    def best(self, names: list[str], quantity: str) -> Best:
        """Minimum of ``quantity`` with the rules ``names`` enforced, and whether it is proven.

        For the planner's quantities, a known plan's value first bounds the search: options whose
        lower bound is worse cannot hold the minimum and stay out of the model (sound pruning).
        """
        key = frozenset(names)
        if quantity in ("gpus", "z", "cycle", "ttft"):
            survivors = self.survivors(key)
            known = best_witness_value(self.problem, survivors, key, quantity)
            if known is not None:
                kept = [o for o in survivors if option_lower_bound(self.problem, o, quantity) <= known]
                built = build_model(self.problem, kept, diagnose=True)
                for name in key:
                    if name in built.guards:
                        built.model.add(built.guards[name] == 1)
                return self._minimise(built, quantity)
        return self._minimise(self.model(names), quantity)

    def _minimise(self, built: BuiltModel, quantity: str) -> Best:
        built.model.minimize(built.objective(quantity))
        solver = _solver(self.time_limit)
        self.solves += 1
        code = solver.solve(built.model)
        built.model.clear_objective()
        if code not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
            return Best(None, None, None, False, None)
        return Best(int(round(solver.objective_value)), built, solver, code == cp_model.OPTIMAL,
                    int(math.floor(solver.best_objective_bound + 1e-9)))


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
    # Family by family in deletion order: a family of several rules (the memory caps of all stages)
    # is first tried as a whole, then its members one by one, before the next family is touched, so
    # that the families a proof prefers to keep (the physics) are the last to be dropped.
    for family in [*_DELETION_FAMILIES, ""]:
        group = [n for n in current if _deletion_order(n)[0] == _family_index(family)]
        if len(group) > 1:
            trial = [n for n in current if n not in group]
            if feasible(trial) is False:
                current = trial
                continue
        for member in sorted(group, key=_deletion_order):
            trial = [n for n in current if n != member]
            if feasible(trial) is False:
                current = trial
    # Re-check: the set is infeasible and dropping any one member makes the rest feasible.
    ok = feasible(current) is False and all(feasible([n for n in current if n != m]) is True for m in current)
    return sorted(current, key=rule_order), ok


# Which rules a proof prefers to keep, least preferred first: deletion tries to drop these first.
# Incidental rules (layout, search limits) go before the physics (memory), the targets, the size of
# the cluster, and last the pinned fields a user proposed.
# Targets (SLOs, the request rate) go before the physics: when the weights cannot fit, the proof
# says so (GPU count, memory caps) rather than blaming a latency target on a plan that could not run.
_DELETION_FAMILIES = ["search.", "batch_cap", "ep_layout", "experts_divisible", "pp_within_layers", "slo.", "workload.",
                      "weights_allowed", "kv_cache_allowed", "tp_within_node", "heads_divisible", "mem_cap",
                      "gpu_count", "pin."]


def _family_index(family: str) -> int:
    """Position of a deletion family ("" for rules of no family: after all of them)."""
    return _DELETION_FAMILIES.index(family) if family else len(_DELETION_FAMILIES)


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

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

from ..physics import even_split
from ..problem import Problem
from ..search.decode import decode
from ..search.exact import learn
from ..search.model import BuiltModel, build_model, mem_rule
from ..search.options import capacity_MiB, violated_under
from ..search.params import SolveParams
from ..search.witness import best_witness_value, option_lower_bound, split_values, witness
from ..verify import Placement, evaluate

# Deterministic units per diagnosis solve (roughly seconds of one core).
ORACLE_DETERMINISTIC_TIME = 4.0
# Options first admitted to a memory certificate's model, the lowest lower bounds first; more are
# admitted only while one of them could still beat the minimum found.
FIRST_ADMITTED = 32
# Candidates the verifier may reject for one rule set before its feasibility is left open (each
# rejection teaches the problem facts, so the next candidate is a different one).
MAX_EXACT_CHECKS = 32


def _solver(time_limit: float) -> cp_model.CpSolver:
    s = cp_model.CpSolver()
    s.parameters.num_workers = 1  # no interleaving: reproducible answers
    s.parameters.random_seed = 0
    s.parameters.max_time_in_seconds = max(0.01, time_limit)
    # A deterministic budget per solve: the same proof whatever the machine's load; a certificate
    # whose solve stops here is printed as "best found, not proven", never as a minimum.
    s.parameters.max_deterministic_time = ORACLE_DETERMINISTIC_TIME
    # Presolve probing costs a flat ~1.3 s per solve on these models and buys nothing here: the
    # bound clauses already propagate (measured on llama70b_t4: 1.3 s -> 0.07 s per solve).
    s.parameters.cp_model_probing_level = 0
    s.parameters.symmetry_level = 0  # see solver.search.params.configured_solver
    return s


@dataclass
class Best:
    """A minimum found by the oracle: its value (model units), plan, and whether the solve proved it."""

    raw: int | None
    built: BuiltModel | None
    solver: cp_model.CpSolver | None
    proven: bool
    bound_raw: int | None  # the solve's lower bound; equal to ``raw`` when proven
    infeasible: bool = False  # the solve proved that no candidate meets the rules
    placement: Placement | None = None  # the plan reaching ``raw`` when found without a solve

    def example(self) -> Placement:
        """The plan that reaches the value."""
        return self.placement if self.placement is not None else decode(self.built, self.solver)[0]


class Oracle:
    """Feasibility and optimisation under a subset S of the rules.

    The model for S holds the candidates that break no static rule of S (the static guards of S,
    fixed true, would forbid the others) and enforces S's dynamic guards; every other guard is a
    free literal, so its rule does not bind. Models are cached per S.

    The options carry the optimistic tables (demands rounded down, capacities up): "infeasible"
    then holds under the exact physics, and each "feasible" is a candidate the verifier accepted
    under S (a rejected one teaches the problem facts, and the search goes on).
    """

    def __init__(self, problem: Problem, options: list, time_limit: float = 20.0, params: SolveParams | None = None):
        self.problem = problem
        # The command's deadline (params.deadline) bounds every solve; time_limit caps each one.
        self.params = params or SolveParams()
        self.stopped = False  # a step was cut short by the command's time limit
        self.options = options
        # Split-independent bound violations filter exactly like static ones (the model's bound
        # clauses would forbid those options anyway), which keeps each model small.
        self.violations = [frozenset(o.violations) | frozenset(o.bound_violations) for o in options]
        self.time_limit = time_limit
        self.solves = 0
        self._models: dict[tuple[frozenset[str], int], BuiltModel] = {}
        self._feasible: dict[frozenset[str], bool | None] = {}
        self._survivors: dict[frozenset[str], list] = {}

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
        # Thousands of options share a few distinct violation sets: decide each set once.
        out = self._survivors.get(key)
        if out is None:
            verdict = {v: not violated_under(v, key) for v in set(self.violations)}
            out = [o for o, v in zip(self.options, self.violations, strict=True) if verdict[v]]
            self._survivors[key] = out
        return out

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
            if self.params.expired():
                self.stopped = True
                return None
            found = witness(self.problem, survivors, key)
            if found is not None:
                placement = Placement(found[0].cfg, found[0].batch, tuple(found[1]))
            else:
                built = self.model(key, survivors)
                built.model.clear_objective()
                self.solves += 1
                solver = _solver(min(self.time_limit, self.params.remaining_s()))
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
        if self.params.expired():
            self.stopped = True
            return Best(None, None, None, False, None)
        if quantity.startswith("mem["):
            return self._lightest_stage(key, int(quantity[4:-1]))
        if quantity in ("gpus", "z", "cycle", "ttft", "inv_rate", "inv_tok"):
            survivors = self.survivors(key)
            known = best_witness_value(self.problem, survivors, key, quantity)
            if known is not None:
                kept = [o for o in survivors if option_lower_bound(self.problem, o, quantity) <= known]
                return self._minimise(self._guarded(kept, key), quantity)
        return self._minimise(self.model(names), quantity)

    def _guarded(self, options: list, key: frozenset[str]) -> BuiltModel:
        built = build_model(self.problem, options, diagnose=True)
        for name in key:
            if name in built.guards:
                built.model.add(built.guards[name] == 1)
        return built

    def _lightest_stage(self, key: frozenset[str], s: int) -> Best:
        """Minimum memory of stage ``s`` under ``key``, admitting options by their lower bound.

        Options are ranked by :func:`stage_memory_lower_bound`; the model first holds the lowest
        ranked, and takes in every option whose bound is below the minimum found until none is
        left (then the minimum is the minimum over all options; sound since each bound is).
        A memory cap family of 16 stages asks 16 such minima: each now solves a model of a few
        dozen options instead of thousands.
        """
        ranked = sorted((lb, o.index, o) for o in self.survivors(key)
                        if (lb := stage_memory_lower_bound(self.problem, o, s, key)) is not None)
        if not ranked:
            return Best(None, None, None, True, None, infeasible=True)
        low = ranked[0][0]
        for lb, _, o in ranked:
            if lb > low:
                break
            # The bound is the minimum over every option: a split reaching it is the proven answer.
            split = _fill_around(self.problem, o, s, key)
            vals = None if split is None else split_values(self.problem, o, split, key)
            if vals is not None and (s >= o.cfg.pp or vals[s]["mem"] == lb):
                return Best(lb, None, None, True, lb, placement=Placement(o.cfg, o.batch, tuple(split)))
        n = min(len(ranked), FIRST_ADMITTED)
        while True:
            found = self._minimise(self._guarded([o for _, _, o in ranked[:n]], key), f"mem[{s}]")
            next_lb = ranked[n][0] if n < len(ranked) else None
            if next_lb is None:
                return found
            if found.infeasible:
                n = min(len(ranked), 4 * n)
                continue
            if found.raw is None or not found.proven:
                # The solve stopped at its limit: the value found, and the weaker of the bounds.
                bound = next_lb if found.bound_raw is None else min(found.bound_raw, next_lb)
                return Best(found.raw, found.built, found.solver, False, bound)
            if found.raw <= next_lb:
                return found
            n = next(i for i in range(n, len(ranked) + 1) if i == len(ranked) or ranked[i][0] >= found.raw)

    def _minimise(self, built: BuiltModel, quantity: str) -> Best:
        if self.params.expired():
            self.stopped = True
            return Best(None, None, None, False, None)
        built.model.minimize(built.objective(quantity))
        solver = _solver(min(self.time_limit, self.params.remaining_s()))
        self.solves += 1
        code = solver.solve(built.model)
        built.model.clear_objective()
        if code == cp_model.INFEASIBLE:
            return Best(None, None, None, True, None, infeasible=True)
        if code not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
            return Best(None, None, None, False, None)
        return Best(int(round(solver.objective_value)), built, solver, code == cp_model.OPTIMAL,
                    int(math.floor(solver.best_objective_bound + 1e-9)))


def stage_memory_lower_bound(problem: Problem, o, s: int, key: frozenset[str]) -> int | None:
    """A lower bound (MiB) of stage ``s``'s memory for option ``o`` under ``key``; None if ``key`` rules it out.

    Every other stage whose memory cap is in ``key`` holds at most (cap - its constant) / the
    lightest layer's memory layers, and at least one; the stage gets what they cannot hold, at
    least one layer. A stage the option does not have weighs 0, if the others can hold the model.
    """
    kinds = problem.arch.layer_kinds()
    per, _ = o.stages[0].mem_MiB  # per-layer coefficients are the same on every stage
    lightest = min(per[k] for k in set(kinds))
    cap = capacity_MiB(problem, o.units)
    layers = len(kinds)
    room = 0
    for t in range(o.cfg.pp):
        if t == s:
            continue
        const = o.stages[t].mem_MiB[1]
        if mem_rule(t) not in key:
            room += layers
        elif const + lightest > cap:
            return None  # stage t cannot hold even its one layer
        else:
            room += (cap - const) // lightest if lightest > 0 else layers
    if s >= o.cfg.pp:
        return 0 if room >= layers else None
    return o.stages[s].mem_MiB[1] + lightest * max(1, layers - room)


def _fill_around(problem: Problem, o, s: int, key: frozenset[str]) -> list[int] | None:
    """A split giving stage ``s`` as few layers as the other stages' caps allow (as in the bound).

    Each other stage takes at least one layer and at most what its cap holds of the lightest
    layer, front to back; None when the rules of ``key`` fix the split otherwise (pins, even).
    """
    layers = problem.arch.layers
    pinned = problem.pins.layers_per_stage
    if pinned is not None and "pin.layers_per_stage" in key:
        return list(pinned) if len(pinned) == o.cfg.pp else None
    if not problem.search.uneven_layers and "search.uneven_layers" in key:
        return even_split(layers, o.cfg.pp)
    per, _ = o.stages[0].mem_MiB
    lightest = max(1, min(per[k] for k in set(problem.arch.layer_kinds())))
    cap = capacity_MiB(problem, o.units)
    most = [layers if t == s or mem_rule(t) not in key else max(1, (cap - o.stages[t].mem_MiB[1]) // lightest)
            for t in range(o.cfg.pp)]
    split = [1] * o.cfg.pp
    others = sum(min(m, layers) for t, m in enumerate(most) if t != s)
    if s < o.cfg.pp:
        split[s] = max(1, layers - others)
    left = layers - sum(split)
    for t in range(o.cfg.pp):
        if t != s and left > 0:
            take = min(left, most[t] - 1)
            split[t] += take
            left -= take
    if left:
        return None  # the stages cannot hold the model (s beyond the option's stages)
    return split


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


class _Deadline(Exception):
    """The command's time limit ran out during the deletion."""


def _deletion(oracle: Oracle, names: list[str], over) -> tuple[list[str], bool]:
    def feasible(rules):
        if over():
            raise _Budget
        if oracle.params.expired():
            raise _Deadline
        return oracle.feasible(rules)

    try:
        if feasible(names) is not False:
            return [], False
    except _Deadline:
        return [], False
    current = list(names)
    try:
        return _shrink(current, feasible)
    except _Deadline:
        # Every set kept so far was proven infeasible: the conflict holds, its minimality is open.
        oracle.stopped = True
        return sorted(current, key=rule_order), False


def _shrink(current: list[str], feasible) -> tuple[list[str], bool]:
    """Deletion proper; ``current`` is updated in place so a caller stopped midway keeps the progress."""
    # Family by family in deletion order: a family of several rules (the memory caps of all stages)
    # is first tried as a whole, then its members one by one, before the next family is touched, so
    # that the families a proof prefers to keep (the physics) are the last to be dropped.
    for family in [*_DELETION_FAMILIES, ""]:
        group = [n for n in current if _deletion_order(n)[0] == _family_index(family)]
        if len(group) > 1:
            trial = [n for n in current if n not in group]
            if feasible(trial) is False:
                current[:] = trial
                continue
        for member in sorted(group, key=_deletion_order):
            trial = [n for n in current if n != member]
            if feasible(trial) is False:
                current[:] = trial
    # Re-check: the set is infeasible and dropping any one member makes the rest feasible.
    ok = feasible(current) is False and all(feasible([n for n in current if n != m]) is True for m in current)
    return sorted(current, key=rule_order), ok


# Which rules a proof prefers to keep, least preferred first: deletion tries to drop these first.
# Incidental rules (layout, search limits) go before the physics (memory), the targets, the size of
# the cluster, and last the pinned fields a user proposed.
# Targets (SLOs, the request rate) go before the physics: when the weights cannot fit, the proof
# says so (GPU count, memory caps) rather than blaming a latency target on a plan that could not run.
_DELETION_FAMILIES = ["search.", "batch_cap", "ep_layout", "attention_dp_layout", "fp8_block_divisible",
                      "experts_divisible", "pp_within_layers", "slo.", "workload.",
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
                "attention_dp_layout", "fp8_block_divisible",
                "pp_within_layers", "weights_allowed", "kv_cache_allowed", "batch_cap", "search.", "mem_cap",
                "workload.", "slo."]
    for i, f in enumerate(families):
        if name.startswith(f):
            return (i, name)
    return (len(families), name)

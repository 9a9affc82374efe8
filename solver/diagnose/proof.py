"""Proofs of infeasibility: the smallest conflicting set of requirements, in numbers, and verified repairs.

The entry point :func:`diagnose` builds the proof block of the JSON document: the first minimal
conflict (deletion over the guarded model, :mod:`.oracle`), further conflicts a person needs to see,
each member's certificate (:mod:`.certificate`), physics bounds, and verified repairs
(:mod:`.repairs`).
"""

from __future__ import annotations

import time
from typing import Any

from ..problem import Problem
from ..search.model import mem_rule
from ..search.options import EnumerationExpired, cycle_bounds, enumerate_options, rules_of
from ..search.params import SolveParams, with_deadline
from .certificate import certificate, lower_bounds
from .oracle import Oracle, minimal_conflict, rule_order
from .repairs import attempt, repairs

# Alternative conflicts longer than this are not reported (the first conflict always is), and the
# search for each alternative stops after this many CP-SAT solves.
MAX_ALTERNATIVE_MEMBERS = 5
MAX_ALTERNATIVE_SOLVES = 6


def candidate_rules(problem: Problem, options: list) -> list[str]:
    """Every rule that binds somewhere: static rules some candidate breaks, and the dynamic rules."""
    rules = {r for o in options for v in o.violations for r in rules_of(v)}
    rules |= {mem_rule(s) for s in range(max((o.cfg.pp for o in options), default=1))}
    if options:
        rules |= set(cycle_bounds(problem, options[0]))  # the throughput-type targets the instance sets
    if problem.instance.slo.ttft_ms is not None:
        rules.add("slo.ttft_ms")
    if problem.pins.layers_per_stage is not None:
        rules.add("pin.layers_per_stage")
    if not problem.search.uneven_layers:
        rules.add("search.uneven_layers")
    return sorted(rules, key=rule_order)


def diagnose(problem: Problem, params=None, evaluation=None, with_repairs: bool = True,
             time_limit: float = 20.0, max_conflicts: int = 3) -> dict[str, Any]:
    """The proof block of the JSON document for an infeasible problem (see module docstring)."""
    params = with_deadline(params or SolveParams())
    t0 = time.perf_counter()
    proof: dict[str, Any] = {"lower_bounds": lower_bounds(problem)}
    # Optimistic tables: a conflict is then infeasible under the exact physics (see Oracle).
    try:
        options = enumerate_options(problem, include_illegal=True, optimistic=True, expired=params.expired)
    except EnumerationExpired as stop:
        # Without every candidate no set of requirements can be proven infeasible: nothing is claimed.
        proof.update({"conflict": [], "conflicts": [], "minimal": False, "verified": False, "partial": True,
                      "summary": f"the diagnosis did not finish within the command's time limit "
                                 f"({params.time_limit_s:g} s): {stop}",
                      "partial_reason": str(stop)})
        proof["time_s"] = round(time.perf_counter() - t0, 4)
        return proof
    oracle = Oracle(problem, options, time_limit, params=params)
    names = candidate_rules(problem, options)
    state = oracle.feasible(names)
    if state is True:
        # The requirements admit a plan: a proposed placement failed on a field that was filled
        # in (split or batch), not on a pinned one.
        proof.update({"conflict": [], "conflicts": [], "minimal": True, "verified": True,
                      "summary": "the pinned fields and every requirement can hold together: the failing "
                                 "requirements come from the fields that were filled in (precision, split or batch); the "
                                 "repair below keeps every pin"})
        proof["repairs"] = [attempt(problem, "keep the pins, let the solver choose the rest", "pin", 0, {}, params)]
        proof["diagnosis"] = {"time_s": round(time.perf_counter() - t0, 4), "solves": oracle.solves,
                              "options": len(options)}
        return proof
    if state is None:
        proof.update({"conflict": [], "conflicts": [], "minimal": False, "verified": False, "partial": True,
                      "summary": ("the diagnosis did not finish within the command's time limit "
                                  f"({params.time_limit_s:g} s)" if params.expired() else
                                  "the diagnosis did not finish within its per-solve limits")})
        return proof
    first, minimal = minimal_conflict(oracle, names)
    if not first:
        # The deadline came before the deletion could start: all the rules together are proven
        # infeasible (state is False), a conflict that is true but not shrunk.
        first, minimal = sorted(names, key=rule_order), False
    conflicts = [(first, minimal, "")]
    # Further conflicts a person needs to see: the one left once the proposed pins are dropped
    # ("even without the pins ..."), and ones avoiding a member of the first.
    pins = [n for n in first if n.startswith("pin.")]
    seeds: list[tuple[list[str], str]] = []
    if pins:
        seeds.append(([n for n in names if not n.startswith("pin.")], "without the pinned fields"))
    for member in first:
        if not member.startswith("pin."):
            seeds.append(([n for n in names if n != member], f"another conflict, without {member}"))
    seen = {frozenset(first)}
    for seed, why in seeds:
        if len(conflicts) >= max_conflicts or params.expired():
            break
        more, ok = minimal_conflict(oracle, seed, max_solves=MAX_ALTERNATIVE_SOLVES)
        # A long alternative (every stage's memory cap, say) reads as noise next to the first.
        if more and frozenset(more) not in seen and len(more) <= MAX_ALTERNATIVE_MEMBERS:
            seen.add(frozenset(more))
            conflicts.append((more, ok, why))
    proof["conflicts"] = [
        {"rules": c, "minimal": ok, "context": why, "members": certificate(problem, oracle, c)}
        for c, ok, why in conflicts
    ]
    proof["conflict"] = proof["conflicts"][0]["members"]
    proof["minimal"] = minimal
    proof["verified"] = all(c["minimal"] for c in proof["conflicts"])
    proof["summary"] = _summary(problem, proof["conflict"])
    proof["diagnosis"] = {"time_s": round(time.perf_counter() - t0, 4), "solves": oracle.solves,
                          "options": len(options), "candidate_rules": names}
    if evaluation is not None:
        proof["failed_requirements"] = [r.rule for r in evaluation.failed()]
    if with_repairs:
        proof["repairs"] = repairs(problem, sorted({r for c, _, _ in conflicts for r in c}, key=rule_order), params)
    if oracle.stopped or params.expired():
        # Every conflict shown is infeasible (each set kept was proven so); what the time limit cut
        # short is named, never passed off as complete.
        proof["partial"] = True
        proof["partial_reason"] = (f"the command's time limit ({params.time_limit_s:g} s) ran out during the "
                                   "diagnosis: minimality, certificates without numbers, further conflicts and "
                                   "repairs marked 'not tried' were not finished")
    proof["time_s"] = round(time.perf_counter() - t0, 4)
    return proof


def _summary(problem: Problem, conflict: list[dict[str, Any]]) -> str:
    rules = [c["rule"] for c in conflict]
    if not rules:
        return "no conflict found"
    return (f"{len(rules)} requirement(s) cannot hold together: {', '.join(rules)}; dropping any one of them "
            "leaves a feasible problem")


def percentile_proof(problem: Problem, lazy: dict[str, Any]) -> dict[str, Any]:
    """Why no plan meets the percentile targets: every candidate the linear model admits was simulated.

    The candidates are the plans CP-SAT returned one after another, each cut once its simulation
    missed a target; the conflict names each missed target with the best simulated value among them.
    """
    cands = lazy.get("candidates", [])
    exhausted = bool(lazy.get("exhausted"))
    members = []
    rules = sorted({r for c in cands for r in c["failed"]}, key=rule_order)
    targets = problem.instance.slo.percentile_targets()
    for rule in rules:
        values = [(c["failed"][rule], c) for c in cands if isinstance(c["failed"].get(rule), float)]
        best, where = min(values, key=lambda v: v[0]) if values else (None, None)
        how = "every plan that meets the other requirements" if exhausted else \
            f"the first {len(cands)} plans the search found (the candidate budget ran out)"
        statement = f"{rule.split('.', 1)[1]} <= {targets[rule]:g}: {how} was simulated and misses it"
        if best is not None:
            st = where["strategy"]
            statement += (f"; the best simulated is {best:,.1f} ms (tp={st['tp']} pp={st['pp']} dp={st['dp']} "
                          f"{st['weights']}/{st['kv_cache']}, max_num_seqs {st['max_num_seqs']}, layers "
                          f"{'+'.join(map(str, where['layers_per_stage']))})")
        members.append({"rule": rule, "statement": statement,
                        "numbers": {"limit": targets[rule], "best_with_others": None if best is None else round(best, 4)}})
    repairs = []
    for m in members:
        best = m["numbers"]["best_with_others"]
        if best is not None:
            repairs.append({"change": f"relax {m['rule']} to {best:,.4g} ms (the best simulated candidate)",
                            "kind": "slo", "size": 2.5, "verified": False,
                            "result": "the candidate that reaches it meets every other requirement"})
    return {
        "conflicts": [{"rules": rules, "minimal": exhausted, "context": "", "members": members}],
        "conflict": members,
        "minimal": exhausted,
        "verified": exhausted,
        "summary": (f"{len(cands)} candidate plan(s) meet every linear requirement, and each one's simulation "
                    f"misses {', '.join(rules)}" + ("" if exhausted else "; the search stopped at its candidate budget "
                                                    "(simulation.max_candidates)")),
        "lower_bounds": lower_bounds(problem),
        "repairs": repairs,
        "percentile_candidates": cands,
    }

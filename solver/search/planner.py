"""Solve a problem: options -> CP-SAT (primary objective, then lexicographic tie-breaks) -> decode -> verify."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from ortools.sat.python import cp_model

from ..problem import Problem
from ..verify import Evaluation, Placement, evaluate
from .decode import decode
from .exact import exact_value, learn, refine
from .model import BuiltModel, build_model
from .objectives import exact_objective, objective_chain, objective_value
from .options import EnumerationExpired, Option, Units, with_units
from .params import SolveParams, VerificationError, configured_solver, status_name
from .replicas import solve_options
from .witness import best_even_split, option_lower_bound, split_values, witness

__all__ = ["PlanResult", "SolveParams", "VerificationError", "feasible_plan", "plan"]


@dataclass
class PlanResult:
    """What a solve returns."""

    status: str  # optimal | feasible | infeasible | unknown
    placement: Placement | None = None
    evaluation: Evaluation | None = None
    objective: float | None = None  # in OBJECTIVE_UNITS
    objective_raw: int | None = None  # the primary objective in model units (``units``)
    units: Units | None = None
    bound: float | None = None
    gap: float | None = None
    time_s: float = 0.0
    phases: list[dict] = field(default_factory=list)
    options_considered: int = 0
    options_in_model: int = 0
    binding: list[str] = field(default_factory=list)
    # Lazy percentile checks: the candidates simulated and cut, and why the search stopped.
    lazy: dict = field(default_factory=dict)
    # Tie-break phases that stopped at their limit: the objective is optimal, the choice among
    # equal plans is then the last phase's best, not the canonical one.
    incomplete: list[str] = field(default_factory=list)
    # The exact check of the answer (solver.search.exact.Refinement.summary); empty when not run.
    exact: dict = field(default_factory=dict)


def _hint(built: BuiltModel, opt: Option, split: list[int]) -> None:
    m = built.model
    m.clear_hints()
    for o, lit in zip(built.options, built.opt, strict=True):
        m.add_hint(lit, o.index == opt.index)
    stage_of = [s for s, n in enumerate(split) for _ in range(n)]
    for l, st in enumerate(stage_of):
        m.add_hint(built.stage[l], st)
        for s in range(built.max_pp):
            m.add_hint(built.x[l][s], s == st)
    for s in range(built.max_pp):
        m.add_hint(built.used[s], s < len(split))


def feasible_plan(problem: Problem, params: SolveParams | None = None, only_gpus: int | None = None) -> PlanResult:
    """Any verified placement, not necessarily optimal (repairs ask "does this change suffice?").

    The best even split, when it meets every rule, is the answer without a solve; otherwise one
    CP-SAT feasibility solve decides, and when the conservative tables admit nothing the
    optimistic ones are asked too (:mod:`solver.search.exact`). Status "feasible", "infeasible"
    or "unknown" (the exact check gave up).
    """
    params = params or SolveParams()
    if problem.instance.slo.percentile_targets():
        # A percentile target is only known by simulation: search with lazy cuts.
        return plan(problem, params, only_gpus=only_gpus, tie_breaks=False)
    t0 = time.perf_counter()
    try:
        enumerated = solve_options(problem, only_gpus=only_gpus, expired=params.expired)
    except EnumerationExpired:
        return PlanResult(status="unknown", time_s=time.perf_counter() - t0)
    options = [o for o in enumerated if not o.bound_violations and not o.memory_sum_exceeds]
    result = PlanResult(status="infeasible", options_considered=len(enumerated), options_in_model=len(options))
    placement = None
    if options:
        hint = best_even_split(problem, options) or witness(problem, options)
        if hint is not None:
            placement = Placement(hint[0].cfg, hint[0].batch, tuple(hint[1]))
        else:
            built = build_model(problem, options)
            solver = configured_solver(params, params.time_limit_s)
            status = status_name(solver.solve(built.model))
            if status in ("optimal", "feasible"):
                placement, _ = decode(built, solver)
            elif status != "infeasible":
                result.status = "unknown"
                result.time_s = time.perf_counter() - t0
                return result
    if placement is not None:
        ev = evaluate(problem, placement)
        if not ev.feasible:
            raise VerificationError(f"plan {placement} fails verification: {[r.rule for r in ev.failed()]}")
    else:
        # Nothing under the conservative tables: only the optimistic model can show the problem is infeasible.
        ref = refine(problem, params, enumerated, None, [objective_chain(problem)[0]])
        result.exact = ref.summary()
        result.phases.extend(ref.phases)
        if ref.placement is None:
            result.status = "infeasible" if ref.complete else "unknown"
            result.time_s = time.perf_counter() - t0
            return result
        placement, ev = ref.placement, ref.evaluation
    result.status, result.placement, result.evaluation = "feasible", placement, ev
    result.objective = exact_objective(problem, ev)
    result.time_s = time.perf_counter() - t0
    return result


def plan(problem: Problem, params: SolveParams | None = None, only_gpus: int | None = None,
         tie_breaks: bool = True) -> PlanResult:
    """Find the best placement, proven optimal when the time allows, and verify it.

    ``only_gpus`` restricts the candidates to configurations of exactly that many GPUs (repairs
    scan GPU counts upward with it). Without ``tie_breaks`` only the primary objective is solved:
    the plan is optimal, but among equal plans the choice is the solver's (still deterministic).

    Percentile targets are lazy (DESIGN rule 10): each plan CP-SAT returns is simulated, and one
    that misses a percentile is cut (a learned fact on its configuration and split) before the
    search resumes, until a plan passes, none is left (``infeasible``, the candidates in
    ``result.lazy``) or ``simulation.max_candidates`` plans were tried (``unknown``).

    The conservative answer is then made exact (:func:`solver.search.exact.refine`): "optimal" and
    "infeasible" hold under the exact physics, whatever the integer tables' rounding.
    """
    params = params or SolveParams()
    t0 = time.perf_counter()
    try:
        # The command's deadline also bounds the listing of the candidates (a huge search space).
        enumerated = solve_options(problem, only_gpus=only_gpus, expired=params.expired)
    except EnumerationExpired:
        return PlanResult(status="unknown", time_s=time.perf_counter() - t0)
    result = PlanResult(status="infeasible", options_considered=len(enumerated))
    primary, *chain = objective_chain(problem)
    exact_chain = [primary, *chain[:1]] if primary == "gpus" and tie_breaks else [primary]
    # Every rule binds in a solve, so an option that breaks one under every split is out.
    options = [o for o in enumerated if not o.bound_violations and not o.memory_sum_exceeds]
    solved = _conservative(problem, options, params, primary, chain if tie_breaks else [], result) if options else None
    if solved is None and (result.status != "infeasible" or result.lazy.get("budget_exhausted")):
        result.time_s = time.perf_counter() - t0
        return result  # unknown: the conservative search itself did not finish
    if solved is not None and result.status != "optimal":
        # The primary is not proven even under the conservative tables: a plan, labelled so.
        placement, ev, best_raw, bound_raw, units = solved
        _record(problem, result, placement, ev, best_raw, bound_raw, units, primary)
        result.time_s = time.perf_counter() - t0
        return result
    ref = refine(problem, params, enumerated, None if solved is None else solved[:2], exact_chain)
    result.exact = ref.summary()
    result.phases.extend(ref.phases)
    if ref.tie_break_incomplete:
        result.incomplete.append(f"exact:{exact_chain[-1]}")
    if ref.placement is None:
        result.status = "infeasible" if ref.complete else "unknown"
        if result.status == "infeasible" and result.lazy.get("candidates"):
            result.lazy["exhausted"] = True
        result.time_s = time.perf_counter() - t0
        return result
    if ref.improved:
        # A plan the conservative tables missed: its values are the physics' own (no rounding to check).
        ev = ref.evaluation
        units = (options or enumerated)[0].units
        raw = exact_value(units, primary, ev)
        solved = (ref.placement, ev, raw, raw, units)
    placement, ev, best_raw, bound_raw, units = solved
    result.status = "optimal" if ref.complete else "feasible"
    _record(problem, result, placement, ev, best_raw, bound_raw, units, primary, check=not ref.improved)
    if ref.improved or not ref.complete:
        result.bound = None if not ref.complete else result.objective
        result.gap = None if not ref.complete else 0.0
    result.time_s = time.perf_counter() - t0
    return result


def _record(problem: Problem, result: PlanResult, placement: Placement, ev: Evaluation, best_raw: float,
            bound_raw: float, units: Units, primary: str, check: bool = True) -> None:
    """Fill ``result`` from a verified plan; with ``check``, compare the model's objective with the physics'."""
    exact = exact_objective(problem, ev)
    model_value = objective_value(problem, units, best_raw)
    # Each stage value rounds at most one unit per term (its layers and its constant) upwards.
    rounding = (problem.arch.layers + 2) / max(best_raw, 1.0)
    if check and primary != "gpus" and abs(exact - model_value) > (rounding + 1e-6) * abs(exact):
        raise VerificationError(
            f"CP-SAT objective {model_value} and exact evaluation {exact} differ beyond integer rounding "
            f"({rounding:.2e} relative)")
    result.placement = placement
    result.evaluation = ev
    result.objective = exact
    result.objective_raw = int(round(best_raw))
    result.units = units
    result.bound = objective_value(problem, units, bound_raw)
    # The solver's own gap, in model units (the exact objective differs from the model's by rounding).
    result.gap = abs(best_raw - bound_raw) / abs(best_raw) if best_raw else 0.0
    result.binding = binding_rules(ev)


def _conservative(problem: Problem, options: list[Option], params: SolveParams, primary: str, chain: list[str],
                  result: PlanResult):
    """The search on the conservative tables, with the lazy percentile loop.

    Returns (placement, evaluation, primary value, bound, units) with ``result.status`` "optimal"
    or "feasible", or None with it "infeasible" or "unknown".
    """
    lazy = bool(problem.instance.slo.percentile_targets())
    hint = best_even_split(problem, options)
    if hint is not None and not lazy:
        # Sound pruning: an option whose optimistic bound is worse than a known plan can neither
        # win nor tie, so it cannot change the optimum or the tie-breaks. (Not with lazy targets:
        # the known plan may miss a percentile, and the optimum then lies beyond it.)
        incumbent = hint[2]
        second = chain[0] if chain and chain[0] in ("z", "cycle", "ttft") else None
        tie = max(v[second] for v in split_values(problem, hint[0], hint[1])) if second else None

        def may_win(o: Option) -> bool:
            # Lexicographically: a worse primary bound loses; an equal one (GPU counts are exact)
            # with a worse bound on the first tie-break loses too.
            lb = option_lower_bound(problem, o, primary)
            if lb != incumbent or second is None or primary != "gpus":
                return lb <= incumbent
            return option_lower_bound(problem, o, second) <= tie

        options = [o for o in options if may_win(o)]
        # Finer integer units for the options left (CP-SAT needs every table value below ~2e9).
        options = with_units(problem, options)
        options = [o for o in options if not o.bound_violations and not o.memory_sum_exceeds]
    result.options_in_model = len(options)
    while True:
        solved = _solve(problem, options, hint, params, primary, chain, result)
        if solved is None:
            return None
        placement, option, best_raw, bound_raw, proven = solved
        ev = evaluate(problem, placement)
        linear_ok = all(r.passed for r in ev.requirements if r.rule not in percentile_rules(problem))
        if not linear_ok:
            failed = "; ".join(r.statement for r in ev.failed())
            raise VerificationError(f"decoded plan {placement} fails verification: {failed}")
        if ev.feasible:
            result.status = "optimal" if proven else "feasible"
            return placement, ev, best_raw, bound_raw, options[0].units
        # A percentile target missed: record the candidate, learn it (a no-good on its split; at a
        # request rate on every level of its configuration), search on.
        result.lazy.setdefault("candidates", []).append(
            {"strategy": placement.strategy(ev.max_num_seqs), "layers_per_stage": list(placement.layers_per_stage),
             "failed": {r.rule: r.value for r in ev.failed()}})
        problem.learned.extend(learn(problem, placement, ev))
        if len(result.lazy["candidates"]) >= problem.instance.simulation.max_candidates:
            result.status = "unknown"
            result.lazy["budget_exhausted"] = True
            return None
        if params.expired():
            result.status = "unknown"
            result.lazy["time_limit"] = True
            return None


def percentile_rules(problem: Problem) -> set[str]:
    """The rule names of the instance's percentile targets (checked by simulation, lazily)."""
    return set(problem.instance.slo.percentile_targets())


def _solve(problem: Problem, options: list[Option], hint, params: SolveParams, primary: str, chain: list[str],
           result: PlanResult):
    """One CP-SAT search over ``options`` (less what the problem has learned): the primary, then the tie-breaks.

    Returns (placement, option, primary value, bound, proven) or None (``result.status`` set).
    """
    built = build_model(problem, options)
    invalid = built.model.validate()
    if invalid:
        raise AssertionError(f"CP-SAT model invalid: {invalid}")
    m = built.model
    if hint is not None and split_values(problem, hint[0], hint[1]) is not None:
        _hint(built, hint[0], hint[1])
    pvar = built.objective(primary)
    m.minimize(pvar)
    solver = configured_solver(params, params.time_limit_s)
    code = solver.solve(m)
    status = status_name(code)
    result.phases.append({"phase": "primary", "status": status, "wall_s": solver.wall_time})
    if status in ("infeasible", "unknown", "invalid"):
        result.status = "infeasible" if status == "infeasible" else "unknown"
        return None
    best_raw = solver.objective_value
    bound_raw = solver.best_objective_bound
    proven = status == "optimal"
    placement, option = decode(built, solver)
    if proven and chain:
        # Lexicographic tie-breaks, each with the previous levels fixed (DESIGN rule 5).
        m.add(pvar <= int(round(best_raw)))
        exprs = [(t, -built.objective(t[1:]) if t.startswith("-") else built.objective(t)) for t in chain]
        # Among equal plans: the canonical configuration, then the split with the most memory
        # headroom on its fullest stage, then the front-loaded one (a total order on splits).
        exprs += [("rank", built.rank), ("headroom", built.objective("mem_max")), ("split", built.split_key)]
        for name, expr in exprs:
            _hint_from(built, solver)
            m.minimize(expr)
            s2 = configured_solver(params, params.time_limit_s)
            code2 = s2.solve(m)
            st2 = status_name(code2)
            result.phases.append({"phase": name, "status": st2, "wall_s": s2.wall_time})
            if st2 not in ("optimal", "feasible"):
                result.incomplete.append(name)
                break
            placement, option = decode(built, s2)
            solver = s2
            m.add(expr <= int(round(s2.objective_value)))
            if st2 != "optimal":
                result.incomplete.append(name)
                break
    return placement, option, best_raw, bound_raw, proven


def _hint_from(built: BuiltModel, solver: cp_model.CpSolver) -> None:
    m = built.model
    m.clear_hints()
    for lit in built.opt:
        m.add_hint(lit, solver.boolean_value(lit))
    for l, row in enumerate(built.x):
        m.add_hint(built.stage[l], solver.value(built.stage[l]))
        for v in row:
            m.add_hint(v, solver.boolean_value(v))
    for v in built.used:
        m.add_hint(v, solver.boolean_value(v))


def binding_rules(ev: Evaluation, within: float = 0.05) -> list[str]:
    """Requirements with a numeric limit within ``within`` (relative) of being violated."""
    out = []
    for r in ev.requirements:
        if r.slack is None or not isinstance(r.limit, int | float) or not r.limit:
            continue
        if r.passed and abs(r.slack) <= within * abs(r.limit):
            out.append(r.rule)
    return out

"""Solve a problem: options -> CP-SAT (primary objective, then lexicographic tie-breaks) -> decode -> verify."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from ortools.sat.python import cp_model

from ..problem import Problem
from ..verify import Evaluation, Placement, evaluate
from .decode import decode
from .model import BuiltModel, build_model
from .objectives import exact_objective, objective_chain, objective_value
from .options import Option, Units, enumerate_options, with_units
from .witness import best_even_split, option_lower_bound, split_values, witness


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


def _params(p: SolveParams, time_limit: float) -> cp_model.CpSolver:
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


def _status_name(code: int) -> str:
    return {cp_model.OPTIMAL: "optimal", cp_model.FEASIBLE: "feasible", cp_model.INFEASIBLE: "infeasible",
            cp_model.MODEL_INVALID: "invalid"}.get(code, "unknown")


def feasible_plan(problem: Problem, params: SolveParams | None = None, only_gpus: int | None = None) -> PlanResult:
    """Any verified placement, not necessarily optimal (repairs ask "does this change suffice?").

    The best even split, when it meets every rule, is the answer without a solve; otherwise one
    CP-SAT feasibility solve decides. Status "feasible" or "infeasible".
    """
    params = params or SolveParams()
    if problem.instance.slo.percentile_targets():
        # A percentile target is only known by simulation: search with lazy cuts.
        return plan(problem, params, only_gpus=only_gpus, tie_breaks=False)
    t0 = time.perf_counter()
    options = [o for o in enumerate_options(problem, only_gpus=only_gpus)
               if not o.bound_violations and not o.memory_sum_exceeds]
    result = PlanResult(status="infeasible", options_considered=len(options), options_in_model=len(options))
    if options:
        hint = best_even_split(problem, options) or witness(problem, options)
        if hint is not None:
            placement = Placement(hint[0].cfg, hint[0].batch, tuple(hint[1]))
        else:
            built = build_model(problem, options)
            solver = _params(params, params.time_limit_s)
            code = solver.solve(built.model)
            status = _status_name(code)
            if status not in ("optimal", "feasible"):
                result.status = "infeasible" if status == "infeasible" else "unknown"
                result.time_s = time.perf_counter() - t0
                return result
            placement, _ = decode(built, solver)
        ev = evaluate(problem, placement)
        if not ev.feasible:
            raise VerificationError(f"plan {placement} fails verification: {[r.rule for r in ev.failed()]}")
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
    that misses a percentile is cut (a no-good on its option and split) before the search resumes,
    until a plan passes, none is left (``infeasible``, the candidates in ``result.lazy``) or
    ``simulation.max_candidates`` plans were tried (``unknown``).
    """
    params = params or SolveParams()
    t0 = time.perf_counter()
    options = enumerate_options(problem, only_gpus=only_gpus)
    result = PlanResult(status="infeasible", options_considered=len(options))
    # Every rule binds in a solve, so an option that breaks one under every split is out.
    options = [o for o in options if not o.bound_violations and not o.memory_sum_exceeds]
    if not options:
        result.time_s = time.perf_counter() - t0
        return result
    primary, *chain = objective_chain(problem)
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
    cuts: list[tuple[int, tuple[int, ...]]] = []
    while True:
        solved = _solve(problem, options, hint, cuts, params, primary, chain if tie_breaks else [], result, t0)
        if solved is None:
            result.time_s = time.perf_counter() - t0
            if result.status == "infeasible" and cuts:
                result.lazy["exhausted"] = True
            return result
        placement, option, best_raw, bound_raw, proven = solved
        ev = evaluate(problem, placement)
        linear_ok = all(r.passed for r in ev.requirements if r.rule not in percentile_rules(problem))
        if not linear_ok:
            failed = "; ".join(r.statement for r in ev.failed())
            raise VerificationError(f"decoded plan {placement} fails verification: {failed}")
        if ev.feasible:
            break
        # A percentile target missed: record the candidate, cut it, search on.
        result.lazy.setdefault("candidates", []).append(
            {"strategy": placement.strategy(ev.max_num_seqs), "layers_per_stage": list(placement.layers_per_stage),
             "failed": {r.rule: r.value for r in ev.failed()}})
        # At a request rate the simulation depends on the configuration, the split and the engine's
        # cap, not on the batch level (the load sets the batch), so every level of this configuration
        # fails the same way on this split: all of them are cut at once.
        same = [o.index for o in options if o.cfg == option.cfg] \
            if problem.instance.workload.mode == "request_rate" else [option.index]
        cuts.extend((index, tuple(placement.layers_per_stage)) for index in same)
        if len(result.lazy["candidates"]) >= problem.instance.simulation.max_candidates:
            result.status = "unknown"
            result.lazy["budget_exhausted"] = True
            result.time_s = time.perf_counter() - t0
            return result
    exact = exact_objective(problem, ev)
    units = options[0].units
    model_value = objective_value(problem, units, best_raw)
    # Each stage value rounds at most one unit per term (its layers and its constant) upwards.
    rounding = (problem.arch.layers + 2) / max(best_raw, 1.0)
    if primary != "gpus" and abs(exact - model_value) > (rounding + 1e-6) * abs(exact):
        raise VerificationError(
            f"CP-SAT objective {model_value} and exact evaluation {exact} differ beyond integer rounding "
            f"({rounding:.2e} relative)")
    result.status = "optimal" if proven else "feasible"
    result.placement = placement
    result.evaluation = ev
    result.objective = exact
    result.objective_raw = int(round(best_raw))
    result.units = units
    result.bound = objective_value(problem, units, bound_raw)
    # The solver's own gap, in model units (the exact objective differs from the model's by rounding).
    result.gap = abs(best_raw - bound_raw) / abs(best_raw) if best_raw else 0.0
    result.binding = binding_rules(ev)
    result.time_s = time.perf_counter() - t0
    return result


def percentile_rules(problem: Problem) -> set[str]:
    """The rule names of the instance's percentile targets (checked by simulation, lazily)."""
    return set(problem.instance.slo.percentile_targets())


def _solve(problem: Problem, options: list[Option], hint, cuts: list[tuple[int, tuple[int, ...]]],
           params: SolveParams, primary: str, chain: list[str], result: PlanResult, t0: float):
    """One CP-SAT search over ``options`` minus the ``cuts``: the primary, then the tie-breaks.

    Returns (placement, option, primary value, bound, proven) or None (``result.status`` set).
    """
    built = build_model(problem, options)
    invalid = built.model.validate()
    if invalid:
        raise AssertionError(f"CP-SAT model invalid: {invalid}")
    m = built.model
    by_index = {o.index: lit for o, lit in zip(built.options, built.opt, strict=True)}
    for index, split in cuts:
        if index not in by_index or len(split) > built.max_pp:
            continue
        stage_of = [s for s, n in enumerate(split) for _ in range(n)]
        m.add_bool_or([by_index[index].Not(), *(built.x[l][st].Not() for l, st in enumerate(stage_of))])
    if hint is not None and (hint[0].index, tuple(hint[1])) not in cuts:
        _hint(built, hint[0], hint[1])
    pvar = built.objective(primary)
    m.minimize(pvar)
    solver = _params(params, params.time_limit_s)
    code = solver.solve(m)
    status = _status_name(code)
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
            s2 = _params(params, params.time_limit_s)
            code2 = s2.solve(m)
            st2 = _status_name(code2)
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

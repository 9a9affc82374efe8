"""Answers that do not depend on the rounding: the conservative answer checked with the optimistic tables.

The conservative tables (demands rounded up, capacities down) make every model solution a plan
the verifier accepts, but near a limit they can miss plans the exact physics allows: a proof of
infeasibility that is false, an optimum another plan beats. The optimistic tables (demands down,
capacities up) accept every plan the physics accepts. After the conservative solve, :func:`refine`
asks the optimistic model for a plan better than the incumbent (or for any plan, when there is
none). Each candidate goes to the verifier: one it accepts and that is better becomes the
incumbent; one it rejects teaches the problem facts (:mod:`solver.search.facts`) that rule out
that failure on every split; one that is no better gets a local cut. When the optimistic model
has nothing left, no plan better than the incumbent by more than :data:`EXACT_REL_TOL` exists
under the exact physics (or, without an incumbent, none at all).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field

from ..physics import stage_coefficients, stage_counts, stage_cycles_s
from ..problem import Problem
from ..verify import Evaluation, Placement, evaluate
from .decode import decode
from .facts import ANY_DP, Fact
from .model import build_model
from .options import Option, Units, with_units
from .params import SolveParams, configured_solver, status_name
from .witness import option_lower_bound

# Plans better than the incumbent by less than this (relative) do not count as better: the search
# stops refining at this gap. Far below the cost model's own error (~10%, benchmarks/) and below
# the six significant digits of the GPU cards' figures, so no deployment decision rests on it.
EXACT_REL_TOL = 1e-6
# Candidates the verifier checks per refinement before it gives up (then the answer is labelled
# unproven). Boundary instances of the property test need at most a handful.
MAX_CANDIDATES = 64

# Rules on the cycle time D whose bound grows with dp (dp x B / D >= rate): a failure at some dp
# is a failure at every smaller dp. The per-GPU throughput bound does not depend on dp.
_CYCLE_RULES_DP_MONOTONE = ("workload.request_rate", "slo.min_request_rate", "slo.min_output_tokens_per_s")
_CYCLE_RULES_DP_FREE = ("slo.tpot_ms", "slo.min_output_tokens_per_s_per_gpu")


@dataclass
class Refinement:
    """What the exact check found: the incumbent after it, and how far it got."""

    placement: Placement | None
    evaluation: Evaluation | None
    checked: int = 0  # candidates the verifier checked
    learned: int = 0  # facts learned from rejections
    improved: bool = False  # a better plan than the conservative one (or a plan where it had none)
    complete: bool = True  # the primary's optimistic model was exhausted: it holds under the exact physics
    stopped: str = ""  # why a phase is not complete (the primary's, or the tie-break's when complete)
    tie_break_incomplete: bool = False  # the refinement among equal GPU counts stopped at a limit
    phases: list[dict] = field(default_factory=list)

    def summary(self) -> dict:
        """The JSON form for the report."""
        out = {"checked": self.checked, "learned": self.learned, "improved": self.improved,
               "complete": self.complete, "tolerance": EXACT_REL_TOL}
        if self.stopped:
            out["stopped"] = self.stopped
        if self.tie_break_incomplete:
            out["tie_break_complete"] = False
        return out


def exact_value(units: Units, quantity: str, ev: Evaluation) -> float:
    """An evaluated plan's model quantity in model units, unrounded (the physics, not the tables)."""
    m = ev.metrics
    if quantity == "gpus":
        return float(m.gpus)
    if quantity == "cycle":
        return m.cycle_s * units.time_per_s
    if quantity == "ttft":
        return m.ttft_ms * 1e-3 * units.time_per_s
    if quantity == "z":  # GPU-time per output token
        return units.z_per_s / m.output_tokens_per_s_per_gpu if m.output_tokens_per_s_per_gpu > 0 else math.inf
    raise KeyError(quantity)


def _better(quantity: str, value: float, than: float) -> bool:
    return value < than if quantity == "gpus" else value < than * (1 - EXACT_REL_TOL)


def _target(quantity: str, than: float) -> int:
    """The largest integer model value a plan better than ``than`` can have (optimistic values are <= exact)."""
    if quantity == "gpus":
        return int(than) - 1
    return math.ceil(than * (1 - EXACT_REL_TOL)) - 1


def _stage_values(problem: Problem, placement: Placement):
    cfg, batch = placement.cfg, placement.batch
    key = (cfg.tp, cfg.pp, cfg.ep, cfg.adp, cfg.redundant, cfg.weights, cfg.kv_cache, batch)
    coef = problem.coefficient_cache.get(key) or stage_coefficients(problem.ctx, cfg, batch)
    counts = stage_counts(problem.arch.layer_kinds(), list(placement.layers_per_stage))
    values = [coef.stage_values(c, s) for s, c in enumerate(counts)]
    return counts, values, stage_cycles_s(coef, values, problem.instance.workload)


def _fact(rule: str, placement: Placement, dp: tuple[int, int], stage: int | None, counts, batch_any: bool = False
          ) -> Fact:
    c = placement.cfg
    common = dict(rule=rule, tp=c.tp, pp=c.pp, ep=c.ep, adp=c.adp, redundant=c.redundant, weights=c.weights, kv_cache=c.kv_cache,
                  batch=None if batch_any else placement.batch, dp_lo=dp[0], dp_hi=dp[1])
    if stage is None:
        return Fact(**common, split=tuple(placement.layers_per_stage))
    return Fact(**common, stage=stage, counts=tuple(sorted((k, n) for k, n in counts[stage].items() if n)))


def learn(problem: Problem, placement: Placement, ev: Evaluation, rules=None) -> list[Fact]:
    """Facts from the verifier's rejection of ``placement`` (its failed requirements in ``rules``; all if None).

    Memory, the cycle time and the TTFT only grow with the layers a stage holds, so a failure on
    one stage becomes a fact for every split that loads that stage at least as much; a simulated
    percentile has no such order and becomes a no-good on the split (at a request rate, on every
    batch level of the configuration: the load, not the level, sets the simulated batch).
    """
    counts, values, cycles = _stage_values(problem, placement)
    dp = placement.cfg.dp
    out: list[Fact] = []
    for r in ev.failed():
        if rules is not None and r.rule not in rules:
            continue
        if r.rule.startswith("mem_cap[stage="):
            s = int(r.rule.split("=")[1].rstrip("]"))
            out.append(_fact(r.rule, placement, (1, ANY_DP), s, counts))
        elif r.rule in _CYCLE_RULES_DP_MONOTONE or r.rule in _CYCLE_RULES_DP_FREE:
            s = max(range(len(cycles)), key=lambda i: cycles[i])
            span = (1, dp) if r.rule in _CYCLE_RULES_DP_MONOTONE else (1, ANY_DP)
            out.append(_fact(r.rule, placement, span, s, counts))
        elif r.rule == "slo.ttft_ms":
            s = max(range(len(values)), key=lambda i: values[i]["decode_s"])
            out.append(_fact(r.rule, placement, (1, ANY_DP), s, counts))
        else:
            at_rate = problem.instance.workload.mode == "request_rate"
            out.append(_fact(r.rule, placement, (dp, dp), None, counts, batch_any=at_rate))
    return out


def _objective_cut(problem: Problem, placement: Placement, quantity: str) -> Fact:
    """A local cut: splits loading the candidate's bottleneck stage at least as much are no better."""
    counts, values, cycles = _stage_values(problem, placement)
    if quantity == "ttft":
        s = max(range(len(values)), key=lambda i: values[i]["decode_s"])
    else:
        s = max(range(len(cycles)), key=lambda i: cycles[i])
    return _fact(f"objective.{quantity}", placement, (1, ANY_DP), s, counts)


def optimistic_copies(problem: Problem, options: list[Option]) -> list[Option]:
    """Copies of ``options`` with optimistic tables, less those no split can make feasible even so."""
    copies = with_units(problem, [copy.copy(o) for o in options], optimistic=True)
    return [o for o in copies if not o.bound_violations and not o.memory_sum_exceeds]


def refine(problem: Problem, params: SolveParams, options: list[Option], incumbent: tuple[Placement, Evaluation] | None,
           chain: list[str]) -> Refinement:
    """Make the answer exact for the quantities in ``chain`` (see the module docstring).

    ``options``: the planner's whole enumeration (conservative tables). ``chain``: the primary
    objective, optionally followed by one quantity refined among plans with the incumbent's GPU
    count (when the primary is the GPU count, which ties exactly).
    """
    out = Refinement(*(incumbent or (None, None)))
    pool: list[Option] | None = None
    for i, quantity in enumerate(chain):
        if i > 0 and (out.placement is None or chain[0] != "gpus"):
            break
        cuts: list[Fact] = []
        while True:
            if params.expired():
                return _stop(out, i, "the command's time limit ran out")
            gpus = None if i == 0 or out.placement is None else out.placement.cfg.gpus
            if pool is None:
                pool = optimistic_copies(problem, options)
            units = pool[0].units if pool else Units(optimistic=True)
            target = None if out.evaluation is None else _target(quantity, exact_value(units, quantity, out.evaluation))
            cands = [o for o in pool if (gpus is None or o.cfg.gpus == gpus)
                     and (target is None or option_lower_bound(problem, o, quantity) <= target)]
            if not cands:
                break
            built = build_model(problem, cands, facts=cuts)
            var = built.objective(quantity)
            if target is not None:
                built.model.add(var <= target)
            built.model.minimize(var)
            solver = configured_solver(params, params.time_limit_s)
            status = status_name(solver.solve(built.model))
            out.phases.append({"phase": f"exact:{quantity}", "status": status, "wall_s": solver.wall_time})
            if status == "infeasible":
                break
            if status not in ("optimal", "feasible"):
                return _stop(out, i, f"the optimistic {quantity} model stopped at its limit")
            placement, _ = decode(built, solver)
            ev = evaluate(problem, placement)
            out.checked += 1
            if ev.feasible:
                if out.evaluation is None or _better(quantity, exact_value(units, quantity, ev),
                                                     exact_value(units, quantity, out.evaluation)):
                    out.placement, out.evaluation, out.improved = placement, ev, True
                else:
                    cuts.append(_objective_cut(problem, placement, quantity))
            else:
                facts = learn(problem, placement, ev)
                if not facts:  # a rejection no fact explains: never propose this split again
                    facts = [_fact("objective.reject", placement, (placement.cfg.dp,) * 2, None, None)]
                    cuts.extend(facts)
                else:
                    problem.learned.extend(facts)
                    out.learned += len(facts)
            if out.checked >= MAX_CANDIDATES:
                return _stop(out, i, f"{MAX_CANDIDATES} candidates checked")
    return out


def _stop(out: Refinement, phase: int, why: str) -> Refinement:
    """End the refinement at a limit: the primary is then unproven; a later phase only leaves ties open."""
    if phase == 0:
        out.complete = False
    else:
        out.tie_break_incomplete = True
    out.stopped = why
    return out

"""Plan a cluster of candidate GPU types: each type exactly, then the cheapest verified mix.

1. Every offer is solved as its own problem with the instance's objective (the exact planner,
   proofs included): the best of each type is its runner-up entry, the best of all the choice.
2. With a cost objective at a request rate, replica designs of every type (:mod:`.designs`) feed
   the mix model (:mod:`.mix`). A mix of two or more types that is cheaper than the best single
   type is re-planned group by group (each type's replicas pinned, at its share of the rate) by
   the exact planner, which verifies and simulates it; a group that fails cuts that mix and the
   model is solved again.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..input.schema import GpuOffer, Instance, StrategyPins
from ..physics.cost import cost_per_hour_usd
from ..problem import COST_OBJECTIVES, Problem, mark_cli_price
from ..search.objectives import is_maximised
from ..search.planner import SolveParams
from .designs import Design, replica_designs
from .mix import Mix, assignment_key, cheapest_mix
from .offers import available_gpus, offer_name, offer_problem

PLAN_STATUSES = ("optimal", "feasible")
# Mixes refuted by verification before the search stops looking (each costs one re-plan per group).
MAX_MIX_ROUNDS = 8
# Throughput floors are properties of the whole deployment, not of one type's share of it.
DEPLOYMENT_FLOORS = ("min_request_rate", "min_output_tokens_per_s", "min_output_tokens_per_s_per_gpu")


@dataclass
class OfferOutcome:
    """One GPU type solved alone: its problem and the answer (an api.Report)."""

    index: int
    offer: GpuOffer
    name: str
    problem: Problem | None
    report: Any  # solver.api.Report

    @property
    def status(self) -> str:
        return self.report.status

    @property
    def feasible(self) -> bool:
        return self.report.status in PLAN_STATUSES

    @property
    def usd_per_hour(self) -> float | None:
        m = self.report.metrics
        return None if not m else m.get("cost_per_hour_usd")


@dataclass
class Group:
    """The replicas of one GPU type in a mix, re-planned and verified at their share of the rate."""

    design: Design
    replicas: int
    request_rate: float
    report: Any  # solver.api.Report of the pinned group


@dataclass
class CapacityResult:
    """Everything the capacity report states."""

    instance: Instance
    file: str | None
    offers: list[OfferOutcome]
    best: OfferOutcome | None
    mix: list[Group] | None = None
    mix_model: Mix | None = None
    mix_note: str = ""  # why there is no mix, or what the mix is
    designs: list[Design] = field(default_factory=list)
    refuted: list[str] = field(default_factory=list)
    repair: Mix | None = None

    @property
    def status(self) -> str:
        if self.mix is not None:
            return "optimal" if self.mix_model is not None and self.mix_model.status == "optimal" and all(
                o.status in ("optimal", "infeasible") for o in self.offers) else "feasible"
        if self.best is not None:
            return self.best.status
        return "unknown" if any(o.status == "unknown" for o in self.offers) else "infeasible"

    @property
    def mix_usd_per_hour(self) -> float | None:
        if self.mix is None:
            return None
        return sum(cost_per_hour_usd(g.design.usd_per_gpu_hour, g.design.gpus * g.replicas) for g in self.mix)


def plan_capacity(inst: Instance, file: str | None, params: SolveParams,
                  plan_one: Callable[[Problem, SolveParams], Any], price_notes: dict[str, str] | None = None
                  ) -> CapacityResult:
    """Solve every offer, pick the best, and look for a cheaper verified mix (see the module docstring)."""
    offers = inst.cluster.offers()
    indexed = inst.cluster.candidates is not None
    outcomes: list[OfferOutcome] = []
    for i, offer in enumerate(offers):
        problem = mark_cli_price(offer_problem(inst, i if indexed else None, offer, file), price_notes or {})
        outcomes.append(OfferOutcome(i, offer, offer_name(offer), problem, plan_one(problem, params)))
    best = _best(inst, outcomes)
    result = CapacityResult(inst, file, outcomes, best)
    why_not = _mix_excluded(inst, offers)
    if why_not:
        result.mix_note = why_not
        return result
    _search_mix(result, params, plan_one, price_notes or {})
    return result


def _best(inst: Instance, outcomes: list[OfferOutcome]) -> OfferOutcome | None:
    """The best single type by the instance's objective; ties: cheaper, then the order of the offers."""
    plans = [o for o in outcomes if o.feasible and o.report.objective is not None]
    if not plans:
        return None
    sign = -1.0 if is_maximised(inst.objective) else 1.0
    return min(plans, key=lambda o: (sign * o.report.objective, o.usd_per_hour or math.inf, o.index))


def _mix_excluded(inst: Instance, offers: list[GpuOffer]) -> str:
    """Why mixes are not considered for this instance (empty when they are)."""
    if len(offers) < 2:
        return "one GPU type offered"
    if not inst.cluster.allow_mix:
        return "cluster.allow_mix is false"
    if inst.objective not in COST_OBJECTIVES:
        return f"mixes are priced: they are considered for min_cost and min_cost_per_token, not {inst.objective}"
    if inst.workload.mode != "request_rate":
        return "mixes split a request rate over replicas; this workload has none"
    floors = [f"slo.{k}" for k in DEPLOYMENT_FLOORS if getattr(inst.slo, k) is not None]
    if floors:
        return f"{', '.join(floors)} bind the whole deployment; mixes are not considered with them"
    if inst.strategy.dp is not None or inst.strategy.max_num_seqs is not None:
        return "strategy.dp or strategy.max_num_seqs is pinned; a mix sets both per GPU type"
    return ""


def _search_mix(result: CapacityResult, params: SolveParams, plan_one, price_notes: dict[str, str]) -> None:
    inst, file = result.instance, result.file
    rate = inst.workload.request_rate
    for o in result.offers:
        if o.problem is None or o.problem.price is None:
            continue
        result.designs += replica_designs(inst, o.index, o.offer, file, o.problem.price.usd_per_gpu_hour, params)
    best_single = result.best.usd_per_hour if result.best is not None else None
    limit = min(params.time_limit_s, 10.0)
    available = {o.index: available_gpus(o.offer) for o in result.offers}
    cuts: list[tuple[tuple[int, int], ...]] = []
    for _ in range(MAX_MIX_ROUNDS):
        mix = cheapest_mix(result.designs, rate, available, exclude=cuts, time_limit_s=limit, seed=params.seed)
        if mix is None:
            result.mix_note = "no mix of the designs carries the rate within the targets and the availability"
            break
        if len(mix.counts) < 2:
            result.mix_note = f"the cheapest set of replicas is one group: {mix.describe()}"
            break
        if best_single is not None and mix.usd_per_hour >= best_single * (1 - 1e-9):
            result.mix_note = (f"the cheapest mix, {mix.describe()} at ${mix.usd_per_hour:,.2f}/h, is not cheaper "
                               f"than the best single type at ${best_single:,.2f}/h")
            break
        groups, failure = _verify_mix(inst, file, result, mix, params, plan_one, price_notes)
        if groups is not None:
            result.mix, result.mix_model = groups, mix
            gain = "" if best_single is None else \
                f", {1 - mix.usd_per_hour / best_single:.1%} below the best single type (${best_single:,.2f}/h)"
            result.mix_note = f"{mix.describe()} at ${mix.usd_per_hour:,.2f}/h{gain}"
            break
        result.refuted.append(f"{mix.describe()}: {failure}")
        cuts.append(assignment_key(result.designs, mix))
    else:
        result.mix_note = f"{MAX_MIX_ROUNDS} mixes refuted by verification; none offered"
    if result.best is None and result.mix is None and result.designs:
        result.repair = cheapest_mix(result.designs, rate, available, time_limit_s=limit, seed=params.seed,
                                     ignore_availability=True)


def _verify_mix(inst: Instance, file: str | None, result: CapacityResult, mix: Mix, params: SolveParams,
                plan_one, price_notes: dict[str, str]) -> tuple[list[Group] | None, str]:
    """Each group re-planned with its replicas pinned, at its share of the rate; None and why on a failure."""
    rate = inst.workload.request_rate
    groups = []
    for d, n in mix.counts:
        share = rate * (n * d.rate) / mix.capacity
        c, p = d.placement.cfg, d.placement
        pins = StrategyPins(tp=c.tp, pp=c.pp, dp=n, ep=c.ep, weights=c.weights, kv_cache=c.kv_cache,
                            layers_per_stage=list(p.layers_per_stage))
        offer = result.offers[d.offer].offer
        problem = offer_problem(inst, d.offer, offer, file, strategy=pins, objective="min_cost",
                                workload=inst.workload.model_copy(update={"request_rate": share}))
        problem = mark_cli_price(problem, price_notes)
        report = plan_one(problem, params)
        if report.status not in PLAN_STATUSES:
            failed = (report.proof or {}).get("summary") or report.status
            return None, f"{n} x {d.gpu} replicas at {share:.3f} req/s: {failed}"
        groups.append(Group(d, n, share, report))
    return groups, ""


def availability_line(offer: GpuOffer) -> str:
    """``16 x h100-sxm-80gb (2 nodes x 8)``."""
    return f"{available_gpus(offer)} x {offer_name(offer)} ({offer.nodes} node{'s' if offer.nodes > 1 else ''} " \
           f"x {offer.gpus_per_node})"

"""A solve's candidates without the replica counts its objective can never prefer.

Everything an option's tables hold is the same for every dp of a replica shape (tp, pp, ep,
attention DP, precisions) and batch level; dp only sets the GPU count and loosens the throughput
rules (``dp x B / D`` grows with it), so a split that is feasible at some dp is feasible at every
larger one. Hence, for an objective whose chain reaches the GPU count (:data:`DP_PREFERENCES`):

- ``"fewest"`` (``gpus`` before ``-gpus``): the replica counts from the smallest one whose
  best-case cycle can carry the load up to the first one at which a known split (the engine's
  even split, or the memory-filled one, checked on the option's own tables) meets every rule.
  Above it the same shape with fewer replicas is a feasible plan with fewer GPUs. With no known
  split every count is kept.
- ``"most"`` (``-gpus`` first): only the largest count. It is feasible whenever a smaller one is,
  with the same objective terms before the GPU count, and more GPUs win there.

Neither cut removes a plan that could be optimal under the conservative tables, the optimistic
ones or the exact physics: each is monotone in dp the same way (the rounding of a table is shared
by every dp of its shape). Large clusters list thousands of dp values (``search.dp`` up to the GPU
count), so this is what keeps their enumeration to one pass over the shapes. Not used with
percentile targets (a learned cut may remove the known split, and the simulation's verdict is not
a table) nor for a closed loop (there dp also sets each replica's batch).
"""

from __future__ import annotations

import dataclasses
import itertools

from ..physics import Config
from ..problem import Problem
from .objectives import objective_chain
from .options import (
    VERIFY_TOLERANCE,
    EnumerationExpired,
    Option,
    balanced_cycle,
    batch_levels,
    build_int_stages,
    cycle_bounds,
    enumerate_options,
    fits_somewhere,
    levels_that_can_carry,
    shape_coefficients,
    split_independent_bounds,
    static_violations,
    units_for,
    with_units,
)
from .witness import candidate_splits, known_split_feasible

# The first GPU-count term of an objective's chain -> the replica counts it can prefer.
DP_PREFERENCES = {"gpus": "fewest", "-gpus": "most"}


def dp_preference(problem: Problem) -> str | None:
    """"fewest", "most" or None (every count kept) for the problem's objective chain."""
    for term in objective_chain(problem):
        if term in DP_PREFERENCES:
            return DP_PREFERENCES[term]
    return None


def solve_options(problem: Problem, only_gpus: int | None = None, optimistic: bool = False,
                  expired=None) -> list[Option]:
    """The candidates of a solve: :func:`enumerate_options` less the dominated replica counts.

    ``expired`` (a callable) is polled as the list grows: :class:`EnumerationExpired` once it says True."""
    preference = dp_preference(problem)
    if (preference is None or problem.instance.workload.mode == "concurrency"
            or problem.instance.slo.percentile_targets()):
        return enumerate_options(problem, only_gpus=only_gpus, optimistic=optimistic, expired=expired)
    inst, s = problem.instance, problem.search
    total = problem.ctx.hw.total_gpus
    dp_pin = problem.pins.dp
    coefficients = shape_coefficients(problem)
    at_rate = inst.workload.mode == "request_rate"
    groups = []
    shapes = 0
    for tp, pp, ep, adp, red, w, kv in itertools.product(s.tp, s.pp, s.ep, s.attention_dp, s.redundant,
                                                         inst.precision.weights, inst.precision.kv_cache):
        shapes += 1
        if expired is not None and shapes % 64 == 0 and expired():
            raise EnumerationExpired("the time limit ran out while listing the candidates")
        per_replica = Config(tp, pp, 1, ep, w, kv, adp, red).gpus
        dps = [d for d in s.dp if per_replica * d <= total
               and (dp_pin is None or d == dp_pin)
               and (only_gpus is None or per_replica * d == only_gpus)]
        if not dps:
            continue
        top = Config(tp, pp, dps[-1], ep, w, kv, adp, red)
        if static_violations(problem, top):
            continue
        levels = batch_levels(problem, top)
        if at_rate:
            levels = levels_that_can_carry(problem, top, levels, coefficients)
        for b in levels:
            if static_violations(problem, top, b):
                continue
            coef = coefficients(top, b)
            if fits_somewhere(problem, coef):
                groups.append((top, dps, b, coef))
    coefs = list({id(g[3]): g[3] for g in groups}.values())
    units = units_for(coefs, problem, optimistic)
    relaxed = units_for(coefs, problem, optimistic=True)
    out: list[Option] = []
    for n, (top, dps, b, coef) in enumerate(groups):
        if expired is not None and n % 64 == 0 and expired():
            raise EnumerationExpired("the time limit ran out while costing the candidates")
        if _never_feasible(problem, top, b, coef, relaxed):
            continue
        stages, ttft_t = build_int_stages(problem, coef, units)

        def option(d: int, top=top, b=b, coef=coef, stages=stages, ttft_t=ttft_t) -> Option:
            cfg = dataclasses.replace(top, dp=d)
            return Option(index=-1, cfg=cfg, batch=b, violations=(), coef=coef, stages=stages,
                          ttft_const_t=ttft_t, units=units)

        if preference == "most":
            out.append(option(dps[-1]))
            continue
        cycle = balanced_cycle(problem, top, b, coef) if at_rate else None
        splits, evaluated = None, {}
        for d in dps:
            if cycle is not None and d * b * top.pp / cycle < inst.workload.request_rate * (1 - VERIFY_TOLERANCE):
                continue  # no split carries the rate with d replicas
            o = option(d)
            out.append(o)
            splits = candidate_splits(problem, o, None) if splits is None else splits  # the same for every dp
            if known_split_feasible(problem, o, splits, evaluated):
                break
    out.sort(key=Option.rank_key)
    for i, opt in enumerate(out):
        opt.index = i
    return with_units(problem, out, optimistic, expired)


def _never_feasible(problem: Problem, cfg: Config, b: int, coef, relaxed) -> bool:
    """True when a rule that does not depend on dp (memory, TTFT, TPOT) fails under every split even
    on the optimistic tables: no replica count of this shape and level can be feasible, in any of
    the three views (the optimistic copies of the exact check would drop it too)."""
    stages, ttft_t = build_int_stages(problem, coef, relaxed)
    probe = Option(index=-1, cfg=cfg, batch=b, violations=(), coef=coef, stages=stages, ttft_const_t=ttft_t,
                   units=relaxed)
    static, sum_exceeds, cycle_lb = split_independent_bounds(problem, probe)
    tpot = cycle_bounds(problem, probe).get("slo.tpot_ms")
    return bool(static) or sum_exceeds or (tpot is not None and cycle_lb > tpot)

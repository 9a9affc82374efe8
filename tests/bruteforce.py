"""Brute-force references: every candidate option and every contiguous layer split, scored by the
same integer cost tables the CP-SAT model uses (which come from solver.physics), or by the
verifier's exact physics alone (:func:`exact_brute_force`)."""

from __future__ import annotations

import itertools

from solver.physics import even_split, stage_counts
from solver.search.objectives import exact_objective, objective_chain
from solver.search.options import (
    capacity_MiB,
    cycle_bounds,
    enumerate_options,
    ttft_limit,
    violated_under,
)
from solver.search.witness import evaluate_int
from solver.verify import Placement, evaluate


def splits(layers: int, pp: int):
    """Every way to cut ``layers`` into ``pp`` contiguous non-empty stages."""
    for cuts in itertools.combinations(range(1, layers), pp - 1):
        bounds = (0, *cuts, layers)
        yield [bounds[i + 1] - bounds[i] for i in range(pp)]


def brute_force(problem, rules: set[str] | None = None):
    """Best primary objective (model units) over all placements meeting ``rules`` (all when None).

    With ``rules`` given, candidates breaking a static rule outside the set stay available, as in
    a diagnosis. Returns None when nothing is feasible.
    """
    options = enumerate_options(problem, include_illegal=rules is not None)
    kinds = problem.arch.layer_kinds()
    cap = None
    primary = objective_chain(problem)[0]
    pins = problem.pins.layers_per_stage
    best = None
    enforce = (lambda r: True) if rules is None else (lambda r: r in rules)
    for o in options:
        if violated_under(o.violations, enforce):
            continue
        cap = capacity_MiB(problem, o.units)
        limit = ttft_limit(problem, o.units)
        bounds = {r: b for r, b in cycle_bounds(problem, o).items() if enforce(r)}
        for split in splits(len(kinds), o.cfg.pp):
            if pins is not None and enforce("pin.layers_per_stage") and split != list(pins):
                continue
            if not problem.search.uneven_layers and enforce("search.uneven_layers") and split != even_split(
                    len(kinds), o.cfg.pp):
                continue
            vals = evaluate_int(o, stage_counts(kinds, split))
            if any(v["mem"] > cap for s, v in enumerate(vals) if enforce(f"mem_cap[stage={s}]")):
                continue
            if any(v["cycle"] > b for v in vals for b in bounds.values()):
                continue
            if limit is not None and enforce("slo.ttft_ms") and max(v["ttft"] for v in vals) > limit:
                continue
            score = o.cfg.gpus if primary == "gpus" else max(v[primary] for v in vals)
            best = score if best is None else min(best, score)
    return best


# The verifier's verdict on every placement of the last few problems: a proof's check asks the
# same problem under many rule sets, and each evaluation is independent of the set.
_EVALUATED: dict[tuple[int, bool], tuple[object, list]] = {}
_KEEP = 4


def _evaluated(problem, include_illegal: bool) -> list:
    key = (id(problem), include_illegal)
    hit = _EVALUATED.get(key)
    if hit is not None and hit[0] is problem:
        return hit[1]
    rows = []
    kinds = problem.arch.layer_kinds()
    for o in enumerate_options(problem, include_illegal=include_illegal):
        for split in splits(len(kinds), o.cfg.pp):
            placement = Placement(o.cfg, o.batch, tuple(split))
            ev = evaluate(problem, placement, simulate=False)
            failed = frozenset(r.rule for r in ev.requirements if not r.passed)
            rows.append((failed, exact_objective(problem, ev), placement))
    while len(_EVALUATED) >= _KEEP:
        _EVALUATED.pop(next(iter(_EVALUATED)))
    _EVALUATED[key] = (problem, rows)
    return rows


def exact_brute_force(problem, rules: set[str] | None = None):
    """The best plan under the exact physics: every option and split, checked by the verifier alone.

    No integer table is involved: a placement counts when every requirement (of ``rules``, when
    given) passes in :func:`solver.verify.evaluate`. Returns (objective in user units, placement)
    of the best, or None when nothing passes.
    """
    maximise = problem.instance.objective == "max_throughput_per_gpu"
    best = None
    for failed, value, placement in _evaluated(problem, rules is not None):
        if failed if rules is None else (failed & rules):
            continue
        key = -value if maximise else value
        if best is None or key < best[0]:
            best = (key, value, placement)
    return None if best is None else (best[1], best[2])

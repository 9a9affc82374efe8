"""Why no disaggregated plan exists: bounds over every pool worker the search measured, in numbers.

The disaggregated search (:mod:`solver.search.disagg`) measures each prefill and decode worker
layout with the verifier and lets CP-SAT pick the pair and the counts. When nothing is left, this
module states why with facts a person can check, each a bound over the whole searched space:

* no prefill (decode) worker holds one step's prompts (one sequence): the rule each layout fails,
  counted, and the layout closest to fitting with its memory against the usable memory;
* no decode worker meets ``slo.tpot_ms``: the fastest worker that holds one sequence, its TPOT at
  one sequence (TPOT only grows with the batch);
* the pools need more GPUs than the cluster has: per pool, the fewest GPUs any of its layouts needs
  to carry the rate (workers = rate / capacity, rounded up, as the model counts them), for the
  precision pair that needs the fewest in total;
* no pair meets ``slo.ttft_ms``: the fastest pair's TTFT, its KV crossing NVLink (the optimistic
  link), or the fewest GPUs of the pairs that meet it.

Repairs (:func:`disagg_repairs`) lift a bound (the GPUs it names; a latency limit relaxed from the
bound's value upward) and are verified by the disaggregated search on the changed instance.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

from ..physics.disagg import decode_figures, decode_step_model, prefill_worker
from ..problem import RATE_LEVELS, Problem, build_problem
from ..search.disagg import (
    RATE_SCALE,
    PoolDesign,
    decode_designs,
    pair_ttft_s,
    plan_disagg,
    pool_configs,
    prefill_designs,
)
from ..verify import POOL_RULES_RESTATED, Placement, evaluate


def disagg_bounds(problem: Problem, designs: tuple[list[PoolDesign], list[PoolDesign]] | None = None
                  ) -> list[dict[str, Any]]:
    """The facts that rule out every disaggregated plan of ``problem`` (empty when none is found);
    ``designs``: the search's own prefill and decode designs, when it measured them."""
    pre, dec = designs or (prefill_designs(problem), decode_designs(problem))
    if not pre:
        return [_nothing_fits(problem, "prefill")]
    if not dec:
        return [_no_decode(problem)]
    return _pair_bounds(problem, pre, dec)


def _fact(rule: str, statement: str, value: float, limit: float, unit: str) -> dict[str, Any]:
    return {"rule": rule, "statement": statement, "value": round(value, 4), "limit": round(limit, 4), "unit": unit}


def _worker(cfg) -> str:
    return f"{cfg.worker_label()} {cfg.weights}/{cfg.kv_cache}"


def _failures(problem: Problem, pool: str):
    """Per worker layout at its smallest load: the pool rules it fails."""
    wl, lim = problem.instance.workload, problem.instance.limits
    out = []
    for cfg, layers in pool_configs(problem):
        if pool == "prefill":
            batch = prefill_worker(problem.ctx, cfg, layers, wl.input_tokens,
                                   lim.max_num_batched_tokens).prompts_per_step
        else:
            batch = RATE_LEVELS[0]
        ev = evaluate(problem, Placement(cfg, batch, layers), simulate=False)
        failed = [r for r in ev.requirements if not r.passed and not r.rule.startswith(POOL_RULES_RESTATED)]
        out.append((cfg, layers, batch, failed))
    return out


def _nothing_fits(problem: Problem, pool: str, failures=None) -> dict[str, Any]:
    failures = failures if failures is not None else _failures(problem, pool)
    counts = Counter(r.rule.split("[")[0] for _, _, _, failed in failures for r in failed[:1])
    memory_only = [(max(r.value - r.limit for r in failed), cfg, failed) for cfg, _, _, failed in failures
                   if failed and all(r.rule.startswith("mem_cap") for r in failed)]
    what = "one step's prompts" if pool == "prefill" else "one sequence"
    tally = ", ".join(f"{n} fail {rule}" for rule, n in counts.most_common())
    if memory_only:
        over, cfg, failed = min(memory_only, key=lambda t: t[0])
        worst = max(failed, key=lambda r: r.value - r.limit)
        return _fact(f"{pool}.{worst.rule}", f"no {pool} worker layout holds {what} ({len(failures)} searched: {tally}); "
                     f"the closest, {_worker(cfg)}, needs {worst.value:.2f} GiB per GPU > usable {worst.limit:.2f}",
                     worst.value, worst.limit, "GiB")
    return _fact(f"{pool}.layout", f"no {pool} worker layout passes the pool rules ({len(failures)} searched: {tally})",
                 len(failures), 0, "layouts")


def _no_decode(problem: Problem) -> dict[str, Any]:
    ctx, wl = problem.ctx, problem.instance.workload
    limit = problem.instance.slo.tpot_ms
    failures = _failures(problem, "decode")
    holding = [(cfg, layers) for cfg, layers, _, failed in failures if not failed]
    if not holding or limit is None:
        return _nothing_fits(problem, "decode", failures)
    tpots = [(decode_figures(decode_step_model(ctx, cfg, layers), RATE_LEVELS[0], wl.input_tokens,
                             wl.output_tokens).tpot_s * 1e3, cfg) for cfg, layers in holding]
    best, cfg = min(tpots, key=lambda t: t[0])
    return _fact("decode.slo.tpot_ms", f"the fastest decode worker that holds a sequence, {_worker(cfg)}, takes "
                 f"TPOT {best:.2f} ms at one sequence (more sequences only add) > slo.tpot_ms {limit:g} "
                 f"({len(holding)} layouts hold one)", best, limit, "ms")


def _fewest(designs: list[PoolDesign], need: int) -> tuple[int, PoolDesign | None, int]:
    """(GPUs, design, workers) of the design that carries ``need`` capacity units on the fewest GPUs."""
    best = (math.inf, None, 0)
    for d in designs:
        cap = math.floor(d.capacity_per_s * RATE_SCALE)
        if cap <= 0:
            continue
        workers = math.ceil(need / cap)
        best = min(best, (workers * d.gpus, d, workers), key=lambda t: t[0])
    return best


def _pair_bounds(problem: Problem, pre: list[PoolDesign], dec: list[PoolDesign]) -> list[dict[str, Any]]:
    ctx, inst = problem.ctx, problem.instance
    wl, slo, total = inst.workload, inst.slo, ctx.hw.total_gpus
    need = math.ceil(wl.request_rate * RATE_SCALE)
    pairs = sorted({(d.cfg.weights, d.cfg.kv_cache) for d in pre} & {(d.cfg.weights, d.cfg.kv_cache) for d in dec})
    facts = []
    best = None
    for w, kv in pairs:
        gp, p, x = _fewest([d for d in pre if (d.cfg.weights, d.cfg.kv_cache) == (w, kv)], need)
        gd, d, y = _fewest([d for d in dec if (d.cfg.weights, d.cfg.kv_cache) == (w, kv)], need)
        if p is not None and d is not None and (best is None or gp + gd < best[0]):
            best = (gp + gd, gp, p, x, gd, d, y)
    if best is None:
        return [_fact("disaggregated.precision", "no prefill and decode worker share a precision (the KV cache moves "
                      "between them)", 0, 1, "pairs")]
    g, gp, p, x, gd, d, y = best
    if g > total:
        facts.append(_fact("gpu_count", f"to carry {wl.request_rate:g} req/s the prefill pool needs at least {gp} GPUs "
                           f"({x} x {_worker(p.cfg)} at {p.capacity_per_s:.2f} req/s each) and the decode pool {gd} "
                           f"({y} x {_worker(d.cfg)} at {d.capacity_per_s:.2f} req/s each at {d.batch} sequences, the "
                           f"most within memory and TPOT): {g} > the cluster's {total}", g, total, "GPUs"))
    if slo.ttft_ms is not None:
        ttfts = []
        for a in pre:
            for b in dec:
                if (a.cfg.weights, a.cfg.kv_cache) != (b.cfg.weights, b.cfg.kv_cache):
                    continue
                ttfts.append((pair_ttft_s(problem, a, b, ctx.hw.intra) * 1e3, a, b))
        fastest = min(ttfts, key=lambda t: t[0])
        if fastest[0] > slo.ttft_ms:
            t, a, b = fastest
            facts.append(_fact("slo.ttft_ms", f"the fastest pair, {_worker(a.cfg)} prefill and {_worker(b.cfg)} decode, "
                               f"has TTFT {t:.1f} ms with its KV over NVLink (lone prompt + transfer + hand-off "
                               f"{ctx.eff.kv_handoff_s * 1e3:g} ms + a decode step) > slo.ttft_ms {slo.ttft_ms:g}",
                               t, slo.ttft_ms, "ms"))
        elif not facts:
            ok = [(a, b) for t, a, b in ttfts if t <= slo.ttft_ms]
            g2 = min(_fewest([a], need)[0] + _fewest([b], need)[0] for a, b in ok)
            if g2 > total:
                facts.append(_fact("slo.ttft_ms+gpu_count", f"the {len(ok)} pairs whose TTFT can meet slo.ttft_ms "
                                   f"{slo.ttft_ms:g} need at least {g2} GPUs to carry {wl.request_rate:g} req/s > the "
                                   f"cluster's {total}", g2, total, "GPUs"))
    return facts


# A limit relaxed from a bound is tried at these multiples of the bound's value, smallest first: the
# bound is the best single worker (or pair) at its lightest load, and carrying the rate may take more.
RELAX_STEPS = (1.0, 1.25, 1.5, 2.0, 3.0, 4.0)


def disagg_repairs(problem: Problem, bounds: list[dict[str, Any]], time_limit_s: float = 10.0) -> list[dict[str, Any]]:
    """Changes that lift the bounds, each verified by the disaggregated search on the changed instance."""
    inst, cl = problem.instance, problem.instance.cluster
    out = []
    for b in bounds:
        rule = b["rule"]
        if rule in ("gpu_count", "slo.ttft_ms+gpu_count"):
            nodes = math.ceil(b["value"] / cl.gpus_per_node)
            out.append(_attempt(problem, f"cluster.nodes = {nodes} ({nodes * cl.gpus_per_node} GPUs)",
                                {"cluster": cl.model_copy(update={"nodes": nodes})}, time_limit_s))
        elif rule in ("decode.slo.tpot_ms", "slo.ttft_ms"):
            key = "tpot_ms" if "tpot" in rule else "ttft_ms"
            tried = None
            for step in RELAX_STEPS:
                limit = math.ceil(b["value"] * step * 10) / 10
                tried = _attempt(problem, f"slo.{key} = {limit:g} ms",
                                 {"slo": inst.slo.model_copy(update={key: limit})}, time_limit_s)
                if tried["verified"]:
                    break
            out.append(tried)
    return out


def _attempt(problem: Problem, change: str, update: dict[str, Any], time_limit_s: float) -> dict[str, Any]:
    relaxed = build_problem(problem.instance.model_copy(update=update, deep=True), problem.file)
    res = plan_disagg(relaxed, time_limit_s=time_limit_s)
    if res.evaluation is None:
        return {"change": change, "kind": "disaggregated", "verified": False, "result": f"still {res.status}"}
    m = res.evaluation.metrics
    return {"change": change, "kind": "disaggregated", "verified": True,
            "result": (f"feasible, for example: {res.evaluation.placement.label()}; {m.gpus} GPUs, TTFT "
                       f"{m.ttft_ms:,.0f} ms, TPOT {m.tpot_ms:.1f} ms")}

"""The best disaggregated plan: one prefill worker layout, one decode worker layout, how many of each (CP-SAT).

Designs are measured with the exact physics (:mod:`solver.physics.disagg` through the verifier):

* a **prefill design** is a worker layout (tp, pp, precision; even layer split) whose memory holds
  the prompts of one prefill step, with its capacity (prompts/s) and a lone prompt's latency;
* a **decode design** is a worker layout and the largest sequences-per-worker level (RATE_LEVELS)
  whose memory holds them and whose TPOT meets ``slo.tpot_ms``, with its capacity (requests/s).

The model picks one of each (same weights and KV-cache precision: the KV moves between them) and
counts ``x``, ``y`` of workers: ``x`` prefill capacities and ``y`` decode capacities carry the rate,
the GPUs fit the cluster, and the pair's TTFT (prefill + transfer + a decode step) meets
``slo.ttft_ms``, with the transfer over NVLink only when both pools fit one node. Integer tables
round capacities down and latencies up (a model solution always passes the verifier's physics).
Objectives: the fewest GPUs (every throughput and cost objective at a rate: the tokens served are
the rate's), ``min_tpot`` or ``min_ttft``; ties, lexicographically, by GPUs, TPOT, TTFT, then the
most spare capacity. Each answer is verified (and simulated for percentile targets); a refuted one
is cut and the model solved again, up to ``simulation.max_candidates`` times.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from dataclasses import dataclass, field

from ortools.sat.python import cp_model

from ..physics import Config, even_split, packs_in_nodes, replica_seq_cap
from ..physics.disagg import (
    DecodeFigures,
    PrefillFigures,
    decode_figures,
    decode_step_model,
    disagg_ttft_s,
    kv_transfer_s,
    prefill_worker,
)
from ..problem import RATE_LEVELS, Problem
from ..verify import (
    POOL_RULES_RESTATED,
    DisaggEvaluation,
    DisaggPlacement,
    Placement,
    evaluate,
    evaluate_disagg,
)
from .params import solve_lexicographic

RATE_SCALE = 10_000  # capacity units per req/s
TIME_SCALE = 1_000_000  # units per second (microseconds)


@dataclass(frozen=True)
class PoolDesign:
    """One worker layout of a pool with its figures."""

    cfg: Config  # dp = 1
    layers: tuple[int, ...]
    batch: int  # prefill: prompts per step; decode: sequences per worker
    capacity_per_s: float
    latency_s: float  # prefill: a lone prompt; decode: TPOT

    @property
    def gpus(self) -> int:
        return self.cfg.replica_gpus


@dataclass
class DisaggResult:
    """The search's answer: the verified plan (or None) and what was tried."""

    status: str  # optimal, feasible, infeasible, unknown, skipped
    evaluation: DisaggEvaluation | None = None
    note: str = ""
    prefill_designs: int = 0
    decode_designs: int = 0
    refuted: list[str] = field(default_factory=list)
    # The designs measured (for a proof that bounds them all without measuring them again).
    designs: tuple[list[PoolDesign], list[PoolDesign]] | None = field(default=None, repr=False)


def _pool_fits(problem: Problem, placement: Placement) -> bool:
    ev = evaluate(problem, placement, simulate=False)
    return all(r.passed for r in ev.requirements if not r.rule.startswith(POOL_RULES_RESTATED))


def pool_configs(problem: Problem) -> list[tuple[Config, tuple[int, ...]]]:
    """Every worker layout a pool may take (one worker: dp 1), with its even layer split."""
    s, inst, a = problem.search, problem.instance, problem.arch
    out = []
    hw = problem.ctx.hw
    for tp, pp, adp in itertools.product(s.tp, s.pp, s.pool_attention_dp):
        # A worker with attention DP: adp ranks of tp GPUs per stage (the pool rules check the engine's layout).
        k = tp * pp * adp
        if pp > a.layers or not packs_in_nodes(k, hw.gpus_per_node) or k > hw.total_gpus:
            continue
        for ep, w, kv in itertools.product(s.ep, inst.precision.weights, inst.precision.kv_cache):
            out.append((Config(tp, pp, 1, ep, w, kv, adp), tuple(even_split(a.layers, pp))))
    return out


def pair_ttft_s(problem: Problem, p: PoolDesign, d: PoolDesign, link) -> float:
    """TTFT without queueing of a prefill and a decode design, the KV crossing ``link``: the designs'
    own figures (a lone prompt's latency, TPOT at the decode design's batch)."""
    ctx = problem.ctx
    return disagg_ttft_s(ctx, PrefillFigures(p.latency_s, p.capacity_per_s, p.batch),
                         DecodeFigures(d.batch, d.latency_s, d.capacity_per_s),
                         kv_transfer_s(ctx, p.cfg, d.cfg, problem.instance.workload.input_tokens, link))


def prefill_designs(problem: Problem) -> list[PoolDesign]:
    """Every prefill worker layout that holds one step's prompts, with its capacity and latency."""
    wl, lim = problem.instance.workload, problem.instance.limits
    out = []
    for cfg, layers in pool_configs(problem):
        pf = prefill_worker(problem.ctx, cfg, layers, wl.input_tokens, lim.max_num_batched_tokens)
        if (pf.prompts_per_step > replica_seq_cap(lim.max_num_seqs, cfg)
                or not _pool_fits(problem, Placement(cfg, pf.prompts_per_step, layers))):
            continue
        out.append(PoolDesign(cfg, layers, pf.prompts_per_step, pf.capacity_per_s, pf.latency_s))
    return out


def decode_designs(problem: Problem) -> list[PoolDesign]:
    """Every decode worker layout at its largest batch within memory and ``slo.tpot_ms``."""
    inst = problem.instance
    wl, lim, tpot_limit = inst.workload, inst.limits, inst.slo.tpot_ms
    out = []
    for cfg, layers in pool_configs(problem):
        model = decode_step_model(problem.ctx, cfg, layers)
        figures = []
        for b in (lv for lv in RATE_LEVELS if lv <= replica_seq_cap(lim.max_num_seqs, cfg)):
            dec = decode_figures(model, b, wl.input_tokens, wl.output_tokens)
            if tpot_limit is not None and dec.tpot_s * 1e3 > tpot_limit:
                break  # TPOT grows with the batch
            figures.append(dec)
        # The pool's rules (memory, the batch cap; the layout's whatever the batch) only tighten as the
        # batch grows: the largest level that passes, by bisection.
        lo, hi = 0, len(figures)  # figures[:lo] pass, figures[hi:] fail
        if figures and not _pool_fits(problem, Placement(cfg, figures[0].batch, layers)):
            hi = 0  # a layout the pool rules refuse at any batch (most of the space)
        while lo < hi:
            mid = (lo + hi) // 2
            if _pool_fits(problem, Placement(cfg, figures[mid].batch, layers)):
                lo = mid + 1
            else:
                hi = mid
        if lo:
            dec = figures[lo - 1]
            out.append(PoolDesign(cfg, layers, dec.batch, dec.capacity_per_s, dec.tpot_s))
    return out


def plan_disagg(problem: Problem, time_limit_s: float = 10.0, seed: int = 0) -> DisaggResult:
    """The best verified disaggregated plan of ``problem`` (see the module docstring)."""
    inst = problem.instance
    if inst.workload.mode != "request_rate":
        return DisaggResult("skipped", note="disaggregated plans are searched for request-rate workloads")
    if not problem.pins.is_empty():
        return DisaggResult("skipped", note="the instance pins an aggregated strategy; no disaggregated search")
    pre, dec = prefill_designs(problem), decode_designs(problem)
    result = DisaggResult("infeasible", prefill_designs=len(pre), decode_designs=len(dec), designs=(pre, dec))
    if not pre or not dec:
        result.note = (f"no {'prefill' if not pre else 'decode'} worker layout fits the GPU's memory"
                       + ("" if pre else "") + (" within slo.tpot_ms" if pre and inst.slo.tpot_ms else ""))
        return result
    cuts: list[tuple[int, int, int, int]] = []
    rounds = inst.simulation.max_candidates  # plans simulated and cut at most, as in the aggregated search
    for _ in range(rounds):
        found = _solve(problem, pre, dec, cuts, time_limit_s, seed)
        if found is None:
            result.note = result.note or "no pair of worker layouts and counts meets the rate, the SLOs and the GPUs"
            return result
        (i, x, j, y), status = found
        p, d = pre[i], dec[j]
        placement = DisaggPlacement(Placement(dataclasses.replace(p.cfg, dp=x), p.batch, p.layers),
                                    Placement(dataclasses.replace(d.cfg, dp=y), d.batch, d.layers))
        ev = evaluate_disagg(problem, placement, simulate=inst.simulation.enabled)
        if ev.feasible:
            result.status, result.evaluation = status, ev
            return result
        result.refuted.append(f"{placement.label()}: {', '.join(r.rule for r in ev.failed())}")
        cuts.append((i, x, j, y))
    result.status = "unknown"
    result.note = f"{rounds} plans refuted by verification (simulation.max_candidates); none offered"
    return result


def _solve(problem: Problem, pre: list[PoolDesign], dec: list[PoolDesign], cuts, time_limit_s: float, seed: int):
    inst, ctx = problem.instance, problem.ctx
    hw, wl, slo = ctx.hw, inst.workload, inst.slo
    need = math.ceil(wl.request_rate * RATE_SCALE)
    total = hw.total_gpus
    m = cp_model.CpModel()
    u = [m.new_bool_var(f"p{i}") for i in range(len(pre))]
    v = [m.new_bool_var(f"d{j}") for j in range(len(dec))]
    m.add_exactly_one(u)
    m.add_exactly_one(v)
    xs, ys = [], []
    for i, p in enumerate(pre):
        cap = math.floor(p.capacity_per_s * RATE_SCALE)
        hi = min(total // p.gpus, math.ceil(need / cap) if cap else 0)
        x = m.new_int_var(0, hi, f"x{i}")
        m.add(x <= hi * u[i])
        xs.append((x, cap))
    for j, d in enumerate(dec):
        cap = math.floor(d.capacity_per_s * RATE_SCALE)
        hi = min(total // d.gpus, math.ceil(need / cap) if cap else 0)
        y = m.new_int_var(0, hi, f"y{j}")
        m.add(y <= hi * v[j])
        ys.append((y, cap))
    m.add(sum(c * x for x, c in xs) >= need)
    m.add(sum(c * y for y, c in ys) >= need)
    gpus = sum(p.gpus * x for p, (x, _) in zip(pre, xs, strict=True)) + sum(
        d.gpus * y for d, (y, _) in zip(dec, ys, strict=True))
    m.add(gpus <= total)
    one_node = m.new_bool_var("one_node")  # both pools in one node: the KV crosses NVLink
    m.add(gpus <= hw.gpus_per_node).only_enforce_if(one_node)
    # Pair TTFT (microseconds, rounded up), NVLink or network.
    ttft_terms = []
    for i, p in enumerate(pre):
        for j, d in enumerate(dec):
            if (p.cfg.weights, p.cfg.kv_cache) != (d.cfg.weights, d.cfg.kv_cache):
                m.add_bool_or([u[i].Not(), v[j].Not()])
                continue
            near = math.ceil(pair_ttft_s(problem, p, d, hw.intra) * TIME_SCALE)
            far = math.ceil(pair_ttft_s(problem, p, d, hw.inter) * TIME_SCALE)
            limit = None if slo.ttft_ms is None else math.floor(slo.ttft_ms * 1e-3 * TIME_SCALE)
            both = m.new_bool_var(f"pair{i}_{j}")
            m.add_bool_and([u[i], v[j]]).only_enforce_if(both)
            m.add_bool_or([u[i].Not(), v[j].Not(), both])
            if limit is not None and near > limit:
                m.add(both == 0)
                continue
            if limit is not None and far > limit:
                m.add_implication(both, one_node)
            ttft_terms.append((both, near, far))
    ttft = m.new_int_var(0, max((f for _, _, f in ttft_terms), default=0), "ttft")
    for both, near, far in ttft_terms:
        m.add(ttft >= near).only_enforce_if(both)
        m.add(ttft >= far).only_enforce_if([both, one_node.Not()])
    for k, (ci, cx, cj, cy) in enumerate(cuts):
        same = [u[ci], v[cj]]
        for var, val, tag in ((xs[ci][0], cx, "x"), (ys[cj][0], cy, "y")):
            lit = m.new_bool_var(f"cut{k}{tag}")
            m.add(var == val).only_enforce_if(lit)
            m.add(var != val).only_enforce_if(lit.Not())
            same.append(lit)
        m.add_bool_or([s.Not() for s in same])
    tpot = sum(math.ceil(d.latency_s * TIME_SCALE) * v[j] for j, d in enumerate(dec))
    spare = sum(c * x for x, c in xs) + sum(c * y for y, c in ys)
    chain = {"min_tpot": (tpot, gpus, ttft), "min_ttft": (ttft, gpus, tpot)}.get(inst.objective, (gpus, tpot, ttft))
    def read(solver):
        i = next(k for k, b in enumerate(u) if solver.value(b))
        j = next(k for k, b in enumerate(v) if solver.value(b))
        return (i, solver.value(xs[i][0]), j, solver.value(ys[j][0]))

    found = solve_lexicographic(m, [(e, 1) for e in chain] + [(spare, -1)], read,
                                [x for x, _ in xs] + [y for y, _ in ys] + u + v, time_limit_s=time_limit_s, seed=seed)
    if found is None:
        return None
    status, values = found
    return values, status


def disagg_placement(problem: Problem, prefill: dict, decode: dict, weights: str, kv_cache: str) -> DisaggPlacement:
    """A proposed layout (workers, tp, pp, ep, attention_dp per pool) completed as the search would run it.

    Even layer splits; prompts per prefill step from the token budget; the decode batch the
    load's operating point (the smallest rate level whose pool capacity carries the rate, else
    the engine's cap).
    """
    inst, a = problem.instance, problem.arch
    wl, lim = inst.workload, inst.limits
    p = Config(prefill["tp"], prefill["pp"], prefill["workers"], prefill["ep"], weights, kv_cache,
               prefill.get("attention_dp", 1))
    d = Config(decode["tp"], decode["pp"], decode["workers"], decode["ep"], weights, kv_cache,
               decode.get("attention_dp", 1))
    players, dlayers = tuple(even_split(a.layers, p.pp)), tuple(even_split(a.layers, d.pp))
    one = dataclasses.replace(p, dp=1)
    per_step = prefill_worker(problem.ctx, one, players, wl.input_tokens, lim.max_num_batched_tokens).prompts_per_step
    model = decode_step_model(problem.ctx, dataclasses.replace(d, dp=1), dlayers)
    cap = replica_seq_cap(lim.max_num_seqs, d)
    levels = [lv for lv in RATE_LEVELS if lv <= cap] or [cap]
    batch = next((b for b in levels if d.dp * decode_figures(model, b, wl.input_tokens, wl.output_tokens)
                  .capacity_per_s >= wl.request_rate), levels[-1])
    return DisaggPlacement(Placement(p, per_step, players), Placement(d, batch, dlayers))

"""Solver-independent verification: any placement against every rule, with the exact physics.

This module and :mod:`solver.physics` are the specification CP-SAT must agree with; neither imports
ortools. A plan from the solver that fails here is a bug, never a result.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from .engines import engine
from .input.schema import WEIGHT_DTYPES
from .physics import (
    Config,
    GiB,
    Metrics,
    attention_dp_packs,
    compute_dtype,
    even_split,
    fp8_blocks_whole,
    kv_cache_tokens,
    kv_dtype_supported,
    max_batch_that_fits,
    moe_tp,
    packs_in_nodes,
    peak_tflops,
    redundant_ok,
    replica_seq_cap,
    serving_metrics,
    stage_coefficients,
    stage_counts,
    weight_dtype_supported,
)
from .physics.disagg import (
    decode_figures,
    decode_step_model,
    disagg_ttft_s,
    kv_transfer_s,
    prefill_worker,
    transfer_link,
)
from .problem import BATCH_LEVELS, RATE_LEVELS, Problem
from .simulate.disagg import simulate_disagg
from .simulate.plan import simulate_plan
from .simulate.stats import SimulationResult


@dataclass(frozen=True)
class Placement:
    """A whole plan: configuration, sequences per replica, decoder layers per stage."""

    cfg: Config
    batch: int
    layers_per_stage: tuple[int, ...]

    def strategy(self, max_num_seqs: int | None = None) -> dict:
        """The strategy fields; ``max_num_seqs`` is the engine's cap when it differs from the batch."""
        c = self.cfg
        out = {"tp": c.tp, "pp": c.pp, "dp": c.dp, "ep": c.ep, "attention_dp": c.adp, "weights": c.weights,
               "kv_cache": c.kv_cache, "max_num_seqs": self.batch if max_num_seqs is None else max_num_seqs}
        if c.redundant:
            out["redundant_experts"] = c.redundant
        return out


@dataclass(frozen=True)
class Requirement:
    """One rule checked against a placement: its value, limit, slack and verdict."""

    rule: str
    statement: str
    value: float | str
    limit: float | str
    unit: str
    passed: bool
    slack: float | None = None  # limit - value for an upper bound, value - limit for a lower bound


@dataclass
class StageReport:
    """Per-GPU memory of one stage (every GPU of a stage holds the same) and its times."""

    index: int
    layers: tuple[int, int]  # first and last decoder layer (inclusive)
    memory_GiB: dict[str, float]
    decode_ms: float
    prefill_ms: float


@dataclass
class Evaluation:
    """The verdict on a placement."""

    placement: Placement
    requirements: list[Requirement]
    stages: list[StageReport]
    metrics: Metrics
    max_concurrency: int
    capacity_GiB: float
    max_num_seqs: int = 0  # the engine's cap per replica (the batch, or headroom above it at a rate)
    # The KV cache in tokens as the engine logs it at start-up, per replica (vLLM "GPU KV cache size").
    kv_cache_tokens: int = 0
    simulation: SimulationResult | None = None
    notes: list[str] = field(default_factory=list)

    def strategy(self) -> dict:
        """The plan's strategy with the engine's max_num_seqs."""
        return self.placement.strategy(self.max_num_seqs)

    @property
    def feasible(self) -> bool:
        return all(r.passed for r in self.requirements)

    def failed(self) -> list[Requirement]:
        return [r for r in self.requirements if not r.passed]


# A value may pass its limit by this relative amount: float noise from summing the same physics
# in another order, never a physical margin. Every pre-filter of the search uses the same one
# (solver.search.options), so no candidate the verifier accepts is filtered out before it.
REL_TOLERANCE = 1e-9


def _upper(rule: str, statement: str, value: float, limit: float, unit: str,
           tol: float = REL_TOLERANCE) -> Requirement:
    return Requirement(rule, statement, value, limit, unit, value <= limit * (1 + tol), limit - value)


def _lower(rule: str, statement: str, value: float, limit: float, unit: str,
           tol: float = REL_TOLERANCE) -> Requirement:
    return Requirement(rule, statement, value, limit, unit, value >= limit * (1 - tol), value - limit)


def static_requirements(problem: Problem, cfg: Config, batch: int, layers: tuple[int, ...] | None) -> list[Requirement]:
    """Rules on the configuration alone, stated with their numbers."""
    a, hw, inst, pins = problem.arch, problem.ctx.hw, problem.instance, problem.pins
    gpu = hw.gpu
    rate_pin = inst.workload.mode == "request_rate" and pins.max_num_seqs is not None
    out: list[Requirement] = []
    adp = f" x attention_dp {cfg.adp}" if cfg.adp > 1 else ""
    out.append(_upper("gpu_count", f"tp x pp x dp{adp and ' x attention_dp'} = {cfg.tp} x {cfg.pp} x {cfg.dp}"
                      f"{adp and f' x {cfg.adp}'} = {cfg.gpus} GPUs needed; "
                      f"the cluster has {hw.total_gpus} ({hw.nodes} node(s) x {hw.gpus_per_node})",
                      cfg.gpus, hw.total_gpus, "GPUs"))
    ok = cfg.tp <= hw.gpus_per_node and hw.gpus_per_node % cfg.tp == 0
    out.append(Requirement("tp_within_node", f"a TP group of {cfg.tp} must sit inside one node of "
                           f"{hw.gpus_per_node} GPUs (tp divides GPUs per node)", cfg.tp, hw.gpus_per_node,
                           "GPUs", ok))
    kv_ok = a.is_mla or a.kv_heads % cfg.tp == 0 or cfg.tp % a.kv_heads == 0
    ok = a.heads % cfg.tp == 0 and kv_ok
    kv_txt = "" if a.is_mla else f" and {a.kv_heads} KV heads (split or replicate evenly)"
    out.append(Requirement("heads_divisible", f"tp = {cfg.tp} must divide {a.heads} attention heads{kv_txt}",
                           cfg.tp, a.heads, "heads", ok))
    if a.is_moe:
        out.append(Requirement("experts_divisible", f"ep = {cfg.ep} must divide {a.experts} routed experts",
                               cfg.ep, a.experts, "experts", a.experts % cfg.ep == 0))
    eng = engine(problem.search.engine)
    if cfg.ep > 1 or a.is_moe:
        ok, rule = eng.ep_layout_ok(a.is_moe, cfg.moe_group, cfg.ep), eng.EP_LAYOUT_RULE
        group = f"tp x attention_dp = {cfg.moe_group}" if cfg.adp > 1 else f"tp = {cfg.tp}"
        out.append(Requirement("ep_layout", f"ep = {cfg.ep} with {group}: {rule}", cfg.ep, cfg.moe_group, "ranks", ok))
    if cfg.adp > 1:
        ok = eng.attention_dp_ok(a.is_moe, cfg.tp, cfg.adp) and attention_dp_packs(cfg, hw.gpus_per_node)
        out.append(Requirement("attention_dp_layout", f"attention_dp = {cfg.adp} with tp = {cfg.tp} on {eng.NAME}: "
                               f"{eng.ATTENTION_DP_RULE}; the tp x attention_dp = {cfg.moe_group} GPUs sharing the "
                               f"experts divide a node of {hw.gpus_per_node} or fill whole nodes",
                               cfg.adp, cfg.tp, "ranks", ok))
    if cfg.redundant:
        out.append(Requirement("redundant_layout", f"{cfg.redundant} redundant experts must divide over ep = {cfg.ep} "
                               "EP ranks (every rank the same slots; replicas need expert parallelism)",
                               cfg.redundant, cfg.ep, "experts", redundant_ok(cfg)))
    if a.fp8_block and a.checkpoint_dtype == "fp8" and cfg.weights == "fp8":
        parts = f"moe_intermediate {a.moe_intermediate} / moe_tp {moe_tp(cfg)}" if a.is_moe else ""
        dense = f"intermediate {a.intermediate} / tp {cfg.tp}" if a.intermediate and "dense" in a.layer_kinds() else ""
        out.append(Requirement("fp8_block_divisible", f"block-FP8 checkpoint ({a.fp8_block} x {a.fp8_block} blocks): "
                               f"{' and '.join(x for x in (parts, dense) if x)} must be multiples of {a.fp8_block}",
                               moe_tp(cfg), a.fp8_block, "ranks", fp8_blocks_whole(a, cfg)))
    out.append(_upper("pp_within_layers", f"pp = {cfg.pp} stages need at least one of {a.layers} layers each",
                      cfg.pp, a.layers, "stages"))
    allowed_w = inst.precision.weights
    out.append(Requirement("weights_allowed", f"weights {cfg.weights} must be among the allowed {allowed_w}",
                           cfg.weights, ",".join(allowed_w), "", cfg.weights in allowed_w))
    allowed_kv = inst.precision.kv_cache
    out.append(Requirement("kv_cache_allowed", f"KV cache {cfg.kv_cache} must be among the allowed {allowed_kv}",
                           cfg.kv_cache, ",".join(allowed_kv), "", cfg.kv_cache in allowed_kv))
    cd = compute_dtype(gpu, cfg.weights)
    out.append(Requirement("weights_supported", f"{gpu.name} must compute {cd.upper()} natively for {cfg.weights} "
                           f"weights (peak {peak_tflops(gpu, cd) or 'none'} TFLOP/s)", cfg.weights, gpu.name, "",
                           weight_dtype_supported(gpu, cfg.weights)))
    out.append(Requirement("kv_cache_supported", f"{gpu.name} ({gpu.family}) must support a {cfg.kv_cache} KV cache",
                           cfg.kv_cache, gpu.family, "", kv_dtype_supported(gpu, cfg.kv_cache)))
    cap_seqs = max(batch, pins.max_num_seqs) if rate_pin else batch
    cap = replica_seq_cap(inst.limits.max_num_seqs, cfg)
    per_rank = f" x {cfg.adp} attention-DP ranks" if cfg.adp > 1 else ""
    out.append(_upper("batch_cap", f"max_num_seqs = {cap_seqs} sequences per replica within the engine cap "
                      f"{inst.limits.max_num_seqs} (limits.max_num_seqs){per_rank}", cap_seqs, cap, "seqs"))
    for key in ("tp", "pp", "dp", "ep", "attention_dp", "redundant_experts", "weights", "kv_cache", "max_num_seqs"):
        pinned = getattr(pins, key)
        if pinned is None:
            continue
        value = (batch if key == "max_num_seqs" else cfg.adp if key == "attention_dp"
                 else cfg.redundant if key == "redundant_experts" else getattr(cfg, key))
        if key == "max_num_seqs" and inst.workload.mode == "request_rate":
            # At a rate the pin is the engine's cap; the load sets the batch under it.
            out.append(Requirement("pin.max_num_seqs", f"the operating batch {batch} must stay within the pinned "
                                   f"max_num_seqs {pinned}", batch, pinned, "seqs", batch <= pinned, pinned - batch))
            continue
        out.append(Requirement(f"pin.{key}", f"{key} is pinned to {pinned}", value, pinned, "", value == pinned))
    if pins.layers_per_stage is not None and layers is not None:
        out.append(Requirement("pin.layers_per_stage", f"layers per stage pinned to {list(pins.layers_per_stage)}",
                               "+".join(map(str, layers)), "+".join(map(str, pins.layers_per_stage)), "",
                               tuple(layers) == tuple(pins.layers_per_stage)))
    if not problem.search.uneven_layers and layers is not None:
        even = even_split(a.layers, cfg.pp)
        out.append(Requirement("search.uneven_layers", f"uneven_layers is false: the split must be {even}",
                               "+".join(map(str, layers)), "+".join(map(str, even)), "", list(layers) == even))
    return out


def evaluate(problem: Problem, placement: Placement, simulate: bool | None = None) -> Evaluation:
    """Check ``placement`` against every rule and predict its metrics, with floats from physics.

    ``simulate``: run the engine simulator for the latency distribution and check the percentile
    targets (True); only when there are percentile targets (None); never, leaving the percentile
    targets unchecked (False: the linear rules alone, as CP-SAT sees them).
    """
    ctx, inst = problem.ctx, problem.instance
    a, cfg, batch = ctx.arch, placement.cfg, placement.batch
    layers = tuple(placement.layers_per_stage)
    reqs = static_requirements(problem, cfg, batch, layers)
    valid_split = len(layers) == cfg.pp and sum(layers) == a.layers and all(n >= 1 for n in layers)
    if not valid_split:
        reqs.append(Requirement("layers_cover", f"the split {list(layers)} must give each of {cfg.pp} stages at "
                                f"least one layer and cover all {a.layers}", sum(layers), a.layers, "layers", False))
        layers = tuple(even_split(a.layers, cfg.pp)) if cfg.pp <= a.layers else (a.layers,) + (0,) * (cfg.pp - 1)
    coef = stage_coefficients(ctx, cfg, batch)
    counts = stage_counts(a.layer_kinds(), list(layers))
    values = [coef.stage_values(c, s) for s, c in enumerate(counts)]
    cap = ctx.capacity_bytes
    cap_GiB = cap / GiB
    stages: list[StageReport] = []
    start = 0
    for s, v in enumerate(values):
        mem = {k: v[k] / GiB for k in ("weights", "kv_cache", "activations", "overhead")}
        mem["total"] = v["memory"] / GiB
        mem["capacity"] = cap_GiB
        stages.append(StageReport(s, (start, start + layers[s] - 1), mem, v["decode_s"] * 1e3, v["pf_lat_s"] * 1e3))
        start += layers[s]
        extras = []
        if s == 0:
            extras.append("embedding")
        if s == cfg.pp - 1:
            extras.append("LM head")
        with_extra = f" + {' + '.join(extras)}" if extras else ""
        reqs.append(_upper(
            f"mem_cap[stage={s}]",
            f"stage {s} ({layers[s]} layers{with_extra}) needs {mem['total']:.2f} GiB per GPU: weights "
            f"{mem['weights']:.2f} + KV cache {mem['kv_cache']:.2f} + activations {mem['activations']:.2f} + overhead "
            f"{mem['overhead']:.2f}; usable {cap_GiB:.2f} GiB ({ctx.device_GiB:.2f} GiB the engine sees x "
            f"{inst.limits.memory_utilization:g})",
            mem["total"], cap_GiB, "GiB"))
    metrics = serving_metrics(coef, values, inst.workload)
    slo, wl = inst.slo, inst.workload
    if slo.ttft_ms is not None:
        reqs.append(_upper("slo.ttft_ms", f"TTFT {metrics.ttft_ms:.1f} ms <= {slo.ttft_ms:g} ms", metrics.ttft_ms,
                           slo.ttft_ms, "ms"))
    if slo.tpot_ms is not None:
        reqs.append(_upper("slo.tpot_ms", f"TPOT {metrics.tpot_ms:.2f} ms <= {slo.tpot_ms:g} ms at {batch} "
                           f"sequences per replica", metrics.tpot_ms, slo.tpot_ms, "ms"))
    if wl.mode == "request_rate":
        reqs.append(_lower("workload.request_rate", f"sustainable {metrics.max_request_rate:.2f} req/s >= the "
                           f"workload's {wl.request_rate:g} req/s", metrics.max_request_rate, wl.request_rate, "req/s"))
    if slo.min_request_rate is not None:
        reqs.append(_lower("slo.min_request_rate", f"sustainable {metrics.max_request_rate:.2f} req/s >= "
                           f"{slo.min_request_rate:g}", metrics.max_request_rate, slo.min_request_rate, "req/s"))
    if slo.min_output_tokens_per_s is not None:
        reqs.append(_lower("slo.min_output_tokens_per_s", f"{metrics.output_tokens_per_s:.0f} output tokens/s >= "
                           f"{slo.min_output_tokens_per_s:g}", metrics.output_tokens_per_s,
                           slo.min_output_tokens_per_s, "tok/s"))
    if slo.min_output_tokens_per_s_per_gpu is not None:
        reqs.append(_lower("slo.min_output_tokens_per_s_per_gpu", f"{metrics.output_tokens_per_s_per_gpu:.0f} output "
                           f"tokens/s per GPU >= {slo.min_output_tokens_per_s_per_gpu:g}",
                           metrics.output_tokens_per_s_per_gpu, slo.min_output_tokens_per_s_per_gpu, "tok/s/GPU"))
    max_conc = _max_concurrency(problem, cfg, layers)
    cap_seqs = engine_max_num_seqs(problem, cfg, layers, batch)
    ev = Evaluation(placement, reqs, stages, metrics, max_conc, cap_GiB, cap_seqs,
                    kv_cache_tokens=kv_cache_tokens(ctx, cfg, layers))
    if simulate or (simulate is None and inst.slo.percentile_targets()):
        if valid_split and inst.simulation.enabled:
            ev.simulation = simulate_plan(problem, cfg, layers, cap_seqs)
        reqs.extend(percentile_requirements(problem, ev.simulation))
    return ev


# Which distribution and statistic each percentile target reads.
_PERCENTILE_FIELDS = {
    "slo.ttft_p50_ms": ("ttft_ms", "p50", "TTFT"), "slo.ttft_p90_ms": ("ttft_ms", "p90", "TTFT"),
    "slo.ttft_p99_ms": ("ttft_ms", "p99", "TTFT"), "slo.tpot_p50_ms": ("tpot_ms", "p50", "TPOT"),
    "slo.tpot_p90_ms": ("tpot_ms", "p90", "TPOT"), "slo.tpot_p99_ms": ("tpot_ms", "p99", "TPOT"),
    "slo.e2e_p99_ms": ("e2e_ms", "p99", "end-to-end latency"),
}


def percentile_value(sim: SimulationResult, rule: str) -> float:
    """The simulated statistic a percentile target bounds (ms)."""
    dist, stat, _ = _PERCENTILE_FIELDS[rule]
    return getattr(getattr(sim, dist), stat)


def percentile_requirements(problem: Problem, sim: SimulationResult | None) -> list[Requirement]:
    """The percentile targets against a simulation; without one they are unknown, and fail."""
    out = []
    sim_cfg = problem.instance.simulation
    for rule, limit in problem.instance.slo.percentile_targets().items():
        _, stat, what = _PERCENTILE_FIELDS[rule]
        if sim is None:
            out.append(Requirement(rule, f"{stat} {what} <= {limit:g} ms needs a simulation (the split is not "
                                   "valid, or simulation is disabled)", "n/a", limit, "ms", False))
            continue
        value = percentile_value(sim, rule)
        ok = value <= limit * (1 + REL_TOLERANCE) and sim.rejected == 0
        why = f"; {sim.rejected} request(s) never fit the KV cache" if sim.rejected else ""
        out.append(Requirement(rule, f"simulated {stat} {what} {value:,.1f} ms <= {limit:g} ms ({sim.requests} "
                               f"requests, seed {sim_cfg.seed}){why}", value, limit, "ms", ok, limit - value))
    return out


def engine_max_num_seqs(problem: Problem, cfg: Config, layers: tuple[int, ...], batch: int) -> int:
    """The engine's max_num_seqs for a plan.

    Its batch, except at a request rate: there the batch is the operating point the load sets, and
    the cap leaves headroom for bursts, the pinned value or else the largest batch the KV cache
    holds within limits.max_num_seqs (never below the operating batch).
    """
    if problem.instance.workload.mode != "request_rate":
        return batch
    if problem.pins.max_num_seqs is not None:
        return max(batch, problem.pins.max_num_seqs)
    fit = max_batch_that_fits(problem.ctx, cfg, list(layers)) if sum(layers) == problem.arch.layers else batch
    return max(batch, min(fit, replica_seq_cap(problem.instance.limits.max_num_seqs, cfg)))


def _max_concurrency(problem: Problem, cfg: Config, layers: tuple[int, ...]) -> int:
    """Sequences of input+output tokens whose KV cache fits the deployment (engine cap applied per replica)."""
    fit = max_batch_that_fits(problem.ctx, cfg, list(layers))
    return min(fit, replica_seq_cap(problem.instance.limits.max_num_seqs, cfg)) * cfg.dp


# ---------------------------------------------------------------------------------------------
# Completing a partial strategy (for --strategy)
# ---------------------------------------------------------------------------------------------


def complete_strategy(problem: Problem) -> tuple[Placement, dict[str, str]]:
    """A whole placement from the pinned fields, with the defaults used for the rest (stated)."""
    pins, a, inst = problem.pins, problem.arch, problem.instance
    filled: dict[str, str] = {}
    tp = pins.tp or 1
    pp = pins.pp or (len(pins.layers_per_stage) if pins.layers_per_stage else 1)
    dp = pins.dp or 1
    ep = pins.ep or 1
    adp = pins.attention_dp or 1
    red = pins.redundant_experts or 0
    for key, val, given in (("tp", tp, pins.tp), ("pp", pp, pins.pp), ("dp", dp, pins.dp), ("ep", ep, pins.ep),
                            ("attention_dp", adp, pins.attention_dp if a.is_moe else 1)):
        if given is None and not (key == "pp" and pins.layers_per_stage):
            filled[key] = f"{val} (default)"
    weights = pins.weights or _widest(inst.precision.weights)
    kv = pins.kv_cache or _widest(inst.precision.kv_cache)
    if pins.weights is None:
        filled["weights"] = f"{weights} (widest allowed precision)"
    if pins.kv_cache is None:
        filled["kv_cache"] = f"{kv} (widest allowed precision)"
    cfg = Config(tp, pp, dp, ep, weights, kv, adp, red)
    if pins.layers_per_stage:
        layers = tuple(pins.layers_per_stage)
    else:
        layers = tuple(even_split(a.layers, pp)) if pp <= a.layers else tuple([1] * pp)
        filled["layers_per_stage"] = f"{'+'.join(map(str, layers))} (the engine's even split)"
    wl = inst.workload
    if pins.max_num_seqs is not None and wl.mode != "request_rate":
        return Placement(cfg, pins.max_num_seqs, layers), filled
    if wl.mode == "concurrency":
        batch = math.ceil(wl.concurrency / dp)
        filled["max_num_seqs"] = f"{batch} (concurrency {wl.concurrency} / dp {dp})"
        return Placement(cfg, batch, layers), filled
    fit = max_batch_that_fits(problem.ctx, cfg, list(layers)) if len(layers) == pp and sum(layers) == a.layers else 0
    top = max(1, min(fit, replica_seq_cap(inst.limits.max_num_seqs, cfg)))
    if wl.mode == "request_rate":
        if pins.max_num_seqs is not None:
            top = min(top, pins.max_num_seqs)
        # The operating point: the smallest batch level whose capacity carries the rate.
        for b in sorted({b for b in RATE_LEVELS if b < top} | {top}):
            if evaluate(problem, Placement(cfg, b, layers), simulate=False).feasible:
                filled["max_num_seqs"] = (f"operating batch {b} (the smallest level that carries the rate and meets "
                                          "every requirement)")
                return Placement(cfg, b, layers), filled
        filled["max_num_seqs"] = f"{top} (largest batch that fits; no batch meets every requirement)"
        return Placement(cfg, top, layers), filled
    # The largest batch whose requirements all pass; if none does, the largest that fits.
    candidates = sorted({b for b in BATCH_LEVELS if b < top} | {top}, reverse=True)
    for b in candidates:
        if evaluate(problem, Placement(cfg, b, layers), simulate=False).feasible:
            filled["max_num_seqs"] = f"{b} (largest batch that fits and meets every requirement)"
            return Placement(cfg, b, layers), filled
    filled["max_num_seqs"] = f"{top} (largest batch that fits; no batch meets every requirement)"
    return Placement(cfg, top, layers), filled


def _widest(choices: list[str]) -> str:
    return min(choices, key=WEIGHT_DTYPES.index)


# ---------------------------------------------------------------------------------------------
# Disaggregated serving: a prefill pool and a decode pool (solver.physics.disagg)
# ---------------------------------------------------------------------------------------------

# Rules of a pool's own evaluation that the disaggregated plan restates for the whole (GPU count,
# rate, latency targets) or that bind an aggregated replica only (pins).
POOL_RULES_RESTATED = ("gpu_count", "workload.", "slo.", "pin.", "layers_", "search.uneven_layers")


@dataclass(frozen=True)
class DisaggPlacement:
    """A disaggregated plan: ``prefill.cfg.dp`` prefill workers, ``decode.cfg.dp`` decode workers.

    ``prefill.batch`` is the prompts a prefill step carries; ``decode.batch`` the sequences each
    decode worker holds at the operating point.
    """

    prefill: Placement
    decode: Placement

    @property
    def gpus(self) -> int:
        return self.prefill.cfg.gpus + self.decode.cfg.gpus

    def label(self) -> str:
        p, d = self.prefill.cfg, self.decode.cfg
        return f"{p.dp} prefill x ({p.worker_label()}) + {d.dp} decode x ({d.worker_label()}), {d.weights}/{d.kv_cache}"


@dataclass(frozen=True)
class DisaggMetrics:
    """Predicted figures of a disaggregated plan (the linear model; no queueing)."""

    ttft_ms: float
    tpot_ms: float
    prefill_latency_ms: float
    transfer_ms: float
    transfer_link: str
    prefill_capacity_per_s: float  # requests/s of the whole prefill pool
    decode_capacity_per_s: float  # requests/s of the whole decode pool
    max_request_rate: float
    output_tokens_per_s: float  # capacity of the deployment
    gpus: int
    handoff_ms: float = 0.0  # the engine's hand-off between the pools (Efficiency.kv_handoff_s), inside ttft_ms


@dataclass
class DisaggEvaluation:
    """The verdict on a disaggregated plan: every rule of both pools and of the whole."""

    placement: DisaggPlacement
    requirements: list[Requirement]
    prefill: Evaluation
    decode: Evaluation
    metrics: DisaggMetrics
    simulation: SimulationResult | None = None

    @property
    def feasible(self) -> bool:
        return all(r.passed for r in self.requirements)

    def failed(self) -> list[Requirement]:
        return [r for r in self.requirements if not r.passed]


def disagg_metrics(problem: Problem, dp: DisaggPlacement) -> DisaggMetrics:
    """TTFT, TPOT and capacities of a disaggregated plan from the step model (physics.disagg)."""
    ctx, wl, lim = problem.ctx, problem.instance.workload, problem.instance.limits
    p, d = dp.prefill, dp.decode
    pf = prefill_worker(ctx, p.cfg, p.layers_per_stage, wl.input_tokens, lim.max_num_batched_tokens)
    dec = decode_figures(decode_step_model(ctx, d.cfg, d.layers_per_stage), d.batch, wl.input_tokens, wl.output_tokens)
    link = transfer_link(ctx, dp.gpus)
    transfer = kv_transfer_s(ctx, p.cfg, d.cfg, wl.input_tokens, link)
    ttft = disagg_ttft_s(ctx, pf, dec, transfer)
    pre, dcap = pf.capacity_per_s * p.cfg.dp, dec.capacity_per_s * d.cfg.dp
    rate = min(pre, dcap)
    return DisaggMetrics(ttft * 1e3, dec.tpot_s * 1e3, pf.latency_s * 1e3, transfer * 1e3, link.kind, pre, dcap, rate,
                         rate * wl.output_tokens, dp.gpus, ctx.eff.kv_handoff_s * 1e3)


def evaluate_disagg(problem: Problem, dp: DisaggPlacement, simulate: bool | None = None) -> DisaggEvaluation:
    """Check a disaggregated plan: each pool's memory and layout rules, then the whole's GPUs, rates and SLOs.

    ``simulate`` as in :func:`evaluate` (the two-pool simulator of :mod:`solver.simulate.disagg`).
    """
    hw, inst = problem.ctx.hw, problem.instance
    reqs: list[Requirement] = []
    pools = {}
    for name, pl in (("prefill", dp.prefill), ("decode", dp.decode)):
        ev = evaluate(problem, pl, simulate=False)
        pools[name] = ev
        for r in ev.requirements:
            if not r.rule.startswith(POOL_RULES_RESTATED):
                reqs.append(Requirement(f"{name}.{r.rule}", f"{name} pool: {r.statement}", r.value, r.limit, r.unit,
                                        r.passed, r.slack))
        k, gpn = pl.cfg.replica_gpus, hw.gpus_per_node
        reqs.append(Requirement(f"{name}.worker_packing", f"a {name} worker of {k} GPUs must fill a divisor of a node "
                                f"({gpn} GPUs) or whole nodes", k, gpn, "GPUs", packs_in_nodes(k, gpn)))
    m = disagg_metrics(problem, dp)
    p, d = dp.prefill.cfg, dp.decode.cfg
    reqs.append(_upper("gpu_count", f"{p.dp} prefill workers x {p.replica_gpus} + {d.dp} decode workers x {d.replica_gpus} = "
                       f"{dp.gpus} GPUs needed; the cluster has {hw.total_gpus}", dp.gpus, hw.total_gpus, "GPUs"))
    wl, slo = inst.workload, inst.slo
    if wl.mode == "request_rate":
        reqs.append(_lower("prefill.request_rate", f"the prefill pool sustains {m.prefill_capacity_per_s:.2f} req/s "
                           f">= the workload's {wl.request_rate:g}", m.prefill_capacity_per_s, wl.request_rate, "req/s"))
        reqs.append(_lower("decode.request_rate", f"the decode pool sustains {m.decode_capacity_per_s:.2f} req/s at "
                           f"{dp.decode.batch} sequences per worker >= the workload's {wl.request_rate:g}",
                           m.decode_capacity_per_s, wl.request_rate, "req/s"))
    if slo.ttft_ms is not None:
        reqs.append(_upper("slo.ttft_ms", f"TTFT {m.ttft_ms:.1f} ms (prefill {m.prefill_latency_ms:.1f} + KV transfer "
                           f"{m.transfer_ms:.2f} over {m.transfer_link} + hand-off {m.handoff_ms:g} + a decode step) "
                           f"<= {slo.ttft_ms:g} ms",
                           m.ttft_ms, slo.ttft_ms, "ms"))
    if slo.tpot_ms is not None:
        reqs.append(_upper("slo.tpot_ms", f"TPOT {m.tpot_ms:.2f} ms <= {slo.tpot_ms:g} ms at {dp.decode.batch} "
                           "sequences per decode worker", m.tpot_ms, slo.tpot_ms, "ms"))
    if slo.min_request_rate is not None:
        reqs.append(_lower("slo.min_request_rate", f"sustainable {m.max_request_rate:.2f} req/s >= "
                           f"{slo.min_request_rate:g}", m.max_request_rate, slo.min_request_rate, "req/s"))
    ev = DisaggEvaluation(dp, reqs, pools["prefill"], pools["decode"], m)
    if simulate or (simulate is None and inst.slo.percentile_targets()):
        if inst.simulation.enabled and inst.workload.mode == "request_rate":
            d, p = dp.decode, dp.prefill
            ev.simulation = simulate_disagg(problem, (p.cfg, tuple(p.layers_per_stage)),
                                            (d.cfg, tuple(d.layers_per_stage)), d.batch, m.transfer_ms * 1e-3)
        reqs.extend(percentile_requirements(problem, ev.simulation))
    return ev

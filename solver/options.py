"""Candidate configurations, the rules that make some illegal, and their integer cost tables.

DESIGN rule 1: tables, not products. Every (tp, pp, dp, ep, weights, kv_cache, batch) candidate is
enumerated here with its per-stage linear costs from :mod:`solver.physics`, rounded to integers in
the conservative direction (demands up, capacities down). CP-SAT picks one with ``add_exactly_one``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from .physics import (
    KINDS,
    Config,
    StageCoefficients,
    kv_dtype_supported,
    param_counts,
    stage_coefficients,
    weight_dtype_supported,
)
from .problem import Problem
from .schema import KV_DTYPES, WEIGHT_DTYPES

MiB = 2**20
# Integer scales (DESIGN rule 2), recorded so decoded values convert back.
NS_PER_S = 1e9  # times in nanoseconds
PS_PER_S = 1e12  # the throughput objective in GPU-picoseconds per output token

# Batch sizes (sequences per replica) the solver may set as the engine's max_num_seqs: powers of two
# and the 1.5x steps between them, so the chosen batch is within 33% of any other.
BATCH_LEVELS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048,
                3072, 4096, 6144, 8192)

# Rule families. Each one is a guard literal in the CP-SAT model (DESIGN rule 3).
STATIC_RULES = (
    "gpu_count",
    "tp_within_node",
    "heads_divisible",
    "experts_divisible",
    "ep_layout",
    "pp_within_layers",
    "weights_allowed",
    "kv_cache_allowed",
    "weights_supported",
    "kv_cache_supported",
    "batch_cap",
)


def ceil_int(x: float) -> int:
    """Round a demand up (tiny float noise below an integer does not add a unit)."""
    return int(math.ceil(x - 1e-9))


@dataclass(frozen=True)
class IntStage:
    """Integer coefficients of one stage position for one option: value = sum_k per_layer[k] * n_k + const."""

    mem_MiB: tuple[dict[str, int], int]
    cycle_ns: tuple[dict[str, int], int]
    dec_ns: tuple[dict[str, int], int]
    zcost_ps: tuple[dict[str, int], int]  # GPU-time per output token


@dataclass
class Option:
    """One candidate: configuration, batch per replica, violated static rules, cost tables."""

    index: int
    cfg: Config
    batch: int
    violations: tuple[str, ...]
    coef: StageCoefficients
    stages: list[IntStage] = field(default_factory=list)
    ttft_const_ns: int = 0  # prefill latency through every stage (independent of the split)

    @property
    def legal(self) -> bool:
        return not self.violations

    def rank_key(self) -> tuple:
        """Canonical order for tie-breaks: fewer GPUs, smaller TP, PP, DP, EP, wider precision, larger batch."""
        c = self.cfg
        return (c.gpus, c.tp, c.pp, c.dp, c.ep, WEIGHT_DTYPES.index(c.weights), KV_DTYPES.index(c.kv_cache),
                -self.batch)


def static_violations(problem: Problem, cfg: Config, batch: int | None = None) -> list[str]:
    """The static rules ``cfg`` breaks (pins included as ``pin.<field>``)."""
    a, hw, inst = problem.arch, problem.ctx.hw, problem.instance
    out = []
    if cfg.gpus > hw.total_gpus:
        out.append("gpu_count")
    if cfg.tp > hw.gpus_per_node or hw.gpus_per_node % cfg.tp:
        out.append("tp_within_node")
    if a.heads % cfg.tp or (not a.is_mla and a.kv_heads % cfg.tp and cfg.tp % a.kv_heads):
        out.append("heads_divisible")
    if a.is_moe and a.experts % cfg.ep:
        out.append("experts_divisible")
    if cfg.ep > 1 and (not a.is_moe or cfg.tp % cfg.ep or (problem.search.engine == "vllm" and cfg.ep != cfg.tp)):
        out.append("ep_layout")
    if cfg.pp > a.layers:
        out.append("pp_within_layers")
    if cfg.weights not in inst.precision.weights:
        out.append("weights_allowed")
    if cfg.kv_cache not in inst.precision.kv_cache:
        out.append("kv_cache_allowed")
    if not weight_dtype_supported(hw.gpu, cfg.weights):
        out.append("weights_supported")
    if not kv_dtype_supported(hw.gpu, cfg.kv_cache):
        out.append("kv_cache_supported")
    if batch is not None and batch > problem.instance.limits.max_num_seqs:
        out.append("batch_cap")
    pins = problem.pins
    for key in ("tp", "pp", "dp", "ep", "weights", "kv_cache"):
        pinned = getattr(pins, key)
        if pinned is not None and getattr(cfg, key) != pinned:
            out.append(f"pin.{key}")
    if pins.layers_per_stage is not None and len(pins.layers_per_stage) != cfg.pp:
        out.append("pin.layers_per_stage")
    if batch is not None and pins.max_num_seqs is not None and batch != pins.max_num_seqs:
        out.append("pin.max_num_seqs")
    return out


def batch_levels(problem: Problem, cfg: Config) -> list[int]:
    """Batch sizes per replica to consider for ``cfg``."""
    wl, cap = problem.instance.workload, problem.instance.limits.max_num_seqs
    if problem.pins.max_num_seqs is not None:
        return [problem.pins.max_num_seqs]
    if wl.mode == "concurrency":
        return [math.ceil(wl.concurrency / cfg.dp)]
    return sorted({b for b in BATCH_LEVELS if b <= cap} | {cap})


def _fits_somewhere(problem: Problem, coef: StageCoefficients) -> bool:
    """Necessary condition for memory: the whole model, KV included, fits the pp stages together."""
    a = problem.arch
    kinds = a.layer_kinds()
    total = sum(coef.mem_per_layer[k] * kinds.count(k) for k in KINDS)
    total += coef.mem_first + coef.mem_last + coef.cfg.pp * coef.mem_const
    return total <= coef.cfg.pp * problem.ctx.capacity_bytes


def configs(problem: Problem, include_illegal: bool) -> list[Config]:
    """Configurations of the search space; with ``include_illegal`` also those breaking a static rule."""
    inst, s = problem.instance, problem.search
    weights = list(inst.precision.weights)
    kvs = list(inst.precision.kv_cache)
    if include_illegal:
        # Precisions beyond the allowed ones, so a proof can say "if INT4 were allowed".
        for w in ("bf16", "fp8", "int8", "int4", "fp4"):
            if w not in weights and not (w == "bf16" and "fp16" in weights):
                weights.append(w)
        for k in ("bf16", "fp8"):
            if k not in kvs and not (k == "bf16" and "fp16" in kvs):
                kvs.append(k)
    out = []
    for tp in s.tp:
        for pp in s.pp:
            for dp in s.dp:
                for ep in s.ep:
                    for w in weights:
                        for kv in kvs:
                            cfg = Config(tp, pp, dp, ep, w, kv)
                            if include_illegal or not static_violations(problem, cfg):
                                out.append(cfg)
    return out


def build_int_stages(problem: Problem, coef: StageCoefficients) -> tuple[list[IntStage], int]:
    """Integer per-stage tables for one option, and its split-independent prefill latency (ns)."""
    cfg, wl = coef.cfg, problem.instance.workload
    out_tok, pp, batch = wl.output_tokens, cfg.pp, coef.batch
    zscale = cfg.gpus / (batch * cfg.dp * out_tok) * PS_PER_S
    stages = []
    kinds = problem.arch.layer_kinds()
    for s in range(pp):
        first, last = s == 0, s == pp - 1
        mem_k = {k: ceil_int(coef.mem_per_layer[k] / MiB) for k in KINDS}
        mem_c = ceil_int(((coef.mem_first if first else 0) + (coef.mem_last if last else 0) + coef.mem_const) / MiB)
        cyc_layer = {k: batch * coef.pf_work_per_layer[k] + out_tok * pp * coef.dec_per_layer[k] for k in KINDS}
        send_pf = 0.0 if last else coef.send_pf[s]
        send_dec = 0.0 if last else coef.send_dec[s]
        cyc_const = (batch * ((coef.pf_work_last if last else 0) + send_pf)
                     + out_tok * pp * ((coef.dec_last if last else 0) + coef.dec_const + send_dec))
        dec_const = (coef.dec_last if last else 0) + coef.dec_const + send_dec
        stages.append(IntStage(
            mem_MiB=(mem_k, mem_c),
            cycle_ns=({k: ceil_int(v * NS_PER_S) for k, v in cyc_layer.items()}, ceil_int(cyc_const * NS_PER_S)),
            dec_ns=({k: ceil_int(coef.dec_per_layer[k] * NS_PER_S) for k in KINDS}, ceil_int(dec_const * NS_PER_S)),
            zcost_ps=({k: ceil_int(v * zscale) for k, v in cyc_layer.items()},
                      ceil_int(cyc_const * zscale)),
        ))
    pf_total = sum(coef.pf_lat_per_layer[k] * kinds.count(k) for k in KINDS) + coef.pf_lat_last + sum(coef.send_pf)
    return stages, ceil_int(pf_total * NS_PER_S)


def enumerate_options(problem: Problem, include_illegal: bool = False) -> list[Option]:
    """All candidate options, in canonical order, with integer tables.

    Without ``include_illegal`` (a normal solve), options breaking a static rule or unable to fit
    in memory under any split are left out: their guards are fixed true anyway. Diagnosis keeps
    them so that dropping a guard makes them available again.
    """
    out: list[Option] = []
    for cfg in configs(problem, include_illegal):
        for batch in batch_levels(problem, cfg):
            violations = static_violations(problem, cfg, batch)
            if violations and not include_illegal:
                continue
            coef = stage_coefficients(problem.ctx, cfg, batch)
            if not include_illegal and not _fits_somewhere(problem, coef):
                continue
            out.append(Option(index=-1, cfg=cfg, batch=batch, violations=tuple(violations), coef=coef))
    out.sort(key=Option.rank_key)
    for i, opt in enumerate(out):
        opt.index = i
        opt.stages, opt.ttft_const_ns = build_int_stages(problem, opt.coef)
    return out


def capacity_MiB(problem: Problem) -> int:
    """Usable memory per GPU in MiB, rounded down."""
    return int(math.floor(problem.ctx.capacity_bytes / MiB))


def total_params(problem: Problem) -> float:
    """Whole-model parameter count."""
    return param_counts(problem.arch).total

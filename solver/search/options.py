"""Candidate configurations, the rules that make some illegal, and their integer cost tables.

DESIGN rule 1: tables, not products. Every (tp, pp, dp, ep, weights, kv_cache, batch) candidate is
enumerated here with its per-stage linear costs from :mod:`solver.physics`, rounded to integers in
the conservative direction (demands up, capacities down): every model solution is then a plan the
exact physics accepts. The optimistic tables (demands down, capacities up, ``Units.optimistic``)
accept every plan the physics accepts; :mod:`solver.search.exact` sandwiches the two so that neither
a near-boundary plan nor a proof of infeasibility depends on the rounding. CP-SAT picks one option
with ``add_exactly_one``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ..engines import engine
from ..input.schema import KV_DTYPES, WEIGHT_DTYPES
from ..physics import (
    KINDS,
    Config,
    StageCoefficients,
    attention_dp_packs,
    fp8_blocks_whole,
    kv_dtype_supported,
    redundant_ok,
    replica_seq_cap,
    stage_coefficients,
    weight_dtype_supported,
)
from ..problem import BATCH_LEVELS, RATE_LEVELS, Problem
from ..verify import REL_TOLERANCE

MiB = 2**20
# CP-SAT misjudges models whose coefficients and bounds reach ~1e11 (a feasible model reported
# INFEASIBLE once its objective was minimised; reproduced with 70B on 32 T4 stages). Time units
# are therefore chosen per enumeration so that every table value stays below this magnitude.
MAX_TABLE_VALUE = 2e9
# The verifier accepts a value up to this relative amount over its limit (float noise); the
# optimistic capacities and every float pre-filter here include it, so none is stricter than it.
VERIFY_TOLERANCE = REL_TOLERANCE


@dataclass(frozen=True)
class Units:
    """Integer scales of one enumeration (DESIGN rule 2), recorded so values convert back.

    ``time_per_s``: time units per second (1e9 = nanoseconds, coarser for slow instances);
    ``z_per_s``: units per GPU-second per output token of the throughput objective;
    ``optimistic``: demands round down and capacities up (a relaxation of the exact physics)
    instead of the conservative opposite. Memory is in MiB.
    """

    time_per_s: float = 1e9
    z_per_s: float = 1e12
    optimistic: bool = False

    def demand(self, x: float) -> int:
        """A demand (memory, time) as an integer, on this rounding's side of the exact value."""
        return int(math.floor(x)) if self.optimistic else ceil_int(x)

    def capacity(self, x: float) -> int:
        """A limit as an integer. Optimistic: up, past the verifier's relative tolerance too."""
        return int(math.ceil(x * (1 + VERIFY_TOLERANCE))) if self.optimistic else int(math.floor(x))

    def time_ms(self, raw: float) -> float:
        return raw / self.time_per_s * 1e3

    def to_user(self, quantity: str, raw: float, output_tokens: int) -> float:
        """A model quantity (see BuiltModel.objective) in its user unit.

        ``z`` tok/s per GPU, ``cycle`` TPOT ms, ``ttft`` ms, ``inv_rate`` req/s, ``inv_tok`` tok/s,
        ``gpus`` GPUs, ``mem[s]`` / ``mem_max`` GiB.
        """
        if quantity == "gpus":
            return float(raw)
        if quantity == "cycle":
            return self.time_ms(raw) / output_tokens
        if quantity == "ttft":
            return self.time_ms(raw)
        if quantity in ("inv_rate", "inv_tok"):
            return self.time_per_s / raw if raw > 0 else math.inf
        if quantity == "z":
            return self.z_per_s / raw if raw > 0 else math.inf
        if quantity.startswith("mem"):
            return raw * MiB / 2**30
        raise KeyError(quantity)


def units_for(coefs: list[StageCoefficients], problem: Problem, optimistic: bool) -> Units:
    """The finest power-of-ten units that keep the largest possible table value below MAX_TABLE_VALUE."""
    kinds = problem.arch.layer_kinds()
    n = {k: kinds.count(k) for k in KINDS}
    out_tok = problem.instance.workload.output_tokens
    worst_cycle = worst_z = 0.0
    for c in coefs:
        b, pp = c.batch, c.cfg.pp
        cyc = sum((b * c.pf_work_per_layer[k] + out_tok * pp * c.dec_per_layer[k]) * n[k] for k in KINDS)
        cyc += b * (c.pf_work_last + max(c.send_pf, default=0)) + out_tok * pp * (
            c.dec_last + c.dec_const + max(c.send_dec, default=0))
        ttft = c.request_s + sum(c.pf_lat_per_layer[k] * n[k] for k in KINDS) + c.pf_lat_last + sum(c.send_pf)
        ttft += pp * sum(c.dec_per_layer[k] * n[k] for k in KINDS) + pp * (c.dec_last + c.dec_const)
        worst_cycle = max(worst_cycle, cyc, ttft)
        worst_z = max(worst_z, cyc * c.cfg.gpus / (b * c.cfg.dp * out_tok))
    time_per_s, z_per_s = 1e9, 1e12
    while worst_cycle * time_per_s > MAX_TABLE_VALUE and time_per_s > 1:
        time_per_s /= 10
    while worst_z * z_per_s > MAX_TABLE_VALUE and z_per_s > 1:
        z_per_s /= 10
    return Units(time_per_s, z_per_s, optimistic)


# Rule families. Each one is a guard literal in the CP-SAT model (DESIGN rule 3).
STATIC_RULES = (
    "gpu_count",
    "tp_within_node",
    "heads_divisible",
    "experts_divisible",
    "ep_layout",
    "attention_dp_layout",
    "fp8_block_divisible",
    "pp_within_layers",
    "weights_allowed",
    "kv_cache_allowed",
    "weights_supported",
    "kv_cache_supported",
    "batch_cap",
)


# Rules that state what cannot be changed by asking (the hardware's dtypes, a stage needs a layer):
# never relaxed in a diagnosis, so their candidates are left out of it.
UNRELAXABLE_RULES = frozenset({"weights_supported", "kv_cache_supported", "pp_within_layers"})


def ceil_int(x: float) -> int:
    """Round a demand up (tiny float noise below an integer does not add a unit)."""
    return int(math.ceil(x - 1e-9))


@dataclass(frozen=True)
class IntStage:
    """Integer coefficients of one stage position for one option: value = sum_k per_layer[k] * n_k + const."""

    mem_MiB: tuple[dict[str, int], int]
    cycle_t: tuple[dict[str, int], int]
    dec_t: tuple[dict[str, int], int]
    zcost: tuple[dict[str, int], int]  # GPU-time per output token


@dataclass
class Option:
    """One candidate: configuration, batch per replica, violated static rules, cost tables."""

    index: int
    cfg: Config
    batch: int
    violations: tuple[str, ...]
    coef: StageCoefficients
    stages: list[IntStage] = field(default_factory=list)
    ttft_const_t: int = 0  # prefill latency through every stage (independent of the split)
    units: Units = field(default_factory=Units)
    # Dynamic rules no split can satisfy (split-independent bounds); see bound_violations().
    bound_violations: tuple[str, ...] = ()
    # True when the memory of all stages together exceeds pp x capacity (needs every stage's cap).
    memory_sum_exceeds: bool = False

    def rank_key(self) -> tuple:
        """Canonical order for tie-breaks: fewer GPUs, smaller TP, PP, DP, EP, wider precision, larger batch."""
        c = self.cfg
        return (c.gpus, c.tp, c.pp, c.dp, c.ep, c.adp, c.redundant, WEIGHT_DTYPES.index(c.weights), KV_DTYPES.index(c.kv_cache),
                -self.batch)


# A violation of several rules at once ("batch_cap&pin.max_num_seqs"): the candidate is out only
# while every one of them is enforced.
JOINT = "&"


def rules_of(violation: str) -> list[str]:
    """The rules whose joint enforcement a violation needs."""
    return violation.split(JOINT)


def violated_under(violations, enforced) -> bool:
    """True when some violation has all its rules among ``enforced`` (a set or a predicate)."""
    check = enforced if callable(enforced) else enforced.__contains__
    return any(all(check(r) for r in rules_of(v)) for v in violations)


def static_violations(problem: Problem, cfg: Config, batch: int | None = None) -> list[str]:
    """The static rules ``cfg`` breaks (pins included as ``pin.<field>``), in a fixed order.

    Only the GPU count and a pinned dp depend on the replicas; the rest is computed once per
    replica shape and batch (large clusters enumerate thousands of dp values per shape).
    """
    key = (cfg.tp, cfg.pp, cfg.ep, cfg.adp, cfg.redundant, cfg.weights, cfg.kv_cache, batch)
    cache = problem.coefficient_cache.setdefault("static_violations", {})
    shape = cache.get(key)
    if shape is None:
        shape = cache[key] = _shape_violations(problem, cfg, batch)
    over = cfg.gpus > problem.ctx.hw.total_gpus
    dp_pin = problem.pins.dp
    if not over and (dp_pin is None or cfg.dp == dp_pin):
        return list(shape)
    out = ["gpu_count"] if over else []
    out += shape
    if dp_pin is not None and cfg.dp != dp_pin:
        # pin.dp keeps its place among the pins (tp, pp, dp, ep, ...).
        i = next((j for j, v in enumerate(out) if v in _PINS_AFTER_DP), len(out))
        out.insert(i, "pin.dp")
    return out


# The pins after pin.dp in static_violations' order.
_PINS_AFTER_DP = ("pin.ep", "pin.weights", "pin.kv_cache", "pin.attention_dp", "pin.redundant_experts",
                  "pin.layers_per_stage", "pin.max_num_seqs")


def _shape_violations(problem: Problem, cfg: Config, batch: int | None) -> list[str]:
    """static_violations without the GPU count and the dp pin: what one replica's shape breaks."""
    a, hw, inst = problem.arch, problem.ctx.hw, problem.instance
    out = []
    if cfg.tp > hw.gpus_per_node or hw.gpus_per_node % cfg.tp:
        out.append("tp_within_node")
    if a.heads % cfg.tp or (not a.is_mla and a.kv_heads % cfg.tp and cfg.tp % a.kv_heads):
        out.append("heads_divisible")
    if a.is_moe and a.experts % cfg.ep:
        out.append("experts_divisible")
    eng = engine(problem.search.engine)
    if not eng.ep_layout_ok(a.is_moe, cfg.moe_group, cfg.ep):
        out.append("ep_layout")
    if cfg.adp > 1 and not (eng.attention_dp_ok(a.is_moe, cfg.tp, cfg.adp) and attention_dp_packs(cfg, hw.gpus_per_node)):
        out.append("attention_dp_layout")
    if not redundant_ok(cfg):
        out.append("redundant_layout")
    if not fp8_blocks_whole(a, cfg):
        out.append("fp8_block_divisible")
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
    cap = replica_seq_cap(problem.instance.limits.max_num_seqs, cfg)
    rate_pin = problem.instance.workload.mode == "request_rate" and problem.pins.max_num_seqs is not None
    if batch is not None and (batch > cap or (rate_pin and problem.pins.max_num_seqs > cap)):
        # At a rate a pinned max_num_seqs is the engine's cap itself: above the limit, the pin and
        # the limit break only together.
        out.append("batch_cap" if batch > cap else f"batch_cap{JOINT}pin.max_num_seqs")
    pins = problem.pins
    for key in ("tp", "pp", "ep", "weights", "kv_cache"):
        pinned = getattr(pins, key)
        if pinned is not None and getattr(cfg, key) != pinned:
            out.append(f"pin.{key}")
    if pins.attention_dp is not None and cfg.adp != pins.attention_dp:
        out.append("pin.attention_dp")
    if pins.redundant_experts is not None and cfg.redundant != pins.redundant_experts:
        out.append("pin.redundant_experts")
    if pins.layers_per_stage is not None and len(pins.layers_per_stage) != cfg.pp:
        out.append("pin.layers_per_stage")
    if batch is not None and pins.max_num_seqs is not None:
        # At a request rate the pin is the engine's cap and the load sets the batch under it.
        rate = problem.instance.workload.mode == "request_rate"
        if (batch > pins.max_num_seqs) if rate else (batch != pins.max_num_seqs):
            out.append("pin.max_num_seqs")
    return out


def batch_levels(problem: Problem, cfg: Config, include_illegal: bool = False) -> list[int]:
    """Batch sizes per replica to consider for ``cfg``.

    A pinned batch is the only level of a solve; a diagnosis keeps the free levels too (they break
    the pin), so that dropping the pin can be told apart from raising the engine's cap.
    """
    wl, cap = problem.instance.workload, replica_seq_cap(problem.instance.limits.max_num_seqs, cfg)
    pinned = problem.pins.max_num_seqs
    if wl.mode == "concurrency":
        free = [math.ceil(wl.concurrency / cfg.dp)]
    elif wl.mode == "request_rate":
        # Operating points: the load sets the batch; a pinned max_num_seqs only caps it.
        top = cap if pinned is None or include_illegal else min(cap, pinned)
        levels = sorted({b for b in RATE_LEVELS if b <= top} | {top})
        if pinned is not None and include_illegal:
            levels = sorted({*levels, pinned})
        return levels
    else:
        free = sorted({b for b in BATCH_LEVELS if b <= cap} | {cap})
    if pinned is None:
        return free
    return sorted({pinned, *free}) if include_illegal else [pinned]


def fits_somewhere(problem: Problem, coef: StageCoefficients) -> bool:
    """Necessary condition for memory: the whole model, KV included, fits the pp stages together."""
    a = problem.arch
    kinds = a.layer_kinds()
    total = sum(coef.mem_per_layer[k] * kinds.count(k) for k in KINDS)
    total += coef.mem_first + coef.mem_last + coef.mem_last_extra + coef.cfg.pp * coef.mem_const
    return total <= coef.cfg.pp * problem.ctx.capacity_bytes * (1 + VERIFY_TOLERANCE)


def configs(problem: Problem, include_illegal: bool, only_gpus: int | None = None) -> list[Config]:
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
                    for adp in s.attention_dp:
                        # Replicas only where they divide over the EP ranks (a pinned count joins
                        # the space as it is, so that a proof can refute it).
                        for red in s.redundant:
                            for w in weights:
                                for kv in kvs:
                                    cfg = Config(tp, pp, dp, ep, w, kv, adp, red)
                                    if only_gpus is not None and cfg.gpus != only_gpus:
                                        continue
                                    if red != problem.pins.redundant_experts and not redundant_ok(cfg):
                                        continue
                                    if include_illegal or not static_violations(problem, cfg):
                                        out.append(cfg)
    return out


def build_int_stages(problem: Problem, coef: StageCoefficients, units: Units) -> tuple[list[IntStage], int]:
    """Integer per-stage tables for one option, and its split-independent prefill latency (time units)."""
    T = units.time_per_s
    cfg, wl = coef.cfg, problem.instance.workload
    out_tok, pp, batch = wl.output_tokens, cfg.pp, coef.batch
    zscale = cfg.gpus / (batch * cfg.dp * out_tok) * units.z_per_s
    kinds = problem.arch.layer_kinds()
    # Per-layer coefficients are the same on every stage; only the stage constants differ.
    R = units.demand
    mem_k = {k: R(coef.mem_per_layer[k] / MiB) for k in KINDS}
    cyc_layer = {k: batch * coef.pf_work_per_layer[k] + out_tok * pp * coef.dec_per_layer[k] for k in KINDS}
    cyc_k = {k: R(v * T) for k, v in cyc_layer.items()}
    dec_k = {k: R(coef.dec_per_layer[k] * T) for k in KINDS}
    z_k = {k: R(v * zscale) for k, v in cyc_layer.items()}
    stages = []
    for s in range(pp):
        first, last = s == 0, s == pp - 1
        mem_c = R(((coef.mem_first if first else 0) + (coef.mem_last + coef.mem_last_extra if last else 0)
                   + coef.mem_const) / MiB)
        send_pf = 0.0 if last else coef.send_pf[s]
        send_dec = 0.0 if last else coef.send_dec[s]
        cyc_const = (batch * ((coef.pf_work_last if last else 0) + send_pf)
                     + out_tok * pp * ((coef.dec_last if last else 0) + coef.dec_const + send_dec))
        dec_const = (coef.dec_last if last else 0) + coef.dec_const + send_dec
        stages.append(IntStage(
            mem_MiB=(mem_k, mem_c),
            cycle_t=(cyc_k, R(cyc_const * T)),
            dec_t=(dec_k, R(dec_const * T)),
            zcost=(z_k, R(cyc_const * zscale)),
        ))
    pf_total = (coef.request_s + sum(coef.pf_lat_per_layer[k] * kinds.count(k) for k in KINDS) + coef.pf_lat_last
                + sum(coef.send_pf))
    return stages, R(pf_total * T)


class EnumerationExpired(RuntimeError):
    """The command's deadline passed while the candidates were being listed (nothing is concluded)."""


def enumerate_options(problem: Problem, include_illegal: bool = False, only_gpus: int | None = None,
                      optimistic: bool = False, expired=None) -> list[Option]:
    """All candidate options, in canonical order, with integer tables (``optimistic``: rounded the other way).

    Without ``include_illegal`` (a normal solve), options breaking a static rule or unable to fit
    in memory under any split are left out: their guards are fixed true anyway. Diagnosis keeps
    them so that dropping a guard makes them available again.
    A solve may leave out the replica counts its objective cannot prefer:
    :func:`solver.search.replicas.solve_options`. ``expired`` (a callable) is polled as the list
    grows; once it says True, :class:`EnumerationExpired` is raised (a diagnosis lists every
    candidate of every relaxation, which can take longer than a command's time limit).
    """
    out: list[Option] = []
    coefficients = shape_coefficients(problem)

    fits: dict[tuple, bool] = {}
    for n, cfg in enumerate(configs(problem, include_illegal, only_gpus)):
        if expired is not None and n % 64 == 0 and expired():
            raise EnumerationExpired(f"the time limit ran out while listing the candidates ({len(out)} so far)")
        levels = batch_levels(problem, cfg, include_illegal)
        if not include_illegal and problem.instance.workload.mode == "request_rate":
            levels = levels_that_can_carry(problem, cfg, levels, coefficients)
        for batch in levels:
            violations = static_violations(problem, cfg, batch)
            if violations and not include_illegal:
                continue
            if {r for v in violations for r in rules_of(v)} & UNRELAXABLE_RULES:
                # What the GPU cannot do is not a requirement a person can relax; the proof's
                # "another GPU type" repair covers it.
                continue
            # Shared by every dp of (tp, pp, ep, precisions, batch): nothing read from an option's
            # coefficients depends on dp (build_int_stages' z scale has dp in both terms).
            coef = coefficients(cfg, batch)
            if not include_illegal:
                fkey = (cfg.tp, cfg.pp, cfg.ep, cfg.adp, cfg.redundant, cfg.weights, cfg.kv_cache, batch)  # dp-independent
                if fkey not in fits:
                    fits[fkey] = fits_somewhere(problem, coef)
                if not fits[fkey]:
                    continue
            out.append(Option(index=-1, cfg=cfg, batch=batch, violations=tuple(violations), coef=coef))
    out.sort(key=Option.rank_key)
    for i, opt in enumerate(out):
        opt.index = i
    if expired is not None and expired():
        raise EnumerationExpired(f"the time limit ran out while listing the candidates ({len(out)} listed)")
    return with_units(problem, out, optimistic, expired)


def shape_coefficients(problem: Problem):
    """``coefficients(cfg, batch)``: the stage coefficients of a replica shape and batch, cached on the
    problem. Per-stage costs do not depend on dp (each replica is the same), so replicas share them."""
    shared: dict[tuple, StageCoefficients] = problem.coefficient_cache

    def coefficients(cfg: Config, batch: int) -> StageCoefficients:
        key = (cfg.tp, cfg.pp, cfg.ep, cfg.adp, cfg.redundant, cfg.weights, cfg.kv_cache, batch)
        if key not in shared:
            shared[key] = stage_coefficients(problem.ctx, cfg, batch)
        return shared[key]

    return coefficients


def balanced_cycle(problem: Problem, cfg: Config, b: int, coef: StageCoefficients) -> float:
    """A replica's cycle summed over its stages (pp x the perfectly balanced stage), seconds."""
    key = (cfg.tp, cfg.pp, cfg.ep, cfg.adp, cfg.redundant, cfg.weights, cfg.kv_cache, b)
    cycles = problem.coefficient_cache.setdefault("balanced_cycle", {})
    total = cycles.get(key)
    if total is None:
        kinds = problem.arch.layer_kinds()
        out_tok, pp, c = problem.instance.workload.output_tokens, cfg.pp, coef
        total = sum((b * c.pf_work_per_layer[k] + out_tok * pp * c.dec_per_layer[k]) * kinds.count(k) for k in KINDS)
        total += b * c.pf_work_last + out_tok * pp * (c.dec_last + pp * c.dec_const)
        cycles[key] = total
    return total


def levels_that_can_carry(problem: Problem, cfg: Config, levels: list[int], coefficients) -> list[int]:
    """The levels whose capacity can carry the request rate under some split (a sound cut).

    A replica of ``b`` sequences completes ``b`` requests per cycle D(b), and no split makes D
    shorter than the perfectly balanced stage (the total over pp), so ``dp * b / D_min(b) < rate``
    rules the level out under every split. Capacity grows with the batch, so the levels ruled out
    are the smallest ones: a binary search finds the first level that may carry the rate.
    """
    wl = problem.instance.workload

    def may_carry(b: int) -> bool:
        # A replica's best-case cycle per level does not depend on dp: computed once per shape and level.
        total = balanced_cycle(problem, cfg, b, coefficients(cfg, b))
        return cfg.dp * b * cfg.pp / total >= wl.request_rate * (1 - VERIFY_TOLERANCE)

    lo, hi = 0, len(levels)
    while lo < hi:
        mid = (lo + hi) // 2
        if may_carry(levels[mid]):
            hi = mid
        else:
            lo = mid + 1
    return levels[lo:]


def with_units(problem: Problem, options: list[Option], optimistic: bool | None = None,
               expired=None) -> list[Option]:
    """(Re)build the integer tables of ``options`` at the finest units their magnitudes allow.

    The planner calls it again after pruning: the options left are close to the optimum, so the
    units get finer and the rounding smaller than over every candidate of a large cluster.
    ``optimistic`` None keeps the options' rounding; ``expired`` as in :func:`enumerate_options`.
    """
    if optimistic is None:
        optimistic = bool(options) and options[0].units.optimistic
    units = units_for(list({id(o.coef): o.coef for o in options}.values()), problem, optimistic)
    tables: dict[tuple, tuple[list[IntStage], int]] = {}
    shared: dict = {}
    for n, opt in enumerate(options):
        if expired is not None and n % 4096 == 0 and expired():
            raise EnumerationExpired(f"the time limit ran out while costing the candidates ({n} of {len(options)})")
        opt.units = units
        c = opt.cfg
        key = (c.tp, c.pp, c.ep, c.adp, c.redundant, c.weights, c.kv_cache, opt.batch)  # the tables are dp-independent too
        if key not in tables:
            tables[key] = build_int_stages(problem, opt.coef, units)
        opt.stages, opt.ttft_const_t = tables[key]
        opt.bound_violations, opt.memory_sum_exceeds = bound_violations(problem, opt, shared)
    return options


def cycle_bounds(problem: Problem, opt: Option) -> dict[str, int]:
    """Upper bounds on the cycle time D (time units) that each throughput-type rule imposes on ``opt``."""
    inst, cfg, b = problem.instance, opt.cfg, opt.batch
    out_tok = inst.workload.output_tokens
    bounds: dict[str, float] = {}
    slo = inst.slo
    if slo.tpot_ms is not None:
        bounds["slo.tpot_ms"] = slo.tpot_ms * 1e-3 * out_tok  # TPOT = D / O
    if inst.workload.mode == "request_rate":
        bounds["workload.request_rate"] = cfg.dp * b / inst.workload.request_rate  # dp * B / D >= rate
    if slo.min_request_rate is not None:
        bounds["slo.min_request_rate"] = cfg.dp * b / slo.min_request_rate
    if slo.min_output_tokens_per_s is not None:
        bounds["slo.min_output_tokens_per_s"] = cfg.dp * b * out_tok / slo.min_output_tokens_per_s
    if slo.min_output_tokens_per_s_per_gpu is not None:
        bounds["slo.min_output_tokens_per_s_per_gpu"] = (
            cfg.dp * b * out_tok / (slo.min_output_tokens_per_s_per_gpu * cfg.gpus)
        )
    return {k: opt.units.capacity(v * opt.units.time_per_s) for k, v in bounds.items()}


def ttft_limit(problem: Problem, units: Units) -> int | None:
    """The TTFT target in time units, rounded as ``units`` round capacities."""
    slo = problem.instance.slo
    return None if slo.ttft_ms is None else units.capacity(slo.ttft_ms * 1e-3 * units.time_per_s)


def bound_violations(problem: Problem, o: Option, shared: dict | None = None) -> tuple[tuple[str, ...], bool]:
    """Dynamic rules option ``o`` breaks under every split, from split-independent bounds.

    Each stage holds at least one layer (>= its constant plus the lightest layer) and the busiest
    stage holds at least the mean over stages. Returns the rules and whether the memory of all
    stages together exceeds pp x capacity (a conflict of all the stages' memory caps at once).
    Only the throughput-type bounds depend on dp: the rest is computed once per table set
    (``shared``, keyed by the tables' identity) for all the replicas counts.
    """
    key = id(o.stages)
    if shared is None or key not in shared:
        part = split_independent_bounds(problem, o)
        if shared is not None:
            shared[key] = (o.stages, part)  # the tables are kept alive with their entry
    else:
        part = shared[key][1]
    static, sum_exceeds, cycle_lb = part
    out = list(static) + [rule for rule, bound in cycle_bounds(problem, o).items() if cycle_lb > bound]
    return tuple(out), sum_exceeds


def split_independent_bounds(problem: Problem, o: Option) -> tuple[tuple[str, ...], bool, int]:
    """The dp-independent part of :func:`bound_violations`: memory and TTFT rules, and the cycle bound."""
    kinds = problem.arch.layer_kinds()
    n_kind = {k: kinds.count(k) for k in KINDS}
    pp = o.cfg.pp
    cap = capacity_MiB(problem, o.units)
    out: list[str] = []

    def bounds_of(name: str) -> tuple[list[int], int]:
        tables = [getattr(st, name) for st in o.stages]
        per, _ = tables[0]  # per-layer coefficients are the same on every stage
        total = sum(per[k] * n_kind[k] for k in KINDS) + sum(t[1] for t in tables)
        if pp == 1:
            return [total], total
        lightest = min(per[k] for k in KINDS if n_kind[k])
        return [t[1] + lightest for t in tables], -(-total // pp)

    mins, mean = bounds_of("mem_MiB")
    out += [f"mem_cap[stage={s}]" for s, v in enumerate(mins) if v > cap]
    sum_exceeds = mean > cap
    mins, mean = bounds_of("cycle_t")
    cycle_lb = max(mean, max(mins))
    limit = ttft_limit(problem, o.units)
    if limit is not None:
        mins, mean = bounds_of("dec_t")
        if o.ttft_const_t + pp * max(mean, max(mins)) > limit:
            out.append("slo.ttft_ms")
    return tuple(out), sum_exceeds, cycle_lb


def scaled_table(table: tuple[dict[str, int], int], den: int, up: bool) -> tuple[dict[str, int], int]:
    """A cost table divided by ``den``, each coefficient rounded up (conservative) or down (optimistic)."""
    per, const = table
    if up:
        return {k: -(-v // den) for k, v in per.items()}, -(-const // den)
    return {k: v // den for k, v in per.items()}, const // den


def stage_table(problem: Problem, o: Option, s: int, name: str) -> tuple[dict[str, int], int]:
    """The integer table (per layer kind, constant) of quantity ``name`` on stage ``s`` of ``o``.

    ``z``, ``cycle``, ``dec`` (TTFT's decode term), ``inv_rate`` (time per request of the whole
    deployment), ``inv_tok`` (time per output token of it), ``mem[s]`` MiB. The CP-SAT model, the
    witnesses and the bounds all read a stage's quantity from here.
    """
    st = o.stages[s]
    if name == "z":
        return st.zcost
    if name == "cycle":
        return st.cycle_t
    if name == "dec":
        return st.dec_t
    if name.startswith("mem"):
        return st.mem_MiB
    per_request = o.cfg.dp * o.batch
    up = not o.units.optimistic
    if name == "inv_rate":
        return scaled_table(st.cycle_t, per_request, up)
    if name == "inv_tok":
        return scaled_table(st.cycle_t, per_request * problem.instance.workload.output_tokens, up)
    raise KeyError(name)


def capacity_MiB(problem: Problem, units: Units) -> int:
    """Usable memory per GPU in MiB, rounded as ``units`` round capacities."""
    return units.capacity(problem.ctx.capacity_bytes / MiB)

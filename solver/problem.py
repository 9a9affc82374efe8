"""From a validated instance to a resolved problem: cards looked up, defaults stated, cross-checks done.

Defaults that the program fills in are recorded in :attr:`Problem.defaults` so the report can state
them: nothing a user gave is changed, and nothing is assumed silently.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from .engines import engine
from .input.catalog import Architecture, resolve_gpu, resolve_model
from .input.errors import InputError, from_validation_error, load_json
from .input.expert_loads import read_expert_loads
from .input.schema import CostModelSpec, GpuCard, Instance, StrategyPins
from .physics import Context, Hardware, driver_reserved_GiB, efficiency_for, param_counts
from .physics.cost import Price
from .physics.experts import balanced_ep_imbalance, contiguous_ep_imbalance

# A card whose declared parameter count and architecture disagree by more than this is rejected:
# the difference means a wrong field (hidden size, layers, experts), not rounding.
PARAM_CONSISTENCY_TOLERANCE = 0.03

# Batch sizes (sequences per replica) the solver may set as the engine's max_num_seqs: powers of two
# and the 1.5x steps between them, so the chosen batch is within 33% of any other.
BATCH_LEVELS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048,
                3072, 4096, 6144, 8192)
# At a request rate the batch is the operating point the load sets (Little's law), and a level is
# the smallest that carries the rate: finer levels than BATCH_LEVELS (every batch to 8, then steps
# of 19%) keep the latency evaluated at a level within a few percent of the load's own batch.
RATE_LEVELS = tuple(sorted({*range(1, 9), *(round(8 * 1.19**i) for i in range(1, 60))}))


@dataclass(frozen=True)
class SearchSpace:
    """Degrees the solver may choose from."""

    tp: tuple[int, ...]
    pp: tuple[int, ...]
    dp: tuple[int, ...]
    ep: tuple[int, ...]
    uneven_layers: bool
    engine: str
    serving: str = "aggregated"
    attention_dp: tuple[int, ...] = (1,)
    # The attention-DP ranks a disaggregated pool's worker may take (MoE): a worker's own layout,
    # searched per pool even where the aggregated side keeps one rank (its replica counts come one
    # at a time there, so ranks too would multiply its search).
    pool_attention_dp: tuple[int, ...] = (1,)
    # Redundant (replica) experts in all per MoE layer: placed by a balanced expert map.
    redundant: tuple[int, ...] = (0,)


@dataclass
class Problem:
    """Everything a solve needs, resolved."""

    instance: Instance
    file: str | None
    ctx: Context
    search: SearchSpace
    pins: StrategyPins
    defaults: dict[str, Any] = field(default_factory=dict)
    # The GPU-hour price in force (instance, --price or catalog); None when none is known.
    price: Price | None = None
    # Per-stage coefficients by (tp, pp, ep, weights, kv_cache, batch): the same for every dp and
    # every enumeration of this problem (repairs scan GPU counts, each enumerating again).
    coefficient_cache: dict[tuple, Any] = field(default_factory=dict, repr=False, compare=False)
    # What the exact physics rejected in earlier solves of this problem (solver.search.facts.Fact):
    # true for every split, so each later model and witness keeps them.
    learned: list = field(default_factory=list, repr=False, compare=False)

    @property
    def arch(self) -> Architecture:
        return self.ctx.arch

    @property
    def name(self) -> str:
        return self.instance.name


def _powers_of_two(limit: int) -> tuple[int, ...]:
    out, v = [], 1
    while v <= limit:
        out.append(v)
        v *= 2
    return tuple(out)


def _default_search(inst: Instance, arch: Architecture, total_gpus: int) -> tuple[SearchSpace, dict[str, Any]]:
    s = inst.search
    cl = inst.cluster
    defaults: dict[str, Any] = {}
    # Defaults reach past the cluster (up to 8-way) so that a proof can say "this needs N GPUs".
    tp = tuple(s.tp) if s.tp else _powers_of_two(max(8, cl.gpus_per_node))
    pp = tuple(s.pp) if s.pp else tuple(p for p in _powers_of_two(max(8, total_gpus)) if p <= arch.layers)
    # Replicas and pool workers come one at a time: comparing aggregated with disaggregated serving,
    # every count is a candidate (the plain default, powers of two, keeps big searches small).
    every = s.serving != "aggregated"
    dp = tuple(s.dp) if s.dp else (tuple(range(1, total_gpus + 1)) if every else _powers_of_two(max(1, total_gpus)))
    # Attention data parallelism (MoE): ranks with their own sequences and KV cache sharing the
    # experts; by default up to a node (wider groups cross the network for every MoE layer).
    if s.attention_dp:
        adp = tuple(s.attention_dp)
    elif arch.is_moe and s.serving == "aggregated":
        adp = _powers_of_two(cl.gpus_per_node)
    else:
        adp = (1,)
    pool_adp = adp if s.attention_dp or not arch.is_moe else _powers_of_two(cl.gpus_per_node)
    if s.ep:
        ep = tuple(s.ep)
    elif arch.is_moe:
        ep = tuple(e for e in _powers_of_two(max(tp) * max(adp + (pool_adp if every else ()))) if arch.experts % e == 0)
    else:
        ep = (1,)
    # Replicas need a balanced map (their placement) and pay off only under a skewed routing profile.
    balanced = inst.workload.expert_loads is not None and inst.workload.expert_placement == "balanced"
    if s.redundant_experts:
        red = tuple(s.redundant_experts)
    elif arch.is_moe and balanced:
        red = tuple(sorted({0, arch.experts // 8, arch.experts // 4}))
    else:
        red = (0,)
    for key, val, given in (("tp", tp, s.tp), ("pp", pp, s.pp), ("dp", dp, s.dp), ("ep", ep, s.ep),
                            ("attention_dp", adp, s.attention_dp), ("redundant_experts", red, s.redundant_experts)):
        if not given:
            defaults[f"search.{key}"] = list(val)
    if not arch.is_moe:
        defaults.pop("search.redundant_experts", None)  # no experts to replicate
    if every and pool_adp != adp:
        defaults["search.attention_dp (disaggregated pool workers)"] = list(pool_adp)
    # A pinned degree outside the search space joins it, so that a proof can refute it.
    pins = inst.strategy
    extra = {"tp": pins.tp, "pp": pins.pp or (len(pins.layers_per_stage) if pins.layers_per_stage else None),
             "dp": pins.dp, "ep": pins.ep, "attention_dp": pins.attention_dp, "redundant_experts": pins.redundant_experts}
    lists = {"tp": set(tp), "pp": set(pp), "dp": set(dp), "ep": set(ep), "attention_dp": set(adp),
             "redundant_experts": set(red)}
    for key, val in extra.items():
        if val is not None and val not in lists[key]:
            lists[key].add(val)
            defaults[f"search.{key} (pinned value added)"] = val
    return SearchSpace(tuple(sorted(lists["tp"])), tuple(sorted(lists["pp"])), tuple(sorted(lists["dp"])),
                       tuple(sorted(lists["ep"])), s.uneven_layers, s.engine, s.serving,
                       tuple(sorted(lists["attention_dp"])), tuple(sorted(set(pool_adp) | lists["attention_dp"])),
                       tuple(sorted(lists["redundant_experts"]))), defaults


def _check_consistency(inst: Instance, arch: Architecture, file: str | None) -> None:
    declared = arch.declared_params_B
    if declared is None:
        return
    actual = param_counts(arch).total / 1e9
    if abs(actual - declared) / declared > PARAM_CONSISTENCY_TOLERANCE:
        path = "model.declared_params_B" if not isinstance(inst.model, str) else "model"
        raise InputError(
            file,
            path,
            declared,
            f"declares {declared:g} B parameters but its architecture implies {actual:.3f} B "
            f"({(actual - declared) / declared:+.1%}, tolerance {PARAM_CONSISTENCY_TOLERANCE:.0%}); "
            "check hidden_size, num_hidden_layers, intermediate_size and the expert fields",
        )


# Scheduler settings of one engine (limits field -> the engine that has it).
ENGINE_SCHEDULER_SETTINGS = {"scheduler_recv_interval": ("sglang", 1), "attention_dp_balance_iters": ("trtllm", 0),
                             "batch_wait_timeout_iters": ("trtllm", 0), "batch_wait_max_tokens_ratio": ("trtllm", 0.0)}


def _check_search(inst: Instance, arch: Architecture, space: SearchSpace, file: str | None) -> None:
    del space  # pinned values joined the space; only the user's own list is checked here
    for name, (owner, off) in ENGINE_SCHEDULER_SETTINGS.items():
        value = getattr(inst.limits, name)
        if value != off and inst.search.engine != owner:
            raise InputError(file, f"limits.{name}", value, f"a {owner} setting; search.engine is "
                             f"{inst.search.engine} (set it to {owner}, or leave the field at {off})")
    for i, tp in enumerate(inst.search.tp or ()):
        if arch.heads % tp:
            raise InputError(file, f"search.tp[{i}]", tp,
                             f"a TP degree must divide the {arch.heads} attention heads; "
                             f"accepted: {[d for d in range(1, arch.heads + 1) if arch.heads % d == 0 and d <= 64]}")
    if inst.search.ep and not arch.is_moe and any(e > 1 for e in inst.search.ep):
        raise InputError(file, "search.ep", inst.search.ep, f"{arch.name} is dense; expert parallelism needs an MoE model")
    if inst.search.attention_dp and not arch.is_moe and any(e > 1 for e in inst.search.attention_dp):
        raise InputError(file, "search.attention_dp", inst.search.attention_dp,
                         f"{arch.name} is dense; attention data parallelism needs an MoE model (use search.dp for "
                         "replicas)")
    window = arch.max_position_embeddings
    if window and inst.workload.model_len > window:
        path = "workload.max_model_len" if inst.workload.max_model_len else "workload.input_tokens"
        raise InputError(file, path, inst.workload.model_len,
                         f"exceeds {arch.name}'s context window of {window} tokens (max_position_embeddings); "
                         "engines refuse a longer --max-model-len")
    pins = inst.strategy
    if pins.layers_per_stage is not None and sum(pins.layers_per_stage) != arch.layers:
        raise InputError(file, "strategy.layers_per_stage", pins.layers_per_stage,
                         f"must sum to the model's {arch.layers} decoder layers (sums to {sum(pins.layers_per_stage)})")
    if pins.ep is not None and pins.ep > 1 and not arch.is_moe:
        raise InputError(file, "strategy.ep", pins.ep, f"{arch.name} is dense; only ep = 1 applies")
    balanced = inst.workload.expert_loads is not None and inst.workload.expert_placement == "balanced"
    for path, value in (("search.redundant_experts", max(inst.search.redundant_experts or [0])),
                        ("strategy.redundant_experts", pins.redundant_experts or 0)):
        if value and not arch.is_moe:
            raise InputError(file, path, value, f"{arch.name} is dense; redundant experts need an MoE model")
        if value and not balanced:
            raise InputError(file, path, value, "replica experts are placed by a balanced expert map: set "
                             "workload.expert_placement \"balanced\" with workload.expert_loads (a routing profile)")
    if pins.attention_dp is not None and pins.attention_dp > 1 and not arch.is_moe:
        raise InputError(file, "strategy.attention_dp", pins.attention_dp,
                         f"{arch.name} is dense; only attention_dp = 1 applies (use dp for replicas)")


# Objectives that need a price.
COST_OBJECTIVES = ("min_cost", "min_cost_per_token")


def resolve_price(inst: Instance, gpu: GpuCard, file: str | None,
                  path: str = "cluster") -> tuple[Price | None, dict[str, Any]]:
    """The price in force for the cluster's GPU, and the statement of where it came from.

    The instance's ``price_per_gpu_hour_usd`` (where ``--price`` is written too, see
    :func:`solver.api.load_instance`), else the card's catalog price. A cost objective without
    either is bad input.
    """
    notes: dict[str, Any] = {}
    given = inst.cluster.price_per_gpu_hour_usd
    if given is not None:
        price = Price(given, "instance", f"the instance's {path}.price_per_gpu_hour_usd", None, "custom")
    elif gpu.price is not None:
        p = gpu.price
        price = Price(p.usd_per_gpu_hour, "catalog", p.source, p.date, p.kind)
        notes["price"] = (f"{p.usd_per_gpu_hour:g} USD per {gpu.name} GPU-hour, {p.kind} list price of {p.date} "
                          "from the GPU card (override with cluster.price_per_gpu_hour_usd or --price)")
    else:
        price = None
    if price is None and inst.objective in COST_OBJECTIVES:
        raise InputError(file, f"{path}.price_per_gpu_hour_usd", None,
                         f"objective {inst.objective} needs a price, and the GPU card '{gpu.name}' has none in "
                         "the catalog; give the USD per GPU-hour in the instance or with --price")
    return price, notes


def mark_cli_price(problem: Problem, notes: dict[str, str]) -> Problem:
    """Record that the problem's price came from ``--price`` (``notes``: what it replaced, by card name)."""
    note = notes.get(problem.ctx.hw.gpu.name)
    if note is None or problem.price is None:
        return problem
    problem.price = replace(problem.price, origin="--price", source="the command line (--price)", date=None,
                            kind="custom")
    problem.defaults["price"] = note
    return problem


def build_problem(inst: Instance, file: str | None = None) -> Problem:
    """Resolve cards, apply stated defaults and run the cross-field checks."""
    base_dir = Path(file).resolve().parent if file else None
    if inst.cluster.candidates is not None:
        raise InputError(file, "cluster.candidates", len(inst.cluster.candidates),
                         "a cluster of candidate GPU types is planned by the capacity planner "
                         "(solver.capacity.plan_capacity, or `solve FILE`), not as one problem")
    arch = resolve_model(inst.model, file=file, base_dir=base_dir)
    gpu = resolve_gpu(inst.cluster.gpu, file=file)
    price, price_notes = resolve_price(inst, gpu, file)
    cl = inst.cluster
    hw = Hardware(
        gpu=gpu,
        gpus_per_node=cl.gpus_per_node,
        nodes=cl.nodes,
        intra=cl.intra_node or gpu.intra_node,
        inter=cl.inter_node or gpu.inter_node,
    )
    eng = engine(inst.search.engine)
    step_us = eng.STEP_OVERHEAD_US
    cost_model = _included_cost_model(inst, file)
    version = inst.search.engine_version or eng.DEFAULT_VERSION
    eff = efficiency_for(gpu, cost_model, None if step_us is None else step_us * 1e-6,
                         eng.request_overhead_ms(version) * 1e-3, eng.TOKEN_OVERHEAD_US * 1e-6,
                         eng.DISAGG_HANDOFF_MS * 1e-3, eng.DISAGG_STEP_OVERHEAD_US * 1e-6,
                         eng.MOE_LAYER_OVERHEAD_US * 1e-6)
    ctx = Context(arch=arch, hw=hw, workload=inst.workload, limits=inst.limits, eff=eff,
                  memory=eng.memory_conventions(version))
    _check_consistency(inst, arch, file)
    space, defaults = _default_search(inst, arch, hw.total_gpus)
    _check_search(inst, arch, space, file)
    if inst.workload.expert_loads is not None:
        ctx = replace(ctx, expert_imbalance=_expert_imbalance(inst, arch, space, file))
        if "expert_placement" not in inst.workload.model_fields_set:
            defaults["workload.expert_placement"] = "contiguous: the engines' default expert ranges"
    elif inst.workload.expert_placement != "contiguous":
        raise InputError(file, "workload.expert_placement", inst.workload.expert_placement,
                         "a balanced placement is computed from a routing profile: give workload.expert_loads")
    elif arch.is_moe:
        defaults["workload.expert_loads"] = "none: EP ranks evenly loaded"
    if inst.workload.max_model_len is None:
        defaults["workload.max_model_len"] = inst.workload.model_len
    # Every default the instance did not set, stated (nothing is assumed silently).
    for section, spec in (("limits", inst.limits), ("precision", inst.precision), ("search", inst.search),
                          ("workload", inst.workload)):
        for name in ("memory_utilization", "max_num_seqs", "max_num_batched_tokens", "weights", "kv_cache",
                     "uneven_layers", "engine", "serving", *(k for k, (owner, _) in ENGINE_SCHEDULER_SETTINGS.items()
                                                             if owner == inst.search.engine)):
            if name in type(spec).model_fields and name not in spec.model_fields_set:
                defaults[f"{section}.{name}"] = getattr(spec, name)
    if "objective" not in inst.model_fields_set:
        defaults["objective"] = inst.objective
    if inst.search.engine_version is None:
        defaults["search.engine_version"] = eng.DEFAULT_VERSION
    if inst.limits.runtime_overhead_GiB is None:
        defaults["limits.runtime_overhead_GiB"] = ctx.memory.summary
    if gpu.torch_visible_GiB is None:
        defaults["cluster.gpu.torch_visible_GiB"] = (
            f"{ctx.device_GiB:.2f} GiB: the driver's {gpu.memory_GiB:g} GiB less {driver_reserved_GiB(gpu.memory_GiB):.2f} "
            "(no measured torch-visible total on the card); usable memory is memory_utilization x this")
    e = ctx.eff
    defaults["cost_model"] = {
        "family": gpu.family,
        "compute_efficiency": e.compute,
        "memory_efficiency": e.memory,
        "moe_compute_efficiency": e.moe_compute,
        "link_efficiency": e.link,
        "step_overhead_us": round(e.step_overhead_s * 1e6, 3),
        "layer_overhead_us": round(e.layer_overhead_s * 1e6, 3),
        "allreduce_per_peer": e.allreduce_per_peer,
        "request_overhead_ms": round(e.request_overhead_s * 1e3, 3),
        "token_overhead_us": round(e.token_overhead_s * 1e6, 3),
        "moe_prefill_expert_us": round(e.moe_prefill_expert_s * 1e6, 3),
        "moe_layer_overhead_us": round(e.moe_layer_overhead_s * 1e6, 3),
        "kv_handoff_ms": round(e.kv_handoff_s * 1e3, 3),
        "disagg_step_overhead_us": round(e.disagg_step_overhead_s * 1e6, 3),
    }
    if ctx.expert_imbalance:
        defaults["cost_model"]["ep_busiest_over_mean"] = {
            str(ep) if not r else f"{ep}+{r} redundant": f for ep, r, f in ctx.expert_imbalance}
    if "simulation" not in inst.model_fields_set:
        sim = inst.simulation
        defaults["simulation"] = {"requests": sim.requests, "seed": sim.seed, "max_candidates": sim.max_candidates}
    defaults.update(price_notes)
    return Problem(instance=inst, file=file, ctx=ctx, search=space, pins=inst.strategy, defaults=defaults,
                   price=price)


def _expert_imbalance(inst: Instance, arch: Architecture, space: SearchSpace, file: str | None
                      ) -> tuple[tuple[int, float], ...]:
    """Busiest-over-mean EP rank load for every EP degree searched, from the routing profile."""
    given = inst.workload.expert_loads
    if not arch.is_moe:
        raise InputError(file, "workload.expert_loads", given, f"{arch.name} is dense; a routing profile needs an "
                         "MoE model")
    path = Path(given)
    if not path.is_absolute() and file:
        path = Path(file).resolve().parent / path
    if not path.exists():
        raise InputError(file, "workload.expert_loads", given, "routing profile not found (a path relative to the "
                         "instance)")
    loads = read_expert_loads(path)
    if loads.experts != arch.experts:
        raise InputError(file, "workload.expert_loads", given, f"the profile has {loads.experts} experts per layer; "
                         f"{arch.name} routes to {arch.experts}")
    if inst.workload.expert_placement == "balanced":
        return tuple((ep, r, round(balanced_ep_imbalance(loads.counts, ep, r), 6))
                     for ep in space.ep if ep > 1 for r in space.redundant if r % ep == 0)
    return tuple((ep, 0, round(contiguous_ep_imbalance(loads.counts, ep), 6)) for ep in space.ep if ep > 1)


def _included_cost_model(inst: Instance, file: str | None) -> CostModelSpec:
    """The instance's cost model with an included calibration file's factors beneath its own."""
    spec = inst.cost_model
    if spec.include is None:
        return spec
    path = Path(spec.include)
    if not path.is_absolute() and file:
        path = Path(file).resolve().parent / path
    if not path.is_file():
        raise InputError(file, "cost_model.include", spec.include, "cost-model file not found")
    data = load_json(str(path))
    inner = data.get("cost_model") if isinstance(data, dict) else None
    if not isinstance(inner, dict):
        raise InputError(str(path), "cost_model", None, "a cost-model file holds a `cost_model` object of factors "
                         "(as `solve calibrate` writes it)")
    if "include" in inner:
        raise InputError(str(path), "cost_model.include", inner["include"], "a cost-model file cannot include another")
    try:
        included = CostModelSpec.model_validate(inner)
    except ValidationError as err:
        bad = from_validation_error(err, CostModelSpec, str(path))
        raise InputError(str(path), f"cost_model.{bad.path}".rstrip("."), bad.value, bad.accepted) from None
    own = spec.model_dump(exclude_none=True, exclude={"include"})
    return included.model_copy(update=own)


def parse_instance(data: Any, file: str | None = None) -> Instance:
    """Validate instance data, raising :class:`InputError` with the JSON path on failure."""
    if not isinstance(data, dict):
        raise InputError(file, "", data, "an instance must be a JSON object")
    try:
        return Instance.model_validate(data)
    except ValidationError as err:
        raise from_validation_error(err, Instance, file) from None


def load_problem(path: str) -> Problem:
    """Read, validate and resolve an instance file."""
    data = load_json(path)
    inst = parse_instance(data, path)
    return build_problem(inst, path)

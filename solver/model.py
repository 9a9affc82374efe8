"""The CP-SAT model: one-hot option choice, contiguous layer-to-stage booleans, guarded rules.

Variables
  ``opt[i]``      option i (configuration + batch) is chosen; exactly one.
  ``x[l][s]``     decoder layer l sits on pipeline stage s; ``stage[l] = sum_s s * x[l][s]``.
  ``used[s]``     stage s exists (the chosen option has pp > s).
Rules are enforced through named guard literals (DESIGN rule 3): in a normal solve every guard is the
constant true; in a diagnosis solve they are free literals passed as assumptions.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ortools.sat.python import cp_model

from .options import KINDS, NS_PER_S, Option, capacity_MiB
from .physics import even_split
from .problem import Problem

# Dynamic rule families (static ones live in options.STATIC_RULES).
SLO_RULES = (
    "slo.ttft_ms",
    "slo.tpot_ms",
    "workload.request_rate",
    "slo.min_request_rate",
    "slo.min_output_tokens_per_s",
    "slo.min_output_tokens_per_s_per_gpu",
)


def mem_rule(stage: int) -> str:
    """Guard name of the memory cap on one stage."""
    return f"mem_cap[stage={stage}]"


@dataclass
class BuiltModel:
    """A CP-SAT model with handles on its variables."""

    model: cp_model.CpModel
    options: list[Option]
    opt: list[cp_model.IntVar]
    x: list[list[cp_model.IntVar]]
    stage: list[cp_model.IntVar]
    used: list[cp_model.IntVar]
    guards: dict[str, cp_model.IntVar]
    objectives: dict[str, cp_model.IntVar] = field(default_factory=dict)
    rank: cp_model.LinearExpr | None = None
    split_key: cp_model.LinearExpr | None = None
    max_pp: int = 1

    def guard(self, name: str) -> cp_model.IntVar:
        """The guard literal of rule ``name`` (created on first use)."""
        return self.guards[name]


def _cycle_bounds_ns(problem: Problem, opt: Option) -> dict[str, float]:
    """Upper bounds on the cycle time D (ns) that each throughput-type rule imposes on ``opt``."""
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
    return {k: int(v * NS_PER_S) for k, v in bounds.items()}  # capacities round down


def _expr(per_layer: dict[str, int], const: int, counts: dict[str, cp_model.LinearExpr]) -> cp_model.LinearExpr:
    return sum(per_layer[k] * counts[k] for k in KINDS if per_layer[k] and k in counts) + const


def build_model(problem: Problem, options: list[Option], diagnose: bool = False) -> BuiltModel:
    """Build the model over ``options``. With ``diagnose`` every guard is a free literal."""
    m = cp_model.CpModel()
    arch = problem.arch
    kinds = arch.layer_kinds()
    n_layers = arch.layers
    max_pp = max((o.cfg.pp for o in options), default=1)
    guards: dict[str, cp_model.IntVar] = {}
    true = m.new_constant(1)

    def guard(name: str) -> cp_model.IntVar:
        if name not in guards:
            guards[name] = m.new_bool_var(name) if diagnose else true
        return guards[name]

    opt = [m.new_bool_var(f"opt[{o.index}]") for o in options]
    if opt:
        m.add_exactly_one(opt)
    else:
        m.add_bool_or([])  # no candidate at all: trivially infeasible

    # Static rules: a broken rule's guard forbids the option.
    for o, lit in zip(options, opt, strict=True):
        for rule in o.violations:
            m.add_implication(guard(rule), lit.Not())

    # Contiguous layer-to-stage assignment.
    x = [[m.new_bool_var(f"x[{l},{s}]") for s in range(max_pp)] for l in range(n_layers)]
    stage = [m.new_int_var(0, max_pp - 1, f"stage[{l}]") for l in range(n_layers)]
    for l in range(n_layers):
        m.add_exactly_one(x[l])
        m.add(stage[l] == sum(s * x[l][s] for s in range(max_pp)))
    m.add(stage[0] == 0)
    for l in range(n_layers - 1):
        m.add(stage[l + 1] - stage[l] >= 0)
        m.add(stage[l + 1] - stage[l] <= 1)
    used = [m.new_bool_var(f"used[{s}]") for s in range(max_pp)]
    for s in range(max_pp):
        m.add(used[s] == sum(lit for o, lit in zip(options, opt, strict=True) if o.cfg.pp > s))
        layers_on = sum(x[l][s] for l in range(n_layers))
        m.add(layers_on >= 1).only_enforce_if(used[s])
        m.add(layers_on == 0).only_enforce_if(used[s].Not())

    counts = [
        {k: sum(x[l][s] for l in range(n_layers) if kinds[l] == k) for k in KINDS if k in kinds}
        for s in range(max_pp)
    ]

    # Pinned split.
    pins = problem.pins
    if pins.layers_per_stage is not None:
        g = guard("pin.layers_per_stage")
        start = 0
        for s, n in enumerate(pins.layers_per_stage):
            for l in range(start, start + n):
                if s < max_pp:
                    m.add(stage[l] == s).only_enforce_if(g)
                else:
                    m.add_bool_or([g.Not()])
            start += n
    if not problem.search.uneven_layers:
        g = guard("search.uneven_layers")
        for o, lit in zip(options, opt, strict=True):
            for s, n in enumerate(even_split(n_layers, o.cfg.pp)):
                m.add(sum(x[l][s] for l in range(n_layers)) == n).only_enforce_if([lit, g])

    cap = capacity_MiB(problem)
    slo = problem.instance.slo
    objectives: dict[str, list[tuple[cp_model.LinearExpr, cp_model.IntVar]]] = {"z": [], "cycle": [], "ttft": []}
    for o, lit in zip(options, opt, strict=True):
        bounds = _cycle_bounds_ns(problem, o)
        ttft_limit = None if slo.ttft_ms is None else int(slo.ttft_ms * 1e-3 * NS_PER_S)
        for s in range(o.cfg.pp):
            st = o.stages[s]
            c = counts[s]
            m.add(_expr(*st.mem_MiB, c) <= cap).only_enforce_if([lit, guard(mem_rule(s))])
            cycle = _expr(*st.cycle_ns, c)
            for rule, bound in bounds.items():
                m.add(cycle <= bound).only_enforce_if([lit, guard(rule)])
            dec = _expr(*st.dec_ns, c)
            ttft = o.ttft_const_ns + o.cfg.pp * dec
            if ttft_limit is not None:
                m.add(ttft <= ttft_limit).only_enforce_if([lit, guard("slo.ttft_ms")])
            objectives["z"].append((_expr(*st.zcost_ps, c), lit))
            objectives["cycle"].append((cycle, lit))
            objectives["ttft"].append((ttft, lit))

    built = BuiltModel(m, options, opt, x, stage, used, guards, max_pp=max_pp)
    # Objective variables: each is the chosen option's maximum over its stages.
    for name, terms in objectives.items():
        ub = _upper_bound(options, name, kinds)
        var = m.new_int_var(0, ub, f"obj_{name}")
        for expr, lit in terms:
            m.add(var >= expr).only_enforce_if(lit)
        built.objectives[name] = var
    built.objectives["gpus"] = m.new_int_var(0, max((o.cfg.gpus for o in options), default=0), "obj_gpus")
    m.add(built.objectives["gpus"] == sum(o.cfg.gpus * lit for o, lit in zip(options, opt, strict=True)))
    built.rank = sum(o.index * lit for o, lit in zip(options, opt, strict=True))
    # Front-loaded splits first: a deterministic, lexicographic preference among equal plans.
    built.split_key = sum(stage[l] for l in range(n_layers))
    return built


def _upper_bound(options: list[Option], name: str, kinds: tuple[str, ...]) -> int:
    """A safe upper bound of an objective: every layer on one stage of the worst option."""
    n = {k: kinds.count(k) for k in KINDS}
    ub = 1
    for o in options:
        for st in o.stages:
            table = {"z": st.zcost_ps, "cycle": st.cycle_ns, "ttft": st.dec_ns}[name]
            per, const = table
            v = sum(per[k] * n[k] for k in KINDS) + const
            if name == "ttft":
                v = o.ttft_const_ns + o.cfg.pp * v
            ub = max(ub, v)
    return ub

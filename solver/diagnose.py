"""Proofs of infeasibility: the smallest conflicting set of requirements, in numbers, and verified repairs.

DESIGN rule 4: diagnosis is its own solve. The model holds every candidate (illegal ones too), each
rule family behind a named guard literal; the guards are the assumptions. CP-SAT's core is shrunk to
a minimal one by deletion, then re-checked: the set is infeasible and dropping any one member makes
the rest feasible. One worker, no objective, no hints, no symmetry-breaking cuts.

Certificate: for every member, the best value its quantity can reach while the other members hold
(a solve of its own), which must miss the member's limit; that is arithmetic a person can redo.
Repairs are changed instances solved again by the ordinary planner, so each one is verified.
"""

from __future__ import annotations

import math
import time
from typing import Any

from ortools.sat.python import cp_model

from .model import BuiltModel, build_model, mem_rule
from .options import (
    enumerate_options,
)
from .physics import (
    COMPUTE_DTYPE,
    GB,
    WEIGHT_BYTES,
    GiB,
    param_counts,
    peak_tflops,
    weight_dtype_supported,
)
from .problem import Problem, build_problem

# What each rule's certificate optimises: (model quantity, how to print it, the instance's limit).
_QUANTITY = {
    "gpu_count": "gpus",
    "slo.tpot_ms": "cycle",
    "slo.ttft_ms": "ttft",
    "workload.request_rate": "inv_rate",
    "slo.min_request_rate": "inv_rate",
    "slo.min_output_tokens_per_s": "inv_tok",
    "slo.min_output_tokens_per_s_per_gpu": "z",
}

# Alternative conflicts longer than this are not reported (the first conflict always is), and the
# search for each alternative stops after this many CP-SAT solves.
MAX_ALTERNATIVE_MEMBERS = 5
MAX_ALTERNATIVE_SOLVES = 6
# Catalog GPU types tried by the "another GPU type" repair, at most this many GPUs each.
MAX_REPAIR_GPUS = 64


def _solver(time_limit: float) -> cp_model.CpSolver:
    s = cp_model.CpSolver()
    s.parameters.num_workers = 1  # no interleaving: reproducible answers
    s.parameters.random_seed = 0
    s.parameters.max_time_in_seconds = time_limit
    # Presolve probing costs a flat ~1.3 s per solve on these models and buys nothing here: the
    # bound clauses already propagate (measured on llama70b_t4: 1.3 s -> 0.07 s per solve).
    s.parameters.cp_model_probing_level = 0
    return s


class _Oracle:
    """Feasibility and optimisation under a subset S of the rules.

    The model for S holds the candidates that break no static rule of S (the static guards of S,
    fixed true, would forbid the others) and enforces S's dynamic guards; every other guard is a
    free literal, so its rule does not bind. Models are cached per S.
    """

    def __init__(self, problem: Problem, options: list, time_limit: float):
        self.problem = problem
        self.options = options
        # Split-independent bound violations filter exactly like static ones (the model's bound
        # clauses would forbid those options anyway), which keeps each model small.
        self.violations = [frozenset(o.violations) | frozenset(o.bound_violations) for o in options]
        self.time_limit = time_limit
        self.solves = 0
        self._models: dict[frozenset[str], BuiltModel] = {}
        self._feasible: dict[frozenset[str], bool | None] = {}

    def model(self, names: list[str] | frozenset[str], survivors: list | None = None) -> BuiltModel:
        key = frozenset(names)
        if key not in self._models:
            built = build_model(self.problem, self.survivors(key) if survivors is None else survivors,
                                diagnose=True)
            for name in key:
                if name in built.guards:
                    built.model.add(built.guards[name] == 1)
            self._models[key] = built
        return self._models[key]

    def survivors(self, key: frozenset[str]) -> list:
        return [o for o, v in zip(self.options, self.violations, strict=True) if not (v & key)]

    def witness(self, key: frozenset[str], survivors: list) -> bool:
        """A candidate split that meets every rule of ``key``: feasibility without a solve."""
        from .planner import witness

        return witness(self.problem, survivors, key) is not None

    def feasible(self, names: list[str]) -> bool | None:
        """True / False, or None when the time limit left it open."""
        key = frozenset(names)
        if key not in self._feasible:
            survivors = self.survivors(key)
            if not survivors:
                self._feasible[key] = False
                return False
            if self.witness(key, survivors):
                self._feasible[key] = True
                return True
            built = self.model(key, survivors)
            built.model.clear_objective()
            self.solves += 1
            code = _solver(self.time_limit).solve(built.model)
            self._feasible[key] = (False if code == cp_model.INFEASIBLE
                                   else True if code in (cp_model.OPTIMAL, cp_model.FEASIBLE) else None)
        return self._feasible[key]

    def best(self, names: list[str], quantity: str) -> tuple[int | None, BuiltModel | None, cp_model.CpSolver | None]:
        """Minimum of ``quantity`` with the rules ``names`` enforced (None when infeasible/open)."""
        built = self.model(names)
        built.model.minimize(built.objective(quantity))
        solver = _solver(self.time_limit)
        self.solves += 1
        code = solver.solve(built.model)
        built.model.clear_objective()
        if code not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
            return None, None, None
        return int(round(solver.objective_value)), built, solver


class _Budget(Exception):
    """The alternative-conflict search ran out of its solve budget."""


def minimal_conflict(oracle: _Oracle, names: list[str], max_solves: int | None = None) -> tuple[list[str], bool]:
    """Shrink an infeasible rule set by deletion, in :func:`_deletion_order`; returns (set, minimal).

    With ``max_solves``, gives up (returns an empty set) once the oracle has run that many more
    CP-SAT solves: a count, not a time, so the output never depends on the machine's load.
    """
    if max_solves is not None:
        limit = oracle.solves + max_solves
        try:
            return _deletion(oracle, names, lambda: oracle.solves > limit)
        except _Budget:
            return [], False
    return _deletion(oracle, names, lambda: False)


def _deletion(oracle: _Oracle, names: list[str], over) -> tuple[list[str], bool]:
    def feasible(rules):
        if over():
            raise _Budget
        return oracle.feasible(rules)

    if feasible(names) is not False:
        return [], False
    current = list(names)
    # A family of several rules (the memory caps of all stages) is first tried as a whole.
    for family in _DELETION_FAMILIES:
        group = [n for n in current if n.startswith(family)]
        if len(group) > 1:
            trial = [n for n in current if n not in group]
            if feasible(trial) is False:
                current = trial
    for member in sorted(current, key=_deletion_order):
        trial = [n for n in current if n != member]
        if feasible(trial) is False:
            current = trial
    # Re-check: the set is infeasible and dropping any one member makes the rest feasible.
    ok = feasible(current) is False and all(feasible([n for n in current if n != m]) is True for m in current)
    return sorted(current, key=_rule_order), ok


# Which rules a proof prefers to keep, least preferred first: deletion tries to drop these first.
# Incidental rules (layout, search limits) go before the physics (memory), the targets, the size of
# the cluster, and last the pinned fields a user proposed.
_DELETION_FAMILIES = ["search.", "batch_cap", "ep_layout", "experts_divisible", "pp_within_layers", "weights_allowed",
                      "kv_cache_allowed", "tp_within_node", "heads_divisible", "mem_cap", "slo.", "workload.",
                      "gpu_count", "pin."]


def _deletion_order(name: str) -> tuple:
    for i, f in enumerate(_DELETION_FAMILIES):
        if name.startswith(f):
            return (i, name)
    return (len(_DELETION_FAMILIES), name)


def _rule_order(name: str) -> tuple:
    families = ["pin.", "gpu_count", "tp_within_node", "heads_divisible", "experts_divisible", "ep_layout",
                "pp_within_layers", "weights_allowed", "kv_cache_allowed", "batch_cap", "search.", "mem_cap",
                "workload.", "slo."]
    for i, f in enumerate(families):
        if name.startswith(f):
            return (i, name)
    return (len(families), name)


# ---------------------------------------------------------------------------------------------
# Statements in numbers
# ---------------------------------------------------------------------------------------------


def _static_statement(problem: Problem, rule: str) -> str:
    a, hw, inst, pins = problem.arch, problem.ctx.hw, problem.instance, problem.pins
    if rule == "gpu_count":
        fits = sorted({(tp, pp, dp) for tp in problem.search.tp for pp in problem.search.pp for dp in problem.search.dp
                       if tp * pp * dp <= hw.total_gpus})
        shown = ", ".join(f"tp={t} pp={p} dp={d}" for t, p, d in fits[:6]) + (" ..." if len(fits) > 6 else "")
        return (f"the cluster has {hw.total_gpus} GPU(s) ({hw.nodes} node(s) x {hw.gpus_per_node}): tp x pp x dp <= "
                f"{hw.total_gpus} allows only {shown}")
    if rule == "tp_within_node":
        return f"a TP group must sit inside one node of {hw.gpus_per_node} GPU(s): tp divides {hw.gpus_per_node}"
    if rule == "heads_divisible":
        kv = "" if a.is_mla else f" and its {a.kv_heads} KV heads"
        return f"tp must divide the model's {a.heads} attention heads{kv}"
    if rule == "experts_divisible":
        return f"ep must divide the {a.experts} routed experts"
    if rule == "ep_layout":
        return "expert parallelism must fit the TP group (vLLM: ep is 1 or tp)"
    if rule == "pp_within_layers":
        return f"at most {a.layers} pipeline stages (one per decoder layer)"
    if rule == "weights_allowed":
        return f"weights must be one of {inst.precision.weights} (precision.weights)"
    if rule == "kv_cache_allowed":
        return f"KV cache must be one of {inst.precision.kv_cache} (precision.kv_cache)"
    if rule == "batch_cap":
        return f"at most {inst.limits.max_num_seqs} sequences per replica (limits.max_num_seqs)"
    if rule == "search.uneven_layers":
        return "layers must be split evenly over stages (search.uneven_layers is false)"
    if rule.startswith("pin."):
        key = rule[4:]
        return f"{key} is pinned to {getattr(pins, key)}"
    return rule


def _limit_of(problem: Problem, rule: str) -> float | None:
    inst = problem.instance
    if rule == "gpu_count":
        return problem.ctx.hw.total_gpus
    if rule.startswith("mem_cap"):
        return problem.ctx.capacity_bytes / GiB
    if rule == "workload.request_rate":
        return inst.workload.request_rate
    if rule.startswith("slo."):
        return getattr(inst.slo, rule[4:])
    return None


_UNITS = {"gpus": "GPUs", "cycle": "ms TPOT", "ttft": "ms TTFT", "inv_rate": "req/s", "inv_tok": "output tokens/s",
          "z": "output tokens/s per GPU"}


def _describe_plan(built: BuiltModel, solver: cp_model.CpSolver) -> str:
    chosen = next(o for o, lit in zip(built.options, built.opt, strict=True) if solver.boolean_value(lit))
    stages = [solver.value(v) for v in built.stage]
    split = [stages.count(s) for s in range(chosen.cfg.pp)]
    return f"{chosen.cfg.label()}, max_num_seqs {chosen.batch}, layers {'+'.join(map(str, split))}"


def certificate(problem: Problem, oracle: _Oracle, conflict: list[str]) -> list[dict[str, Any]]:
    """Each member with its numbers: the best its quantity reaches while the other members hold."""
    out = []
    for rule in conflict:
        others = [n for n in conflict if n != rule]
        entry: dict[str, Any] = {"rule": rule}
        quantity = _QUANTITY.get(rule)
        if rule.startswith("mem_cap"):
            quantity = f"mem[{rule.split('=')[1].rstrip(']')}]"
        limit = _limit_of(problem, rule)
        if quantity is None:
            entry["statement"] = _static_statement(problem, rule)
            entry["numbers"] = {}
            out.append(entry)
            continue
        raw, built, solver = oracle.best(others, quantity)
        best = None if raw is None else oracle.options[0].units.to_user(
            quantity, raw, problem.instance.workload.output_tokens)
        entry["numbers"] = {"limit": limit, "best_with_others": None if best is None else round(best, 4)}
        if rule.startswith("mem_cap"):
            s = int(rule.split("=")[1].rstrip("]"))
            lim_txt = (f"usable {limit:.2f} GiB per GPU ({problem.ctx.hw.gpu.memory_GiB:g} GiB x "
                       f"{problem.instance.limits.memory_utilization:g})")
            if best is None:
                entry["statement"] = f"stage {s} must fit in {lim_txt}"
            else:
                entry["statement"] = (f"stage {s} must fit in {lim_txt}; with only the other members of this set enforced, "
                                      f"the lightest stage {s} needs {best:.2f} GiB ({_describe_plan(built, solver)})")
        elif rule == "gpu_count":
            entry["statement"] = _static_statement(problem, rule)
            if best is not None:
                entry["statement"] += (f"; drop it and the rest of this set holds with {best:.0f} GPUs at the fewest "
                                       f"({_describe_plan(built, solver)})")
        else:
            unit = _UNITS[quantity]
            sense = "<=" if rule in ("slo.tpot_ms", "slo.ttft_ms") else ">="
            target = f"{rule.split('.', 1)[1]} {sense} {limit:g}"
            if best is None:
                entry["statement"] = f"{target}"
            else:
                word = "lowest" if sense == "<=" else "highest"
                entry["statement"] = (f"{target}; with only the other members of this set enforced, the {word} achievable is "
                                      f"{best:,.2f} {unit} ({_describe_plan(built, solver)})")
        out.append(entry)
    return out


def lower_bounds(problem: Problem) -> dict[str, Any]:
    """Physics bounds that hold for every configuration (never typed in)."""
    a, hw, ctx = problem.arch, problem.ctx.hw, problem.ctx
    pc = param_counts(a)
    weights_GB = {}
    for w in ("bf16", "fp8", "int4"):
        weights_GB[w] = round(_weights_bytes(problem, w) / GB, 2)
    usable = ctx.capacity_bytes
    gpu = hw.gpu
    lightest = min((w for w in problem.instance.precision.weights if weight_dtype_supported(gpu, w)),
                   key=lambda w: WEIGHT_BYTES[w], default="bf16")
    need = _weights_bytes(problem, lightest)
    best_peak = max(peak_tflops(gpu, COMPUTE_DTYPE[w]) or 0 for w in problem.instance.precision.weights)
    active = pc.active
    # Roofline: each output token costs at least 2 x active parameters FLOPs (attention excluded).
    roofline_tok_s_per_gpu = best_peak * 1e12 / (2 * active)
    min_bytes = min(_weights_bytes(problem, w) for w in problem.instance.precision.weights)
    # A decode step streams the weights at least once from HBM, spread over every GPU at best.
    tpot_floor_ms = min_bytes / (hw.total_gpus * gpu.hbm_TBps * 1e12) * 1e3
    return {
        "total_params_B": round(pc.total / 1e9, 3),
        "active_params_B": round(active / 1e9, 3),
        "weights_GB": weights_GB,
        "usable_GiB_per_gpu": round(usable / GiB, 3),
        "min_gpus_for_weights": math.ceil(need / usable),
        "min_gpus_for_weights_precision": lightest,
        "roofline_output_tokens_per_s_per_gpu": round(roofline_tok_s_per_gpu, 1),
        "roofline_tpot_floor_ms": round(tpot_floor_ms, 4),
    }


def _weights_bytes(problem: Problem, weights: str) -> float:
    from .physics import (
        Config,
        embedding_bytes_per_gpu,
        layer_weight_bytes_per_gpu,
        lm_head_bytes_per_gpu,
    )

    a = problem.arch
    cfg = Config(1, 1, 1, 1, weights, "bf16")
    kinds = a.layer_kinds()
    return (sum(layer_weight_bytes_per_gpu(a, k, cfg) for k in kinds) + embedding_bytes_per_gpu(a, 1)
            + lm_head_bytes_per_gpu(a, 1, 1))


# ---------------------------------------------------------------------------------------------
# Repairs: changed instances, solved again
# ---------------------------------------------------------------------------------------------


def _outcome(change: str, kind: str, size: float, res, objective: str) -> dict[str, Any]:
    from .planner import OBJECTIVE_UNITS

    if res.placement is None:
        return {"change": change, "kind": kind, "size": size, "verified": False, "result": f"still {res.status}"}
    st = res.placement.strategy()
    layers = "+".join(map(str, res.placement.layers_per_stage))
    m = res.evaluation.metrics
    return {"change": change, "kind": kind, "size": size, "verified": True,
            "result": (f"feasible, for example: tp={st['tp']} pp={st['pp']} dp={st['dp']} ep={st['ep']} {st['weights']}/"
                       f"{st['kv_cache']}, layers {layers}; {m.output_tokens_per_s_per_gpu:,.3g} tok/s per GPU, "
                       f"TTFT {m.ttft_ms:,.0f} ms, TPOT {m.tpot_ms:.1f} ms"),
            "strategy": st, "layers_per_stage": list(res.placement.layers_per_stage),
            "objective": res.objective, "objective_unit": OBJECTIVE_UNITS[objective]}


def _attempt(problem: Problem, change: str, kind: str, size: float, update: dict[str, Any],
             params, objective: str | None = None) -> dict[str, Any]:
    """Solve the instance with ``update`` applied; a repair is verified when a plan comes back."""
    from .planner import plan

    inst = problem.instance.model_copy(update=update, deep=True)
    if objective:
        inst = inst.model_copy(update={"objective": objective})
    relaxed = build_problem(inst, problem.file)
    return _outcome(change, kind, size, plan(relaxed, params, tie_breaks=False), inst.objective)


def _more_gpus(problem: Problem, params, gpu: Any = None, label: str | None = None) -> dict[str, Any]:
    """The fewest GPUs (of this type, or of ``gpu``) that satisfy every requirement.

    GPU counts are scanned upward, each with only the configurations of exactly that count, so the
    first feasible count is the minimum and larger clusters are never enumerated.
    """
    from .planner import feasible_plan

    cl = problem.instance.cluster
    per_node = cl.gpus_per_node if gpu is None else max(cl.gpus_per_node, 8)
    nodes = max(1, MAX_REPAIR_GPUS // per_node)
    cluster = cl.model_copy(update={"nodes": nodes, "gpus_per_node": per_node,
                                    **({"gpu": gpu, "intra_node": None, "inter_node": None} if gpu else {})})
    name = label or problem.ctx.hw.gpu.name
    relaxed = build_problem(problem.instance.model_copy(update={"cluster": cluster}, deep=True), problem.file)
    s = relaxed.search
    counts = sorted({tp * pp * dp for tp in s.tp for pp in s.pp for dp in s.dp if tp * pp * dp <= nodes * per_node})
    start = 1 if gpu else problem.ctx.hw.total_gpus + 1
    for n in (c for c in counts if c >= start):
        res = feasible_plan(relaxed, params, only_gpus=n)
        if res.placement is not None:
            out = _outcome("", "gpus", 4, res, relaxed.instance.objective)
            n_nodes = math.ceil(n / per_node)
            out["change"] = (f"use {n} x {name}" + (f" ({n_nodes} nodes of {per_node})" if n_nodes > 1 else "")
                             + (f" instead of {problem.ctx.hw.total_gpus} x {problem.ctx.hw.gpu.name}" if gpu else ""))
            out["gpus"] = n
            return out
    return {"change": f"more {name} GPUs (up to {nodes * per_node})", "kind": "gpus", "size": 99,
            "verified": False, "result": f"no count up to {nodes * per_node} satisfies every requirement"}


def repairs(problem: Problem, conflict: list[str], params) -> list[dict[str, Any]]:
    """Verified changes that make the instance feasible, smallest first."""
    inst = problem.instance
    out: list[dict[str, Any]] = []
    pins = problem.pins
    for rule in conflict:
        if rule.startswith("pin."):
            key = rule[4:]
            new_pins = pins.model_copy(update={key: None})
            if key == "pp" and pins.layers_per_stage is not None:
                new_pins = new_pins.model_copy(update={"layers_per_stage": None})
            out.append(_attempt(problem, f"drop the pinned {key}={getattr(pins, key)}", "pin", 1,
                                {"strategy": new_pins}, params))
    if any(r.startswith("pin.") for r in conflict):
        from .schema import StrategyPins

        unpinned = _attempt(problem, "drop every pinned field", "pin", 2, {"strategy": StrategyPins()}, params)
        if sum(1 for r in conflict if r.startswith("pin.")) > 1 or not unpinned["verified"]:
            out.append(unpinned)
        if not unpinned["verified"] and ("gpu_count" in conflict or any(r.startswith("mem_cap") for r in conflict)):
            # Even without the pins the cluster is too small: the fewest GPUs, and another type.
            free = build_problem(problem.instance.model_copy(update={"strategy": StrategyPins()}, deep=True),
                                 problem.file)
            more = _more_gpus(free, params)
            if more["verified"]:
                more["change"] = f"drop the pins and {more['change']}"
                out.append(more)
            out.extend(_other_gpu_types(free, params, prefix="drop the pins; "))
    slo_targets = [r for r in conflict if r.startswith("slo.") or r == "workload.request_rate"]
    for rule in slo_targets:
        out.append(_best_slo(problem, rule, params))
    heavy = any(r.startswith("mem_cap") or r == "gpu_count" for r in conflict) or slo_targets
    if heavy or "weights_allowed" in conflict or "kv_cache_allowed" in conflict:
        gpu = problem.ctx.hw.gpu
        allowed = set(inst.precision.weights)
        for w in ("fp8", "int8", "int4", "fp4"):
            if w not in allowed and weight_dtype_supported(gpu, w):
                prec = inst.precision.model_copy(update={"weights": [*inst.precision.weights, w]})
                alone = _attempt(problem, f"allow {w} weights", "precision", 3, {"precision": prec}, params)
                out.append(alone)
                if not alone["verified"] and "gpu_count" in conflict and pins.is_empty():
                    # The precision does not suffice alone: how few GPUs of this type would do with it.
                    lighter = build_problem(inst.model_copy(update={"precision": prec}, deep=True), problem.file)
                    both = _more_gpus(lighter, params)
                    if both["verified"]:
                        both["change"] = f"allow {w} weights and {both['change']}"
                        both["kind"], both["size"] = "precision+gpus", 4.5
                        out.append(both)
        if "fp8" not in inst.precision.kv_cache and gpu.family != "turing":
            prec = inst.precision.model_copy(update={"kv_cache": [*inst.precision.kv_cache, "fp8"]})
            out.append(_attempt(problem, "allow an fp8 KV cache", "precision", 3, {"precision": prec}, params))
    if any(r.startswith("mem_cap") for r in conflict) and inst.limits.memory_utilization < 0.95:
        lim = inst.limits.model_copy(update={"memory_utilization": 0.95})
        out.append(_attempt(problem, f"raise memory_utilization from {inst.limits.memory_utilization:g} to 0.95",
                            "limits", 3.5, {"limits": lim}, params))
    if "batch_cap" in conflict:
        need = math.ceil((inst.workload.concurrency or inst.limits.max_num_seqs) / 1)
        lim = inst.limits.model_copy(update={"max_num_seqs": max(need, inst.limits.max_num_seqs * 2)})
        out.append(_attempt(problem, f"raise limits.max_num_seqs to {lim.max_num_seqs}", "limits", 3.5,
                            {"limits": lim}, params))
    if "search.uneven_layers" in conflict:
        search = inst.search.model_copy(update={"uneven_layers": True})
        out.append(_attempt(problem, "allow uneven layers per stage", "search", 2, {"search": search}, params))
    if heavy and pins.is_empty():
        out.append(_more_gpus(problem, params))
        out.extend(_other_gpu_types(problem, params))
    verified = [r for r in out if r["verified"]]
    failed = [r for r in out if not r["verified"]]
    verified.sort(key=lambda r: (r["size"], r.get("gpus", 0)))
    return verified + failed


def _other_gpu_types(problem: Problem, params, prefix: str = "") -> list[dict[str, Any]]:
    """The catalog GPU type needing the fewest GPUs (the next three listed as alternatives)."""
    from .catalog import known_gpus, resolve_gpu

    alternatives = []
    for name in known_gpus():
        if name == problem.ctx.hw.gpu.name:
            continue
        alt = _more_gpus(problem, params, gpu=name, label=name)
        if alt["verified"]:
            alternatives.append((alt["gpus"], resolve_gpu(name).memory_GiB, name, alt))
    if not alternatives:
        return []
    alternatives.sort(key=lambda t: t[:3])
    best = alternatives[0][3]
    best.update(kind="gpu_type", size=5, change=f"{prefix}another GPU type: {best['change']}",
                alternatives=[a[3]["change"] for a in alternatives[1:4]])
    return [best]


def _best_slo(problem: Problem, rule: str, params) -> dict[str, Any]:
    """The best value of one target on this hardware with the other requirements kept."""
    from .planner import plan

    inst = problem.instance
    field = rule.split(".", 1)[1]
    objective = {"tpot_ms": "min_tpot", "ttft_ms": "min_ttft"}.get(field, "max_throughput_per_gpu")
    if rule == "workload.request_rate":
        update = {"workload": inst.workload.model_copy(update={"request_rate": None, "offline": True})}
    else:
        update = {"slo": inst.slo.model_copy(update={field: None})}
    relaxed = build_problem(inst.model_copy(update={**update, "objective": objective}, deep=True), problem.file)
    result = plan(relaxed, params, tie_breaks=False)
    res = _outcome("", "slo", 2.5, result, objective)
    if not res["verified"]:
        res["change"] = f"relax {rule}"
        return res
    m = result.evaluation.metrics
    if field == "tpot_ms":
        best, txt = m.tpot_ms, f"TPOT >= {m.tpot_ms:.2f} ms is the best possible here"
    elif field == "ttft_ms":
        best, txt = m.ttft_ms, f"TTFT >= {m.ttft_ms:.1f} ms is the best possible here"
    elif field == "min_output_tokens_per_s_per_gpu":
        best, txt = m.output_tokens_per_s_per_gpu, (f"at most {m.output_tokens_per_s_per_gpu:,.0f} output tokens/s per "
                                                    "GPU are possible here")
    elif field == "min_output_tokens_per_s":
        best, txt = m.output_tokens_per_s, f"at most {m.output_tokens_per_s:,.0f} output tokens/s are possible here"
    else:
        best, txt = m.max_request_rate, f"at most {m.max_request_rate:.2f} req/s are sustainable here"
    res["change"] = f"relax {rule} to {best:,.4g}: {txt}"
    res["best_value"] = best
    return res


# ---------------------------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------------------------


def candidate_rules(problem: Problem, options: list) -> list[str]:
    """Every rule that binds somewhere: static rules some candidate breaks, and the dynamic rules."""
    from .options import cycle_bounds

    rules = {v for o in options for v in o.violations}
    rules |= {mem_rule(s) for s in range(max((o.cfg.pp for o in options), default=1))}
    if options:
        rules |= set(cycle_bounds(problem, options[0]))  # the throughput-type targets the instance sets
    if problem.instance.slo.ttft_ms is not None:
        rules.add("slo.ttft_ms")
    if problem.pins.layers_per_stage is not None:
        rules.add("pin.layers_per_stage")
    if not problem.search.uneven_layers:
        rules.add("search.uneven_layers")
    return sorted(rules, key=_rule_order)


def diagnose(problem: Problem, params=None, evaluation=None, with_repairs: bool = True,
             time_limit: float = 20.0, max_conflicts: int = 3) -> dict[str, Any]:
    """The proof block of the JSON document for an infeasible problem (see module docstring)."""
    from .planner import SolveParams

    params = params or SolveParams()
    t0 = time.perf_counter()
    options = enumerate_options(problem, include_illegal=True)
    oracle = _Oracle(problem, options, time_limit)
    names = candidate_rules(problem, options)
    proof: dict[str, Any] = {"lower_bounds": lower_bounds(problem)}
    state = oracle.feasible(names)
    if state is True:
        # The requirements admit a plan: a proposed placement failed on a field that was filled
        # in (split or batch), not on a pinned one.
        proof.update({"conflict": [], "conflicts": [], "minimal": True, "verified": True,
                      "summary": "the pinned fields and every requirement can hold together: the failing "
                                 "requirements come from the fields that were filled in (precision, split or batch); the "
                                 "repair below keeps every pin"})
        proof["repairs"] = [_attempt(problem, "keep the pins, let the solver choose the rest", "pin", 0, {}, params)]
        proof["diagnosis"] = {"time_s": round(time.perf_counter() - t0, 4), "solves": oracle.solves,
                              "options": len(options)}
        return proof
    if state is None:
        proof.update({"conflict": [], "conflicts": [], "minimal": False, "verified": False,
                      "summary": "the diagnosis did not finish within its time limit"})
        return proof
    first, minimal = minimal_conflict(oracle, names)
    conflicts = [(first, minimal, "")]
    # Further conflicts a person needs to see: the one left once the proposed pins are dropped
    # ("even without the pins ..."), and ones avoiding a member of the first.
    pins = [n for n in first if n.startswith("pin.")]
    seeds: list[tuple[list[str], str]] = []
    if pins:
        seeds.append(([n for n in names if not n.startswith("pin.")], "without the pinned fields"))
    for member in first:
        if not member.startswith("pin."):
            seeds.append(([n for n in names if n != member], f"another conflict, without {member}"))
    seen = {frozenset(first)}
    for seed, why in seeds:
        if len(conflicts) >= max_conflicts:
            break
        more, ok = minimal_conflict(oracle, seed, max_solves=MAX_ALTERNATIVE_SOLVES)
        # A long alternative (every stage's memory cap, say) reads as noise next to the first.
        if more and frozenset(more) not in seen and len(more) <= MAX_ALTERNATIVE_MEMBERS:
            seen.add(frozenset(more))
            conflicts.append((more, ok, why))
    proof["conflicts"] = [
        {"rules": c, "minimal": ok, "context": why, "members": certificate(problem, oracle, c)}
        for c, ok, why in conflicts
    ]
    proof["conflict"] = proof["conflicts"][0]["members"]
    proof["minimal"] = minimal
    proof["verified"] = all(c["minimal"] for c in proof["conflicts"])
    proof["summary"] = _summary(problem, proof["conflict"])
    proof["diagnosis"] = {"time_s": round(time.perf_counter() - t0, 4), "solves": oracle.solves,
                          "options": len(options), "candidate_rules": names}
    if evaluation is not None:
        proof["failed_requirements"] = [r.rule for r in evaluation.failed()]
    if with_repairs:
        proof["repairs"] = repairs(problem, sorted({r for c, _, _ in conflicts for r in c}, key=_rule_order), params)
    proof["time_s"] = round(time.perf_counter() - t0, 4)
    return proof


def _summary(problem: Problem, conflict: list[dict[str, Any]]) -> str:
    rules = [c["rule"] for c in conflict]
    if not rules:
        return "no conflict found"
    return (f"{len(rules)} requirement(s) cannot hold together: {', '.join(rules)}; dropping any one of them "
            "leaves a feasible problem")


def render_proof(proof: dict[str, Any], md: bool = False) -> str:
    """The proof section of the text / Markdown report, readable without knowing CP-SAT."""
    h = (lambda t: f"\n## {t}") if md else (lambda t: f"\n{t}")
    out = [h("Proof of infeasibility")]
    if not proof.get("conflict"):
        out.append(f"  {proof.get('summary', '')}")
    for k, conflict in enumerate(proof.get("conflicts") or []):
        head = "These requirements cannot all hold" if k == 0 else f"Also ({conflict['context']}): these cannot all hold"
        out.append(f"  {head} (a minimal set: drop any one and the rest can hold"
                   + ("; checked" if conflict["minimal"] else "; minimality NOT confirmed") + "):")
        members = conflict["members"]
        caps = [c for c in members if c["rule"].startswith("mem_cap")]
        shown = members if len(caps) <= 3 else [c for c in members if not c["rule"].startswith("mem_cap")]
        for i, c in enumerate(shown, 1):
            out.append(f"  {i}. [{c['rule']}] {c['statement']}")
        if len(caps) > 3:
            stages = [int(c["rule"].split("=")[1].rstrip("]")) for c in caps]
            worst = max((c["numbers"].get("best_with_others") or 0, c["rule"]) for c in caps)
            out.append(f"  {len(shown) + 1}. [mem_cap[stage={min(stages)}..{max(stages)}]] every one of these "
                       f"{len(caps)} stages must fit in usable {caps[0]['numbers']['limit']:.2f} GiB per GPU; "
                       f"with the other members enforced, the lightest placement still needs "
                       f"{worst[0]:.2f} GiB on {worst[1][8:-1].replace('=', ' ')} (each stage's figure is in the JSON proof)")
    lb = proof.get("lower_bounds") or {}
    if lb:
        out.append(h("Bounds from the physics (hold for every configuration)"))
        w = lb["weights_GB"]
        out.append(f"  parameters {lb['total_params_B']} B ({lb['active_params_B']} B active per token); weights "
                   f"{w['bf16']} GB at BF16, {w['fp8']} GB at FP8, {w['int4']} GB at INT4")
        out.append(f"  usable memory {lb['usable_GiB_per_gpu']} GiB per GPU: the weights alone need at least "
                   f"{lb['min_gpus_for_weights']} GPU(s) at {lb['min_gpus_for_weights_precision']}")
        out.append(f"  roofline: at most {lb['roofline_output_tokens_per_s_per_gpu']:,} output tokens/s per GPU "
                   f"(peak FLOP/s / 2 x active parameters); TPOT at least {lb['roofline_tpot_floor_ms']:.4g} ms "
                   "(weights streamed once per step over all GPUs' HBM)")
    reps = proof.get("repairs") or []
    if reps:
        out.append(h("Repairs (each verified by solving the changed instance)"))
        for i, r in enumerate(reps, 1):
            mark = "verified" if r["verified"] else "does not suffice"
            out.append(f"  {i}. {r['change']} [{mark}]: {r['result']}")
            for alt in r.get("alternatives", []):
                out.append(f"       also: {alt}")
    return "\n".join(out)


__all__ = ["diagnose", "render_proof", "minimal_conflict", "lower_bounds", "mem_rule"]

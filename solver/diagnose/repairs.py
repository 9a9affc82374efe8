"""Repairs: changed instances solved again by the ordinary planner, so each one is verified."""

from __future__ import annotations

import math
from typing import Any

from ..input.catalog import known_gpus, resolve_gpu
from ..input.schema import StrategyPins
from ..physics import weight_dtype_supported
from ..problem import COST_OBJECTIVES, Problem, build_problem
from ..search.objectives import OBJECTIVE_UNITS
from ..search.planner import feasible_plan, plan

# Catalog GPU types tried by the "another GPU type" repair, at most this many GPUs each.
MAX_REPAIR_GPUS = 64


def _outcome(change: str, kind: str, size: float, res, objective: str) -> dict[str, Any]:

    if res.placement is None:
        return {"change": change, "kind": kind, "size": size, "verified": False, "result": f"still {res.status}"}
    st = res.placement.strategy()
    layers = "+".join(map(str, res.placement.layers_per_stage))
    m = res.evaluation.metrics
    adp = f" attention_dp={st['attention_dp']}" if st.get("attention_dp", 1) > 1 else ""
    return {"change": change, "kind": kind, "size": size, "verified": True,
            "result": (f"feasible, for example: tp={st['tp']} pp={st['pp']} dp={st['dp']}{adp} ep={st['ep']} {st['weights']}/"
                       f"{st['kv_cache']}, layers {layers}; {m.output_tokens_per_s_per_gpu:,.3g} tok/s per GPU, "
                       f"TTFT {m.ttft_ms:,.0f} ms, TPOT {m.tpot_ms:.1f} ms"),
            "strategy": st, "layers_per_stage": list(res.placement.layers_per_stage),
            "objective": res.objective, "objective_unit": OBJECTIVE_UNITS[objective]}


def _not_tried(change: str, kind: str, size: float) -> dict[str, Any]:
    return {"change": change, "kind": kind, "size": size, "verified": False,
            "result": "not tried: the command's time limit ran out"}


def attempt(problem: Problem, change: str, kind: str, size: float, update: dict[str, Any],
             params, objective: str | None = None) -> dict[str, Any]:
    """Solve the instance with ``update`` applied; a repair is verified when a plan comes back."""
    if params.expired():
        return _not_tried(change, kind, size)
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

    cl = problem.instance.cluster
    name = label or problem.ctx.hw.gpu.name
    if params.expired():
        return _not_tried(f"more {name} GPUs", "gpus", 99)
    per_node = cl.gpus_per_node if gpu is None else max(cl.gpus_per_node, 8)
    nodes = max(1, MAX_REPAIR_GPUS // per_node)
    # Another type has its own links and its own price (the instance's price was for this one).
    cluster = cl.model_copy(update={"nodes": nodes, "gpus_per_node": per_node,
                                    **({"gpu": gpu, "intra_node": None, "inter_node": None,
                                        "price_per_gpu_hour_usd": None} if gpu else {})})
    inst = problem.instance.model_copy(update={"cluster": cluster}, deep=True)
    if gpu and inst.objective in COST_OBJECTIVES and resolve_gpu(gpu).price is None:
        inst = inst.model_copy(update={"objective": "min_gpus"})  # unpriced: the fewest GPUs is the question
    relaxed = build_problem(inst, problem.file)
    s = relaxed.search
    counts = sorted({tp * pp * dp for tp in s.tp for pp in s.pp for dp in s.dp if tp * pp * dp <= nodes * per_node})
    start = 1 if gpu else problem.ctx.hw.total_gpus + 1
    for n in (c for c in counts if c >= start):
        if params.expired():
            return _not_tried(f"more {name} GPUs (counts from {n} on)", "gpus", 99)
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
            out.append(attempt(problem, f"drop the pinned {key}={getattr(pins, key)}", "pin", 1,
                                {"strategy": new_pins}, params))
    if any(r.startswith("pin.") for r in conflict):

        unpinned = attempt(problem, "drop every pinned field", "pin", 2, {"strategy": StrategyPins()}, params)
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
                alone = attempt(problem, f"allow {w} weights", "precision", 3, {"precision": prec}, params)
                out.append(alone)
                if not alone["verified"] and "gpu_count" in conflict and pins.is_empty():
                    # The precision does not suffice alone: how few GPUs of this type would do with it.
                    lighter = build_problem(inst.model_copy(update={"precision": prec}, deep=True), problem.file)
                    both = _more_gpus(lighter, params)
                    # Only when its own example uses the precision: else the GPU count alone is the repair.
                    if both["verified"] and both["strategy"]["weights"] == w:
                        both["change"] = f"allow {w} weights and {both['change']}"
                        both["kind"], both["size"] = "precision+gpus", 4.5
                        out.append(both)
        if "fp8" not in inst.precision.kv_cache and gpu.family != "turing":
            prec = inst.precision.model_copy(update={"kv_cache": [*inst.precision.kv_cache, "fp8"]})
            out.append(attempt(problem, "allow an fp8 KV cache", "precision", 3, {"precision": prec}, params))
    if any(r.startswith("mem_cap") for r in conflict) and inst.limits.memory_utilization < 0.95:
        lim = inst.limits.model_copy(update={"memory_utilization": 0.95})
        out.append(attempt(problem, f"raise memory_utilization from {inst.limits.memory_utilization:g} to 0.95",
                            "limits", 3.5, {"limits": lim}, params))
    if "batch_cap" in conflict:
        need = math.ceil((inst.workload.concurrency or inst.limits.max_num_seqs) / 1)
        lim = inst.limits.model_copy(update={"max_num_seqs": max(need, inst.limits.max_num_seqs * 2)})
        out.append(attempt(problem, f"raise limits.max_num_seqs to {lim.max_num_seqs}", "limits", 3.5,
                            {"limits": lim}, params))
    if "search.uneven_layers" in conflict:
        search = inst.search.model_copy(update={"uneven_layers": True})
        out.append(attempt(problem, "allow uneven layers per stage", "search", 2, {"search": search}, params))
    if heavy and pins.is_empty():
        out.append(_more_gpus(problem, params))
        out.extend(_other_gpu_types(problem, params))
    verified = [r for r in out if r["verified"]]
    failed = [r for r in out if not r["verified"]]
    verified.sort(key=lambda r: (r["size"], r.get("gpus", 0)))
    return verified + failed


def _other_gpu_types(problem: Problem, params, prefix: str = "") -> list[dict[str, Any]]:
    """The catalog GPU type needing the fewest GPUs (the next three listed as alternatives)."""
    alternatives = []
    for name in known_gpus():
        if name == problem.ctx.hw.gpu.name:
            continue
        if params.expired():
            break
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
    inst = problem.instance
    if params.expired():
        return _not_tried(f"relax {rule}", "slo", 2.5)
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

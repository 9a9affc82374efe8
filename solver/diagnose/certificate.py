"""Certificates and physics bounds: every conflict member in numbers a person can redo.

For every member, the best value its quantity can reach while the other members hold (a solve of
its own), which must miss the member's limit; and bounds that hold for every configuration.
"""

from __future__ import annotations

import math
from typing import Any

from ..engines import engine
from ..physics import (
    GB,
    WEIGHT_BYTES,
    Config,
    GiB,
    compute_dtype,
    embedding_bytes_per_gpu,
    layer_weight_bytes_per_gpu,
    lm_head_bytes_per_gpu,
    param_counts,
    peak_tflops,
    weight_dtype_supported,
)
from ..problem import Problem
from ..search.options import VERIFY_TOLERANCE
from ..verify import Placement, evaluate
from .oracle import Oracle

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
        return f"expert parallelism must fit the stage's tp x attention_dp ranks ({problem.search.engine}: " \
               f"{engine(problem.search.engine).EP_LAYOUT_RULE})"
    if rule == "attention_dp_layout":
        return (f"attention data parallelism ({problem.search.engine}): "
                f"{engine(problem.search.engine).ATTENTION_DP_RULE}; its tp x attention_dp GPUs divide a node of "
                f"{hw.gpus_per_node} or fill whole nodes")
    if rule == "fp8_block_divisible":
        dense = f" and intermediate {a.intermediate} / tp" if "dense" in a.layer_kinds() else ""
        return (f"the block-FP8 checkpoint's {a.fp8_block}-wide blocks must stay whole in every shard: "
                f"moe_intermediate {a.moe_intermediate} / (tp x attention_dp / ep){dense} a multiple of {a.fp8_block}")
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


def _example(problem: Problem, placement: Placement, others: list[str]) -> tuple[str, bool]:
    """The example plan behind a member's number, and whether the verifier accepts it under ``others``.

    Says so when it breaks a memory cap (not enforced by the bound), with the exact figures.
    """
    split = placement.layers_per_stage
    text = f"{placement.cfg.label()}, max_num_seqs {placement.batch}, layers {'+'.join(map(str, split))}"
    ev = evaluate(problem, placement, simulate=False)
    worst = max(ev.stages, key=lambda st: st.memory_GiB["total"])
    if worst.memory_GiB["total"] > ev.capacity_GiB * (1 + VERIFY_TOLERANCE):
        text += (f"; this example breaks the memory cap, which this bound does not enforce: stage {worst.index} "
                 f"needs {worst.memory_GiB['total']:.1f} GiB of usable {ev.capacity_GiB:.1f}")
    exact = all(r.passed for r in ev.requirements if r.rule in others)
    return text, exact


def _gib(value: float, limit: float) -> str:
    """GiB with enough decimals to tell ``value`` from ``limit``."""
    for digits in (2, 3, 4, 6):
        if round(value, digits) != round(limit, digits):
            break
    return f"{value:.{digits}f}"


def certificate(problem: Problem, oracle: Oracle, conflict: list[str]) -> list[dict[str, Any]]:
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
        found = oracle.best(others, quantity)
        out_tok = problem.instance.workload.output_tokens
        units = oracle.options[0].units
        best = None if found.raw is None else units.to_user(quantity, found.raw, out_tok)
        entry["numbers"] = {"limit": limit, "best_with_others": None if best is None else round(best, 4),
                            "proven": found.proven}
        # A minimum is printed as one only when the solve proved it; else the best found and the bound.
        qual = ""
        if best is not None and not found.proven:
            bound = units.to_user(quantity, found.bound_raw, out_tok) if found.bound_raw else None
            entry["numbers"]["bound"] = None if bound is None else round(bound, 4)
            qual = (" [best found, not proven: the solve stopped at its limit"
                    + (f"; the bound is {bound:,.4g}" if bound is not None else "") + "]")
        example, exact = ("", False) if best is None else _example(problem, found.example(), others)
        # The oracle's tables round demands down: its minimum is a bound the exact physics can only
        # exceed ("at least"); it is the exact value when the verifier accepts the example.
        if rule.startswith("mem_cap"):
            s = int(rule.split("=")[1].rstrip("]"))
            lim_txt = (f"usable {limit:.2f} GiB per GPU ({problem.ctx.device_GiB:.2f} GiB the engine sees x "
                       f"{problem.instance.limits.memory_utilization:g})")
            if best is None:
                entry["statement"] = f"stage {s} must fit in {lim_txt}"
            else:
                entry["statement"] = (f"stage {s} must fit in {lim_txt}; with only the other members of this set enforced, "
                                      f"the lightest stage {s} needs at least {_gib(best, limit)} GiB{qual} ({example})")
        elif rule == "gpu_count":
            entry["statement"] = _static_statement(problem, rule)
            if best is not None:
                holds = (f"the rest of this set holds with {best:.0f} GPUs at the fewest" if exact and found.proven
                         else f"the rest of this set needs at least {best:.0f} GPUs")
                entry["statement"] += f"; drop it and {holds}{qual} ({example})"
        else:
            unit = _UNITS[quantity]
            sense = "<=" if rule in ("slo.tpot_ms", "slo.ttft_ms") else ">="
            target = f"{rule.split('.', 1)[1]} {sense} {limit:g}"
            if best is None:
                entry["statement"] = f"{target}"
            else:
                word = "lowest" if sense == "<=" else "highest"
                entry["statement"] = (f"{target}; with only the other members of this set enforced, the {word} achievable is "
                                      f"{'' if exact else 'at best '}{best:,.2f} {unit}{qual} ({example})")
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
    best_peak = max(peak_tflops(gpu, compute_dtype(gpu, w)) or 0 for w in problem.instance.precision.weights)
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

    a = problem.arch
    cfg = Config(1, 1, 1, 1, weights, "bf16")
    kinds = a.layer_kinds()
    return (sum(layer_weight_bytes_per_gpu(a, k, cfg) for k in kinds) + embedding_bytes_per_gpu(a, 1)
            + lm_head_bytes_per_gpu(a, 1, 1))

"""The stable JSON document of a plan, a verdict or a proof (DESIGN section 4)."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from ..engines import LaunchInput, launch_commands
from ..engines.disagg import disagg_launch
from ..physics import Config, gpu_index
from ..physics.cost import cost_per_hour_usd, cost_per_million_tokens_usd
from ..problem import Problem
from ..verify import DisaggEvaluation, Evaluation, Placement

JSON_SCHEMA_VERSION = 1


def launch_input(problem: Problem, placement: Placement, max_num_seqs: int | None = None,
                 ev: Evaluation | None = None) -> LaunchInput:
    """The engine-facing view of a plan: what its launch commands carry."""
    a, inst = problem.arch, problem.instance
    kv_free = inst.limits.memory_utilization
    if ev is not None and ev.stages:
        # TensorRT-LLM sizes the KV cache as a fraction of what the weights and buffers leave: the
        # fullest stage's plan share, (usable - fixed) / (device - fixed).
        device = problem.ctx.device_GiB
        fractions = []
        for st in ev.stages:
            fixed = st.memory_GiB["weights"] + st.memory_GiB["activations"] + st.memory_GiB["overhead"]
            if device > fixed:
                fractions.append(max(0.0, (st.memory_GiB["capacity"] - fixed) / (device - fixed)))
        kv_free = min(fractions, default=kv_free)
    return LaunchInput(
        repo=a.hf_repo or a.name,
        cfg=placement.cfg,
        layers_per_stage=tuple(placement.layers_per_stage),
        num_layers=a.layers,
        max_num_seqs=placement.batch if max_num_seqs is None else max_num_seqs,
        max_model_len=inst.workload.model_len,
        max_num_batched_tokens=inst.limits.max_num_batched_tokens,
        memory_utilization=inst.limits.memory_utilization,
        gpu=problem.ctx.hw.gpu,
        gpus_per_node=problem.ctx.hw.gpus_per_node,
        checkpoint_dtype=a.checkpoint_dtype,
        kv_free_fraction=kv_free,
        scheduler_recv_interval=inst.limits.scheduler_recv_interval,
        attention_dp_balance_iters=inst.limits.attention_dp_balance_iters,
        batch_wait_timeout_iters=inst.limits.batch_wait_timeout_iters,
        batch_wait_max_tokens_ratio=inst.limits.batch_wait_max_tokens_ratio,
        expert_map_command=(f"solve experts --loads {inst.workload.expert_loads} --gpus {placement.cfg.ep} "
                            f"--slots-per-gpu {(a.experts + placement.cfg.redundant) // placement.cfg.ep} "
                            f"--redundant {placement.cfg.redundant}"
                            if inst.workload.expert_loads and inst.workload.expert_placement == "balanced"
                            and placement.cfg.ep > 1 else None),
    )


def gpu_map(problem: Problem, ev: Evaluation) -> list[dict[str, Any]]:
    """One entry per GPU used: node, stage, ranks, experts held, memory breakdown."""
    cfg: Config = ev.placement.cfg
    a = problem.arch
    gpn = problem.ctx.hw.gpus_per_node
    out = []
    group_size = cfg.moe_group
    wl = problem.instance.workload
    balanced = wl.expert_loads is not None and wl.expert_placement == "balanced" and cfg.ep > 1
    for r in range(cfg.dp):
        for s in range(cfg.pp):
            for g in range(group_size):
                gid = gpu_index(cfg, r, s, g)
                entry: dict[str, Any] = {"id": gid, "node": gid // gpn, "stage": s, "tp_rank": g % cfg.tp,
                                         "dp_rank": r}
                if cfg.adp > 1:
                    entry["attention_dp_rank"] = g // cfg.tp
                if a.is_moe:
                    group = g // (group_size // cfg.ep) if group_size % cfg.ep == 0 else 0
                    per = a.experts // cfg.ep if cfg.ep else a.experts
                    entry["ep_rank"] = group
                    if balanced:  # which experts: the map solve experts writes (replicas included)
                        entry["expert_slots"] = (a.experts + cfg.redundant) // cfg.ep
                    else:
                        entry["experts"] = [group * per, group * per + per - 1]
                entry["memory_GiB"] = {k: round(v, 3) for k, v in ev.stages[s].memory_GiB.items()}
                out.append(entry)
    return out


def _req_json(r) -> dict[str, Any]:
    return {"rule": r.rule, "statement": r.statement, "value": _num(r.value), "limit": _num(r.limit),
            "unit": r.unit, "slack": _num(r.slack), "passed": r.passed}


def _num(x: Any) -> Any:
    if isinstance(x, float):
        return round(x, 6)
    return x


def evaluation_json(problem: Problem, ev: Evaluation) -> dict[str, Any]:
    """The plan part of the JSON document (strategy, stages, GPUs, metrics, requirements, launch)."""
    m = ev.metrics
    p = ev.placement
    return {
        "strategy": ev.strategy(),
        "stages": [
            {"index": st.index, "layers": list(st.layers),
             "gpus": [gpu_index(p.cfg, 0, st.index, t) for t in range(p.cfg.moe_group)],
             "memory_GiB": {k: round(v, 3) for k, v in st.memory_GiB.items()},
             "decode_ms": round(st.decode_ms, 4), "prefill_ms": round(st.prefill_ms, 4)}
            for st in ev.stages
        ],
        "gpus": gpu_map(problem, ev),
        "metrics": {
            "ttft_ms": round(m.ttft_ms, 3),
            "tpot_ms": round(m.tpot_ms, 4),
            "decode_step_ms": round(m.decode_step_ms, 4),
            "output_tokens_per_s": round(_served(problem, ev), 3),
            "capacity_output_tokens_per_s": round(m.output_tokens_per_s, 3),
            "output_tokens_per_s_per_gpu": round(m.output_tokens_per_s_per_gpu, 3),
            "served_output_tokens_per_s_per_gpu": round(_served(problem, ev) / m.gpus, 3),
            "max_concurrency": min(ev.max_concurrency, ev.max_num_seqs * p.cfg.dp),
            "kv_capacity_sequences": ev.max_concurrency,
            "kv_cache_tokens": ev.kv_cache_tokens,
            "max_request_rate": round(m.max_request_rate, 4),
            "batch_per_replica": m.batch_per_replica,
            "gpus_used": m.gpus,
            **cost_metrics(problem, m.gpus, _served(problem, ev)),
        },
        "simulated": simulation_json(problem, ev),
        "requirements": [_req_json(r) for r in ev.requirements],
        # Only a plan that passes every requirement is launched: a failing one would not run as planned.
        "launch": launch_commands(launch_input(problem, p, ev.max_num_seqs, ev), problem.search.engine)
        if ev.feasible else None,
    }


def cost_metrics(problem: Problem, gpus: int, served_tokens_per_s: float) -> dict[str, float | None]:
    """Dollars per hour and per million output tokens served (None without a price)."""
    if problem.price is None:
        return {"cost_per_hour_usd": None, "cost_per_million_output_tokens_usd": None}
    per_hour = cost_per_hour_usd(problem.price, gpus)
    return {"cost_per_hour_usd": round(per_hour, 4),
            "cost_per_million_output_tokens_usd": round(cost_per_million_tokens_usd(per_hour, served_tokens_per_s), 6)}


def _dist(d: Any) -> dict[str, float]:
    return {k: round(getattr(d, k), 3) for k in ("mean", "p50", "p90", "p99")}


def simulation_json(problem: Problem, ev: Evaluation) -> dict[str, Any] | None:
    """The simulated latency distribution of a plan (None when it was not simulated)."""
    return simulation_block(problem, ev.simulation)


def simulation_block(problem: Problem, sim: Any) -> dict[str, Any] | None:
    """The ``simulated`` block of a :class:`~solver.simulate.SimulationResult` (None: not simulated)."""
    if sim is None:
        return None
    wl, cfg = problem.instance.workload, problem.instance.simulation
    if wl.mode == "request_rate":
        arrivals = f"Poisson arrivals at {wl.request_rate:g} req/s"
    elif wl.mode == "concurrency":
        arrivals = f"a closed loop of {wl.concurrency} clients"
    else:
        arrivals = "every request queued at once (offline)"
    return {
        "arrivals": arrivals,
        "requests": sim.requests,
        "seed": cfg.seed,
        "engine": problem.search.engine,
        "completed": sim.completed,
        "rejected": sim.rejected,
        "ttft_ms": _dist(sim.ttft_ms),
        "tpot_ms": _dist(sim.tpot_ms),
        "itl_ms": _dist(sim.itl_ms),
        "e2e_ms": _dist(sim.e2e_ms),
        "output_tokens_per_s": round(sim.output_tokens_per_s, 3),
        "requests_per_s": round(sim.requests_per_s, 4),
        "goodput_requests_per_s": round(sim.goodput_requests_per_s, 4),
        "mean_batch": round(sim.mean_batch, 3),
        "mean_queue": round(sim.mean_queue, 3),
        "max_queue": sim.max_queue,
        "duration_s": round(sim.duration_s, 3),
    }


def _served(problem: Problem, ev: Evaluation) -> float:
    """Output tokens/s actually served: the request rate's demand when one is given, else capacity."""
    wl = problem.instance.workload
    if wl.mode == "request_rate":
        return min(ev.metrics.output_tokens_per_s, wl.request_rate * wl.output_tokens)
    return ev.metrics.output_tokens_per_s


def document(problem: Problem, status: str, ev: Evaluation | None, solver: dict[str, Any] | None = None,
             proof: dict[str, Any] | None = None, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The stable JSON document (DESIGN section 4)."""
    doc: dict[str, Any] = {
        "schema_version": JSON_SCHEMA_VERSION,
        "instance": problem.name,
        "file": problem.file,
        "model": problem.arch.name,
        "gpu": problem.ctx.hw.gpu.name,
        "cluster_gpus": problem.ctx.hw.total_gpus,
        "objective_name": problem.instance.objective,
        "status": status,
        "price": None if problem.price is None else problem.price.as_json(),
    }
    if ev is not None:
        doc.update(evaluation_json(problem, ev))
    else:
        doc.update({"strategy": None, "stages": [], "gpus": [], "metrics": None, "simulated": None,
                    "requirements": [], "launch": None})
    doc["proof"] = proof
    doc["solver"] = solver
    doc["defaults"] = problem.defaults
    if extra:
        doc.update(extra)
    return doc


def to_json(doc: dict[str, Any]) -> str:
    """Deterministic JSON text."""
    return json.dumps(doc, indent=2, sort_keys=False, default=str)


# ---------------------------------------------------------------------------------------------
# Disaggregated plans
# ---------------------------------------------------------------------------------------------


def _worker(p: Placement) -> Placement:
    """One worker of a pool (the pool's count is the plan's, not the worker's)."""
    return Placement(dataclasses.replace(p.cfg, dp=1), p.batch, tuple(p.layers_per_stage))


def disaggregated_json(problem: Problem, ev: DisaggEvaluation) -> dict[str, Any]:
    """The ``disaggregated`` block: both pools, the transfer, the whole plan's figures."""
    m, dp = ev.metrics, ev.placement

    def pool(name: str, p: Placement, pev: Evaluation, capacity: float, extra: dict[str, Any]) -> dict[str, Any]:
        st = pev.stages
        return {"workers": p.cfg.dp, "tp": p.cfg.tp, "pp": p.cfg.pp, "attention_dp": p.cfg.adp, "ep": p.cfg.ep,
                "weights": p.cfg.weights,
                "kv_cache": p.cfg.kv_cache, "gpus": p.cfg.gpus, "layers_per_stage": list(p.layers_per_stage),
                "capacity_request_rate": round(capacity, 4),
                "memory_GiB": [{k: round(v, 3) for k, v in s.memory_GiB.items()} for s in st], **extra}

    wl = problem.instance.workload
    served = min(m.output_tokens_per_s, wl.request_rate * wl.output_tokens) if wl.mode == "request_rate" else \
        m.output_tokens_per_s
    return {
        "prefill": pool("prefill", dp.prefill, ev.prefill, m.prefill_capacity_per_s,
                        {"prompts_per_step": dp.prefill.batch, "prefill_latency_ms": round(m.prefill_latency_ms, 3)}),
        "decode": pool("decode", dp.decode, ev.decode, m.decode_capacity_per_s,
                       {"sequences_per_worker": dp.decode.batch, "tpot_ms": round(m.tpot_ms, 4)}),
        "kv_transfer_ms": round(m.transfer_ms, 4), "kv_transfer_link": m.transfer_link,
        "kv_handoff_ms": round(m.handoff_ms, 3),
        "ttft_ms": round(m.ttft_ms, 3), "tpot_ms": round(m.tpot_ms, 4), "gpus_used": m.gpus,
        "max_request_rate": round(m.max_request_rate, 4), "output_tokens_per_s": round(served, 3),
        "output_tokens_per_s_per_gpu": round(served / m.gpus, 3),
        **cost_metrics(problem, m.gpus, served),
        "statement": (f"{dp.label()}: {m.gpus} GPUs, TTFT {m.ttft_ms:.1f} ms (prefill {m.prefill_latency_ms:.1f} + "
                      f"KV transfer {m.transfer_ms:.2f} over {m.transfer_link} + hand-off {m.handoff_ms:g} + a decode "
                      "step), TPOT "
                      f"{m.tpot_ms:.2f} ms, pools carry {m.prefill_capacity_per_s:.2f} / "
                      f"{m.decode_capacity_per_s:.2f} req/s"),
    }


def disaggregated_document(problem: Problem, status: str, ev: DisaggEvaluation, solver: dict[str, Any],
                           extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The whole document of a chosen disaggregated plan (the plan-document keys, pools in ``disaggregated``)."""
    block = disaggregated_json(problem, ev)
    dp = ev.placement
    gpus, gid = [], 0
    gpn = problem.ctx.hw.gpus_per_node
    for name, p, pev in (("prefill", dp.prefill, ev.prefill), ("decode", dp.decode, ev.decode)):
        for w in range(p.cfg.dp):
            for s in range(p.cfg.pp):
                for g in range(p.cfg.moe_group):  # tp x attention-DP ranks per stage
                    entry = {"id": gid, "node": gid // gpn, "pool": name, "worker": w, "stage": s, "tp_rank": g % p.cfg.tp,
                             "dp_rank": w}
                    if p.cfg.adp > 1:
                        entry["attention_dp_rank"] = g // p.cfg.tp
                    entry["memory_GiB"] = {k: round(v, 3) for k, v in pev.stages[s].memory_GiB.items()}
                    gpus.append(entry)
                    gid += 1
    served = block["output_tokens_per_s"]
    metrics = {
        "ttft_ms": block["ttft_ms"], "tpot_ms": block["tpot_ms"], "decode_step_ms": block["tpot_ms"],
        "output_tokens_per_s": served, "capacity_output_tokens_per_s": round(ev.metrics.output_tokens_per_s, 3),
        "output_tokens_per_s_per_gpu": round(ev.metrics.output_tokens_per_s / ev.metrics.gpus, 3),
        "served_output_tokens_per_s_per_gpu": block["output_tokens_per_s_per_gpu"],
        "max_concurrency": dp.decode.batch * dp.decode.cfg.dp,
        "kv_capacity_sequences": dp.decode.batch * dp.decode.cfg.dp,
        "max_request_rate": block["max_request_rate"], "batch_per_replica": dp.decode.batch,
        "gpus_used": ev.metrics.gpus, **cost_metrics(problem, ev.metrics.gpus, served),
    }
    doc: dict[str, Any] = {
        "schema_version": JSON_SCHEMA_VERSION, "instance": problem.name, "file": problem.file,
        "model": problem.arch.name, "gpu": problem.ctx.hw.gpu.name, "cluster_gpus": problem.ctx.hw.total_gpus,
        "objective_name": problem.instance.objective, "status": status,
        "price": None if problem.price is None else problem.price.as_json(),
        "strategy": None, "stages": [], "gpus": gpus, "metrics": metrics,
        "simulated": simulation_block(problem, ev.simulation),
        "requirements": [_req_json(r) for r in ev.requirements],
        "launch": disagg_launch(launch_input(problem, _worker(dp.prefill), dp.prefill.batch, ev.prefill),
                                launch_input(problem, _worker(dp.decode), dp.decode.batch, ev.decode),
                                dp.prefill.cfg.dp, dp.decode.cfg.dp, problem.search.engine) if ev.feasible else None,
        "disaggregated": block, "proof": None, "solver": solver, "defaults": problem.defaults,
    }
    if extra:
        doc.update(extra)
    return doc

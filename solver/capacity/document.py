"""The JSON document of a capacity answer: the chosen plan (or mix) and the ``capacity`` block.

A single-type answer is that type's own plan document with the ``capacity`` block added, so
everything that reads plan documents (batch gate, sweeps, plots) reads it unchanged. A mix has
one sub-document per GPU type under ``deployments`` and top-level figures for the whole: GPUs
and dollars summed, latency the worst group's (every group must meet the targets).
"""

from __future__ import annotations

import copy
from typing import Any

from ..physics.cost import cost_per_million_tokens_usd
from ..report.document import JSON_SCHEMA_VERSION
from ..search.objectives import OBJECTIVE_UNITS
from .mix import PRICE_SCALE, RATE_SCALE
from .offers import available_gpus
from .planner import CapacityResult, OfferOutcome, availability_line

MIX_MODEL = ("replicas of one or several GPU types behind one router, the rate split in proportion to capacity; "
             "a group is replicas sharing one layout (one plan, one launch command); each layout is the "
             "highest-capacity replica of its size within ttft_ms / tpot_ms (exact planner, offline backlog, dp = 1); "
             "each type's groups stay within its GPUs on offer; CP-SAT minimises USD/h, then GPUs, then groups, then "
             f"maximises spare capacity (capacities rounded down to 1/{RATE_SCALE} req/s, prices to 1/{PRICE_SCALE} "
             "USD); every group of the answer is re-planned at its share of the rate, verified and simulated")


def _offer_json(o: OfferOutcome) -> dict[str, Any]:
    doc = o.report.document
    m = doc.get("metrics") or {}
    out: dict[str, Any] = {
        "gpu": o.name, "available_gpus": available_gpus(o.offer), "nodes": o.offer.nodes,
        "gpus_per_node": o.offer.gpus_per_node, "price": doc.get("price"), "status": o.status,
        "objective": None if o.report.objective is None else round(o.report.objective, 6),
        "objective_unit": o.report.objective_unit, "strategy": doc.get("strategy"),
        "layers_per_stage": [s["layers"][1] - s["layers"][0] + 1 for s in doc.get("stages") or []] or None,
        "gpus_used": m.get("gpus_used"), "cost_per_hour_usd": m.get("cost_per_hour_usd"),
        "cost_per_million_output_tokens_usd": m.get("cost_per_million_output_tokens_usd"),
        "ttft_ms": m.get("ttft_ms"), "tpot_ms": m.get("tpot_ms"),
    }
    if o.feasible:
        st = doc["strategy"]
        out["statement"] = (f"{m['gpus_used']} x {o.name}: tp={st['tp']} pp={st['pp']} dp={st['dp']} "
                            f"{st['weights']}/{st['kv_cache']}" +
                            (f", ${m['cost_per_hour_usd']:,.2f}/h" if m.get("cost_per_hour_usd") is not None else ""))
    else:
        proof = doc.get("proof") or {}
        summary = proof.get("summary")
        first = ((proof.get("conflicts") or [{}])[0]).get("rules") or []
        short = f"only {available_gpus(o.offer)} {o.name} available" if "gpu_count" in first else o.status
        out["statement"] = f"{availability_line(o.offer)}: {short}" + (f": {summary}" if summary else "")
    return out


def _mix_json(result: CapacityResult) -> dict[str, Any] | None:
    if result.mix is None:
        return None
    wl = result.instance.workload
    served = wl.request_rate * wl.output_tokens
    per_hour = result.mix_usd_per_hour
    best = result.best.usd_per_hour if result.best is not None else None
    return {
        "status": result.mix_model.status,
        "groups": [{"gpu": g.design.gpu, "replicas": g.replicas, "gpus": g.replicas * g.design.gpus,
                    "request_rate": round(g.request_rate, 6), "replica_capacity_request_rate": round(g.design.rate, 6),
                    "strategy": g.report.document["strategy"],
                    "layers_per_stage": list(g.design.placement.layers_per_stage),
                    "cost_per_hour_usd": g.report.document["metrics"]["cost_per_hour_usd"]} for g in result.mix],
        "gpus_used": sum(g.replicas * g.design.gpus for g in result.mix),
        "cost_per_hour_usd": round(per_hour, 4),
        "cost_per_million_output_tokens_usd": round(cost_per_million_tokens_usd(per_hour, served), 6),
        "capacity_request_rate": round(result.mix_model.capacity, 6),
        "best_single_cost_per_hour_usd": best,
        "gain_vs_best_single": None if best is None else round(1 - per_hour / best, 6),
        "model": MIX_MODEL,
    }


def capacity_json(result: CapacityResult) -> dict[str, Any]:
    """The ``capacity`` block: every offer's best, the choice, the mix, the designs it was built from."""
    if result.mix is not None:
        choice = {"kind": "mix", "gpu": "+".join(g.design.gpu for g in result.mix), "statement":
                  f"a mix: {result.mix_note}"}
    elif result.best is not None:
        b = result.best
        choice = {"kind": "single", "gpu": b.name, "statement": f"{b.name}: {_offer_json(b)['statement']}"}
    else:
        choice = {"kind": "none", "gpu": None, "statement": "no GPU type on offer can serve this workload within "
                  "the targets and the availability" + (f"; {result.mix_note}" if result.mix_note else "")}
    repair = None
    if result.repair is not None:
        repair = {"statement": f"with more GPUs available, the cheapest would be {result.repair.describe()} at "
                               f"${result.repair.usd_per_hour:,.2f}/h (not verified at these counts)",
                  "gpus": {d.gpu: n * d.gpus for d, n in result.repair.counts},
                  "cost_per_hour_usd": round(result.repair.usd_per_hour, 4)}
    return {
        "available_gpus": sum(available_gpus(o.offer) for o in result.offers),
        "offers": [_offer_json(o) for o in result.offers],
        "choice": choice,
        "mix": _mix_json(result),
        "mix_note": result.mix_note,
        "designs": [{"gpu": d.gpu, "gpus": d.gpus, "replica_capacity_request_rate": round(d.rate, 6),
                     "strategy": d.placement.strategy(), "layers_per_stage": list(d.placement.layers_per_stage),
                     "max_replicas": d.max_replicas, "usd_per_gpu_hour": d.usd_per_gpu_hour}
                    for d in result.designs],
        "refuted_mixes": result.refuted,
        "repair": repair,
    }


def capacity_document(result: CapacityResult, solver: dict[str, Any]) -> dict[str, Any]:
    """The whole document: the chosen plan's (or the mix's) with the capacity block."""
    cap = capacity_json(result)
    if result.mix is None:
        source = (result.best or result.offers[0]).report.document
        doc = copy.deepcopy(source)
        if result.best is None:
            doc["status"] = result.status
            doc["proof"] = {"summary": cap["choice"]["statement"],
                            "per_gpu_type": [{"gpu": o.name, "status": o.status,
                                              "proof": o.report.document.get("proof")} for o in result.offers],
                            "repairs": [cap["repair"]] if cap["repair"] else []}
        doc["solver"] = {**solver, "chosen": doc.get("solver")}
        doc["capacity"] = cap
        return doc
    return _mix_document(result, cap, solver)


def _mix_document(result: CapacityResult, cap: dict[str, Any], solver: dict[str, Any]) -> dict[str, Any]:
    inst = result.instance
    subs = [g.report.document for g in result.mix]
    gpus: list[dict[str, Any]] = []
    offset = 0
    for k, (g, sub) in enumerate(zip(result.mix, subs, strict=True)):
        for entry in sub["gpus"]:
            gpus.append({**entry, "id": entry["id"] + offset, "gpu": g.design.gpu, "group": k})
        offset += g.replicas * g.design.gpus
    ms = [s["metrics"] for s in subs]
    mix = cap["mix"]
    served = sum(m["output_tokens_per_s"] for m in ms)
    metrics = {
        "ttft_ms": max(m["ttft_ms"] for m in ms), "tpot_ms": max(m["tpot_ms"] for m in ms),
        "decode_step_ms": max(m["decode_step_ms"] for m in ms),
        "output_tokens_per_s": round(served, 3),
        "capacity_output_tokens_per_s": round(sum(m["capacity_output_tokens_per_s"] for m in ms), 3),
        "output_tokens_per_s_per_gpu": round(sum(m["capacity_output_tokens_per_s"] for m in ms) / mix["gpus_used"], 3),
        "served_output_tokens_per_s_per_gpu": round(served / mix["gpus_used"], 3),
        "max_concurrency": sum(m["max_concurrency"] for m in ms),
        "kv_capacity_sequences": sum(m["kv_capacity_sequences"] for m in ms),
        "max_request_rate": round(sum(m["max_request_rate"] for m in ms), 4),
        "batch_per_replica": None, "gpus_used": mix["gpus_used"],
        "cost_per_hour_usd": mix["cost_per_hour_usd"],
        "cost_per_million_output_tokens_usd": mix["cost_per_million_output_tokens_usd"],
    }
    reqs = [{**r, "rule": f"{g.design.gpu}.{r['rule']}"} for g, s in zip(result.mix, subs, strict=True)
            for r in s["requirements"]]
    first = subs[0]
    return {
        "schema_version": JSON_SCHEMA_VERSION, "instance": inst.name, "file": result.file, "model": first["model"],
        "gpu": cap["choice"]["gpu"], "cluster_gpus": sum(available_gpus(o.offer) for o in result.offers),
        "objective_name": inst.objective, "status": result.status, "price": None,
        "strategy": None, "stages": [], "gpus": gpus, "metrics": metrics, "simulated": None,
        "requirements": reqs,
        "launch": [{"gpu": g.design.gpu, "replicas": g.replicas, "commands": s["launch"]}
                   for g, s in zip(result.mix, subs, strict=True)],
        "proof": None, "solver": {**solver, "objective_unit": OBJECTIVE_UNITS[inst.objective]},
        "defaults": first.get("defaults"), "binding": [],
        "deployments": subs, "capacity": cap,
    }

"""Rendering: the stable JSON document, text for people, Markdown, and launch commands."""

from __future__ import annotations

import json
from typing import Any

from .physics import Config, even_split, gpu_index
from .problem import Problem
from .verify import Evaluation, Placement

JSON_SCHEMA_VERSION = 1


# ---------------------------------------------------------------------------------------------
# Launch commands
# ---------------------------------------------------------------------------------------------

def launch_commands(problem: Problem, placement: Placement) -> dict[str, Any]:
    """vLLM and SGLang command lines for ``placement`` (with VLLM_PP_LAYER_PARTITION when uneven)."""
    a, inst = problem.arch, problem.instance
    cfg, layers = placement.cfg, list(placement.layers_per_stage)
    repo = a.hf_repo or a.name
    notes: list[str] = []
    v = ["vllm serve", repo, f"--tensor-parallel-size {cfg.tp}", f"--pipeline-parallel-size {cfg.pp}"]
    if cfg.dp > 1:
        v.append(f"--data-parallel-size {cfg.dp}")
    if cfg.ep > 1:
        v.append("--enable-expert-parallel")
    v += [f"--max-model-len {inst.workload.model_len}", f"--max-num-seqs {placement.batch}",
          f"--max-num-batched-tokens {inst.limits.max_num_batched_tokens}",
          f"--gpu-memory-utilization {inst.limits.memory_utilization:g}"]
    gpu = problem.ctx.hw.gpu
    no_bf16 = gpu.dense_TFLOPS.bf16 is None
    if no_bf16 and (cfg.weights == "bf16" or cfg.kv_cache == "bf16"):
        # The cost model computes BF16 at the FP16 peak on such GPUs; the engine must be told.
        v.append("--dtype half")
        notes.append(f"{gpu.name} has no BF16: the model is served in FP16 (--dtype half), as costed")
    if cfg.kv_cache == "fp8":
        v.append("--kv-cache-dtype fp8")
    if cfg.weights == "fp8":
        v.append("--quantization fp8")
    elif cfg.weights in ("int8", "int4", "fp4"):
        kind = {"int8": "W8A8 INT8", "int4": "AWQ/GPTQ INT4", "fp4": "NVFP4"}[cfg.weights]
        notes.append(f"{cfg.weights} weights: serve a {kind} checkpoint of {repo} (the engine reads its quantization "
                     "from the checkpoint)")
    elif cfg.weights == "fp16" and not no_bf16:
        v.append("--dtype float16")
    env: dict[str, str] = {}
    if cfg.pp > 1 and layers != even_split(a.layers, cfg.pp):
        env["VLLM_PP_LAYER_PARTITION"] = ",".join(map(str, layers))
    gpn = problem.ctx.hw.gpus_per_node
    nodes_used = (cfg.gpus + gpn - 1) // gpn
    if nodes_used > 1:
        if cfg.dp > 1:
            v.append("--data-parallel-backend ray")  # vLLM places DP ranks over nodes through Ray
        notes.append(f"spans {nodes_used} nodes: start a Ray cluster over them first and run the command on the head "
                     "node (vLLM multi-node serving)")
    env_prefix = " ".join(f"{k}={val}" for k, val in env.items())
    vllm = (env_prefix + " " if env_prefix else "") + " ".join(v)
    s = ["python -m sglang.launch_server", f"--model-path {repo}", f"--tp-size {cfg.tp}"]
    if cfg.pp > 1:
        s.append(f"--pp-size {cfg.pp}")
    if cfg.dp > 1:
        s.append(f"--dp-size {cfg.dp}")
    if cfg.ep > 1:
        s.append(f"--ep-size {cfg.ep}")
    s += [f"--context-length {inst.workload.model_len}", f"--max-running-requests {placement.batch}",
          f"--chunked-prefill-size {inst.limits.max_num_batched_tokens}",
          f"--mem-fraction-static {inst.limits.memory_utilization:g}"]
    if no_bf16 and (cfg.weights == "bf16" or cfg.kv_cache == "bf16"):
        s.append("--dtype half")
    if cfg.kv_cache == "fp8":
        s.append("--kv-cache-dtype fp8_e5m2")
    if cfg.weights == "fp8":
        s.append("--quantization fp8")
    if nodes_used > 1:
        s.append(f"--nnodes {nodes_used} --node-rank <rank> --dist-init-addr <head>:5000")
    if env:
        notes.append("SGLang has no per-stage layer partition flag: it splits layers evenly")
    return {"vllm": vllm, "env": env, "sglang": " ".join(s), "notes": notes}


# ---------------------------------------------------------------------------------------------
# JSON
# ---------------------------------------------------------------------------------------------


def gpu_map(problem: Problem, ev: Evaluation) -> list[dict[str, Any]]:
    """One entry per GPU used: node, stage, ranks, experts held, memory breakdown."""
    cfg: Config = ev.placement.cfg
    a = problem.arch
    gpn = problem.ctx.hw.gpus_per_node
    out = []
    for r in range(cfg.dp):
        for s in range(cfg.pp):
            for t in range(cfg.tp):
                gid = gpu_index(cfg, r, s, t)
                entry: dict[str, Any] = {"id": gid, "node": gid // gpn, "stage": s, "tp_rank": t, "dp_rank": r}
                if a.is_moe:
                    group = t // (cfg.tp // cfg.ep) if cfg.tp % cfg.ep == 0 else 0
                    per = a.experts // cfg.ep if cfg.ep else a.experts
                    entry["ep_rank"] = group
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
        "strategy": p.strategy(),
        "stages": [
            {"index": st.index, "layers": list(st.layers),
             "gpus": [gpu_index(p.cfg, 0, st.index, t) for t in range(p.cfg.tp)],
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
            "max_concurrency": min(ev.max_concurrency, p.batch * p.cfg.dp),
            "kv_capacity_sequences": ev.max_concurrency,
            "max_request_rate": round(m.max_request_rate, 4),
            "batch_per_replica": m.batch_per_replica,
            "gpus_used": m.gpus,
        },
        "requirements": [_req_json(r) for r in ev.requirements],
        "launch": launch_commands(problem, p),
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
    }
    if ev is not None:
        doc.update(evaluation_json(problem, ev))
    else:
        doc.update({"strategy": None, "stages": [], "gpus": [], "metrics": None, "requirements": [], "launch": None})
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
# Text and Markdown
# ---------------------------------------------------------------------------------------------


def _table(headers: list[str], rows: list[list[str]], md: bool) -> list[str]:
    if md:
        out = ["", "| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
        out += ["| " + " | ".join(r) + " |" for r in rows]
        return out + [""]  # a Markdown table ends at a blank line
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    out = ["  " + line, "  " + "  ".join("-" * w for w in widths)]
    out += ["  " + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return out


def _fmt(x: Any) -> str:
    if isinstance(x, float):
        if x == 0:
            return "0"
        if abs(x) >= 100:
            return f"{x:,.1f}"
        return f"{x:.3g}" if abs(x) < 1 else f"{x:.2f}"
    return str(x)


def render_text(doc: dict[str, Any], md: bool = False) -> str:
    """People's view of a JSON document (plan, verification or proof)."""
    h = (lambda t: f"\n## {t}") if md else (lambda t: f"\n{t}")
    out: list[str] = []
    title = f"{doc['instance']}: {doc['model']} on {doc['cluster_gpus']} x {doc['gpu']}"
    out.append(f"# {title}" if md else title)
    status = doc["status"].upper()
    sv = doc.get("solver") or {}
    line = f"Status: {status}"
    if sv.get("mode") == "verify":
        line = ("Status: the proposed strategy PASSES every requirement" if doc["status"] == "feasible" else
                "Status: the proposed strategy FAILS a requirement (JSON status \"infeasible\")")
        line += " (checked with the exact cost model; no solver)"
    elif sv:
        line += f" in {sv.get('time_s', 0):.2f} s"
        if sv.get("objective") is not None:
            line += f"; objective {_fmt(sv['objective'])} {sv.get('objective_unit', '')}"
            if sv.get("bound") is not None:
                line += f" (bound {_fmt(sv['bound'])}, gap {sv.get('gap', 0) or 0:.2%})"
    out.append(line)
    if doc.get("strategy"):
        st = doc["strategy"]
        m = doc["metrics"]
        out.append(h("Strategy"))
        out.append(f"  tp={st['tp']} pp={st['pp']} dp={st['dp']} ep={st['ep']}  weights {st['weights']}  "
                   f"kv_cache {st['kv_cache']}  max_num_seqs {st['max_num_seqs']} per replica  "
                   f"({m['gpus_used']} of {doc['cluster_gpus']} GPUs)")
        out.append(h("Stages (memory per GPU, GiB)"))
        rows = []
        for s in doc["stages"]:
            mem = s["memory_GiB"]
            rows.append([str(s["index"]), f"{s['layers'][0]}-{s['layers'][1]}",
                         str(s["layers"][1] - s["layers"][0] + 1), ",".join(map(str, s["gpus"])),
                         _fmt(mem["weights"]), _fmt(mem["kv_cache"]), _fmt(mem["activations"]), _fmt(mem["overhead"]),
                         f"{mem['total']:.2f} / {mem['capacity']:.2f}", _fmt(s["decode_ms"])])
        out += _table(["stage", "layers", "n", "GPUs (replica 0)", "weights", "KV", "activ.", "overhead",
                       "total / usable", "decode ms"], rows, md)
        gpus = doc["gpus"]
        if gpus and "experts" in gpus[0]:
            out.append(h("Experts per GPU (replica 0)"))
            out += _table(["GPU", "stage", "tp rank", "ep rank", "experts"],
                          [[str(g["id"]), str(g["stage"]), str(g["tp_rank"]), str(g["ep_rank"]),
                            f"{g['experts'][0]}-{g['experts'][1]}"] for g in gpus if g["dp_rank"] == 0], md)
        out.append(h("Predicted metrics"))
        out += _table(["metric", "value"], [
            ["TTFT", f"{m['ttft_ms']:.1f} ms"],
            ["TPOT", f"{m['tpot_ms']:.2f} ms (decode step alone {m['decode_step_ms']:.2f} ms)"],
            ["output tokens/s", f"{m['output_tokens_per_s']:,.0f} served; capacity "
                                f"{m['capacity_output_tokens_per_s']:,.0f}"],
            ["output tokens/s per GPU", f"{m['output_tokens_per_s_per_gpu']:,.1f} (capacity)"],
            ["max request rate", f"{m['max_request_rate']:.2f} req/s"],
            ["max concurrency", f"{m['max_concurrency']} sequences (max_num_seqs x dp; the KV cache holds "
                                f"{m['kv_capacity_sequences']} within the engine cap)"],
        ], md)
        out.append(h("Requirements"))
        rows = [["PASS" if r["passed"] else "FAIL", r["rule"], _fmt(r["value"]), _fmt(r["limit"]),
                 "" if r["slack"] is None else _fmt(r["slack"]), r["unit"]] for r in doc["requirements"]]
        out += _table(["", "rule", "value", "limit", "slack", "unit"], rows, md)
        failed = [r for r in doc["requirements"] if not r["passed"]]
        for r in failed:
            out.append(f"  FAIL {r['rule']}: {r['statement']}")
        if doc.get("binding"):
            out.append(f"  Binding (within 5% of the limit): {', '.join(doc['binding'])}")
        launch = doc.get("launch")
        if launch:
            out.append(h("Launch"))
            fence = ["```bash"] if md else []
            out += fence + [f"  {launch['vllm']}", f"  {launch['sglang']}"] + (["```"] if md else [])
            for n in launch.get("notes", []):
                out.append(f"  note: {n}")
    comparison = doc.get("optimum")
    if comparison:
        out.append(h("Compared with the optimum"))
        out.append(f"  {comparison['statement']}")
    proof = doc.get("proof")
    if proof:
        from .diagnose import render_proof

        out.append(render_proof(proof, md))
    if doc.get("strategy_defaults"):
        out.append(h("Strategy fields not given (filled in)"))
        for k, v in doc["strategy_defaults"].items():
            out.append(f"  {k}: {v}")
    if sv and sv.get("mode") != "verify":
        out.append(h("Solver"))
        if not sv.get("options_considered"):
            out.append("  no candidate configuration passes every per-configuration rule (the proof says which)")
        else:
            out.append(f"  {sv.get('options_considered', 0)} candidate configurations, {sv.get('options_in_model', 0)} "
                       f"in the model after bound pruning; CP-SAT {sv.get('ortools')}, {sv.get('workers')} worker(s), "
                       f"seed {sv.get('seed')}; phases: "
                       + ", ".join(f"{p['phase']} {p['status']} {p['wall_s']:.3f}s" for p in sv.get("phases", [])))
        proof = doc.get("proof") or {}
        if proof.get("time_s") is not None:
            diag = proof.get("diagnosis", {})
            out.append(f"  diagnosis: {diag.get('solves', 0)} CP-SAT solves over {diag.get('options', 0)} candidates "
                       f"({diag.get('time_s', 0):.2f} s); proof with repairs {proof['time_s']:.2f} s")
    d = doc.get("defaults") or {}
    if d:
        out.append(h("Defaults used"))
        for k, v in d.items():
            out.append(f"  {k}: {v}")
    if md:
        # Every plain line is its own paragraph in Markdown (list items keep their own lines).
        out = [f"- {line.strip()}" if line.startswith("  ") and not line.strip().startswith("|")
               and not line.strip().startswith("-") else line for line in out]
    return "\n".join(out) + "\n"

"""People's view of a JSON document: text for a terminal, Markdown for a pull request."""

from __future__ import annotations

from typing import Any


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
    """People's view of a JSON document (plan, verification, proof or capacity plan)."""
    if doc.get("capacity"):
        return render_capacity(doc, md)
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
        line += (" (the fields not given chosen by the planner under the pins, when some choice passes; "
                 "checked with the exact cost model)")
    elif sv:
        line += f" in {sv.get('time_s', 0):.2f} s"
        if sv.get("objective") is not None:
            line += f"; objective {_fmt(sv['objective'])} {sv.get('objective_unit', '')}"
            if sv.get("bound") is not None:
                line += f" (bound {_fmt(sv['bound'])}, gap {sv.get('gap', 0) or 0:.2%})"
    out.append(line)
    out += _serving_lines(doc, h, md)
    if doc.get("strategy"):
        st = doc["strategy"]
        m = doc["metrics"]
        out.append(h("Strategy"))
        adp = f" attention_dp={st['attention_dp']}" if st.get("attention_dp", 1) > 1 else ""
        out.append(f"  tp={st['tp']} pp={st['pp']} dp={st['dp']}{adp} ep={st['ep']}  weights {st['weights']}  "
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
        if gpus and ("experts" in gpus[0] or "expert_slots" in gpus[0]):
            out.append(h("Experts per GPU (replica 0)"))
            out += _table(["GPU", "stage", "tp rank", "ep rank", "experts"],
                          [[str(g["id"]), str(g["stage"]), str(g["tp_rank"]), str(g["ep_rank"]),
                            f"{g['experts'][0]}-{g['experts'][1]}" if "experts" in g
                            else f"{g['expert_slots']} slots of the balanced map"] for g in gpus if g["dp_rank"] == 0], md)
        out.append(h("Predicted metrics (the planner's linear model at the operating batch)"))
        out += _table(["metric", "value"], [
            ["operating batch", f"{m['batch_per_replica']} sequences per replica (engine cap max_num_seqs "
                                f"{st['max_num_seqs']})"],
            ["TTFT", f"{m['ttft_ms']:.1f} ms"],
            ["TPOT", f"{m['tpot_ms']:.2f} ms (decode step alone {m['decode_step_ms']:.2f} ms)"],
            ["output tokens/s", f"{m['output_tokens_per_s']:,.0f} served; capacity "
                                f"{m['capacity_output_tokens_per_s']:,.0f}"],
            ["output tokens/s per GPU", f"{m['served_output_tokens_per_s_per_gpu']:,.1f} served; "
                                        f"{m['output_tokens_per_s_per_gpu']:,.1f} capacity"],
            ["max request rate", f"{m['max_request_rate']:.2f} req/s"],
            ["max concurrency", f"{m['max_concurrency']} sequences (max_num_seqs x dp; the KV cache holds "
                                f"{m['kv_capacity_sequences']} within the engine cap)"],
            *([["KV cache", f"{m['kv_cache_tokens']:,} tokens per "
                            f"{'attention-DP rank' if st.get('attention_dp', 1) > 1 else 'replica'} (the engine's "
                            "start-up figure, vLLM \"GPU KV cache size\")"]] if m.get("kv_cache_tokens") is not None
              else []),
            *_cost_rows(doc),
        ], md)
        sim = doc.get("simulated")
        if sim:
            out.append(h(f"Simulated ({sim['engine']} scheduler, {sim['requests']:,} requests, {sim['arrivals']}, "
                         f"seed {sim['seed']})"))
            rows = []
            for key, label in (("ttft_ms", "TTFT ms"), ("tpot_ms", "TPOT ms"), ("itl_ms", "ITL ms"),
                               ("e2e_ms", "end-to-end ms")):
                d = sim[key]
                rows.append([label] + [_fmt(d[k]) for k in ("mean", "p50", "p90", "p99")])
            out += _table(["", "mean", "p50", "p90", "p99"], rows, md)
            out.append(f"  {sim['output_tokens_per_s']:,.0f} output tokens/s, {sim['requests_per_s']:.2f} req/s "
                       f"(goodput {sim['goodput_requests_per_s']:.2f} req/s within the mean targets); mean batch "
                       f"{sim['mean_batch']:.1f} per replica; queue mean {sim['mean_queue']:.1f}, max "
                       f"{sim['max_queue']}" + (f"; {sim['rejected']} request(s) never fit the KV cache"
                                                if sim["rejected"] else ""))
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
            out.append(h(f"Launch (flags of {', '.join(launch['versions'].values())})"))
            order = [launch["engine"]] + [e for e in ("vllm", "sglang", "trtllm") if e != launch["engine"]]
            fence = ["```bash"] if md else []
            out += fence + [f"  {launch[e]}" for e in order] + (["```"] if md else [])
            out.append("  extra_llm_api_options.yaml for trtllm-serve:")
            out += [f"    {line}" for line in launch["trtllm_extra_llm_api_options"].rstrip("\n").split("\n")]
            for n in launch.get("notes", []):
                out.append(f"  note: {n}")
        elif doc.get("status") == "infeasible" and doc.get("strategy"):
            out.append(h("Launch"))
            out.append("  none: the proposed strategy fails a requirement (see the proof below)")
    comparison = doc.get("optimum")
    if comparison:
        out.append(h("Compared with the optimum"))
        out.append(f"  {comparison['statement']}")
    proof = doc.get("proof")
    if proof:
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
            ex = sv.get("exact")
            if ex:
                found = "; it found a plan the rounded tables missed" if ex.get("improved") else ""
                verdict = (f"the answer holds under the exact physics (to {ex['tolerance']:g} relative)"
                           if ex.get("complete") else f"not finished ({ex.get('stopped')}): the answer is not proven")
                out.append(f"  exact check: {ex['checked']} candidate(s) of the optimistic tables checked by the "
                           f"verifier, {ex['learned']} fact(s) learned{found}; {verdict}")
            if sv.get("tie_breaks", "complete") != "complete":
                out.append(f"  tie-breaks {sv['tie_breaks']}: the objective is optimal, but among equal plans this "
                           "one is not the canonical choice (raise --deterministic-time)")
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


def render_proof(proof: dict[str, Any], md: bool = False) -> str:
    """The proof section of the text / Markdown report, readable without knowing CP-SAT."""
    h = (lambda t: f"\n## {t}") if md else (lambda t: f"\n{t}")
    out = [h("Proof of infeasibility")]
    if proof.get("partial_reason"):
        out.append(f"  PARTIAL: {proof['partial_reason']}")
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
    bounds = proof.get("disaggregated_bounds") or []
    if bounds:
        out.append(h("Why no disaggregated plan (each a bound over every pool layout searched)"))
        out += [f"  {i}. [{b['rule']}] {b['statement']}" for i, b in enumerate(bounds, 1)]
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
            mark = "verified" if r["verified"] else \
                "not tried" if r["result"].startswith("not tried") else "does not suffice"
            out.append(f"  {i}. {r['change']} [{mark}]" + ("" if mark == "not tried" else f": {r['result']}"))
            for alt in r.get("alternatives", []):
                out.append(f"       also: {alt}")
    return "\n".join(out)


def _cost_rows(doc: dict[str, Any]) -> list[list[str]]:
    """The cost lines of the metrics table, with where the price came from."""
    m, price = doc["metrics"], doc.get("price")
    if price is None or m.get("cost_per_hour_usd") is None:
        return [["cost", "no price known for this GPU (give cluster.price_per_gpu_hour_usd or --price)"]]
    when = f", {price['date']}" if price.get("date") else ""
    return [
        ["cost", f"${m['cost_per_hour_usd']:,.2f} per hour ({m['gpus_used']} GPUs x ${price['usd_per_gpu_hour']:g}, "
                 f"{price['kind']} from {price['origin']}{when})"],
        ["cost per token", f"${m['cost_per_million_output_tokens_usd']:,.4f} per million output tokens served"],
    ]


def _money(x: Any, digits: int = 2) -> str:
    return "-" if x is None else f"${x:,.{digits}f}"


def render_capacity(doc: dict[str, Any], md: bool = False) -> str:
    """A capacity plan: every GPU type's best, the choice (one type or a mix), then the chosen plan(s)."""
    h = (lambda t: f"\n## {t}") if md else (lambda t: f"\n{t}")
    cap, sv = doc["capacity"], doc.get("solver") or {}
    out = [("# " if md else "") + f"{doc['instance']}: {doc['model']}, capacity plan over {len(cap['offers'])} "
           f"GPU type(s)"]
    line = f"Status: {doc['status'].upper()} in {sv.get('time_s', 0):.2f} s"
    if sv.get("objective") is not None:
        line += f"; objective {_fmt(sv['objective'])} {sv.get('objective_unit', '')}"
    out.append(line)
    out.append(h("GPU types on offer (each solved exactly on its own)"))
    rows = []
    for o in cap["offers"]:
        st, price = o.get("strategy"), o.get("price") or {}
        plan = f"tp={st['tp']} pp={st['pp']} dp={st['dp']} {st['weights']}/{st['kv_cache']}" if st else o["status"]
        rows.append([o["gpu"], f"{o['available_gpus']} ({o['nodes']}x{o['gpus_per_node']})",
                     _money(price.get("usd_per_gpu_hour"), 3), plan, _fmt(o.get("gpus_used") or "-"),
                     _money(o.get("cost_per_hour_usd")), _money(o.get("cost_per_million_output_tokens_usd"), 3),
                     _fmt(o.get("ttft_ms") if o.get("ttft_ms") is not None else "-"),
                     _fmt(o.get("tpot_ms") if o.get("tpot_ms") is not None else "-")])
    out += _table(["GPU", "available", "$/GPU-h", "best plan", "GPUs", "$/h", "$/M tok", "TTFT ms", "TPOT ms"],
                  rows, md)
    out.append(h("Choice"))
    out.append(f"  {cap['choice']['statement']}")
    mix = cap.get("mix")
    if mix:
        out += _table(["GPU", "replicas", "GPUs", "req/s share", "replica capacity", "plan", "$/h"],
                      [[g["gpu"], str(g["replicas"]), str(g["gpus"]), f"{g['request_rate']:.3f}",
                        f"{g['replica_capacity_request_rate']:.3f}",
                        f"tp={g['strategy']['tp']} pp={g['strategy']['pp']} {g['strategy']['weights']}/"
                        f"{g['strategy']['kv_cache']} layers {'+'.join(map(str, g['layers_per_stage']))}",
                        _money(g["cost_per_hour_usd"])] for g in mix["groups"]], md)
        out.append(f"  whole deployment: {mix['gpus_used']} GPUs, {_money(mix['cost_per_hour_usd'])}/h, "
                   f"{_money(mix['cost_per_million_output_tokens_usd'], 4)} per million output tokens; worst group "
                   f"TTFT {doc['metrics']['ttft_ms']:.1f} ms, TPOT {doc['metrics']['tpot_ms']:.2f} ms")
        out.append(f"  model: {mix['model']}")
    elif cap.get("mix_note"):
        out.append(f"  mixes: {cap['mix_note']}")
    for r in cap.get("refuted_mixes") or []:
        out.append(f"  refuted by verification: {r}")
    if cap.get("repair"):
        out.append(f"  repair: {cap['repair']['statement']}")
    if mix:
        for k, sub in enumerate(doc.get("deployments") or []):
            g = mix["groups"][k]
            out.append(h(f"Group {k}: {g['replicas']} x {g['gpu']} replica(s) at {g['request_rate']:.3f} req/s"))
            out.append(render_text(sub, md))
    elif doc["status"] in ("optimal", "feasible"):
        chosen = {**doc, "solver": sv.get("chosen")}
        chosen.pop("capacity")
        out.append(h(f"Chosen plan: {cap['choice']['gpu']}"))
        out.append(render_text(chosen, md))
    else:
        for item in (doc.get("proof") or {}).get("per_gpu_type", []):
            out.append(h(f"Why not {item['gpu']} ({item['status']})"))
            if item.get("proof"):
                out.append(render_proof(item["proof"], md))
    return "\n".join(out) + "\n"


def _pool_layout(pool: dict[str, Any]) -> str:
    """``tp=4 pp=1`` of a pool's worker, with its attention-DP ranks and EP degree where used."""
    extra = (f" attention_dp={pool['attention_dp']}" if pool.get("attention_dp", 1) > 1 else "") + \
        (f" ep={pool['ep']}" if pool.get("ep", 1) > 1 else "")
    return f"tp={pool['tp']} pp={pool['pp']}{extra}"


def _serving_lines(doc: dict[str, Any], h, md: bool) -> list[str]:
    """Aggregated against disaggregated serving, and a chosen disaggregated plan's pools and launch."""
    sv = doc.get("serving")
    if not sv:
        return []
    out = [h(f"Serving: aggregated vs disaggregated (search.serving {sv['mode']}; chosen: {sv['chosen']})")]
    agg, dis = sv["aggregated"], sv.get("disaggregated")
    rows = []
    if agg.get("strategy"):
        st = agg["strategy"]
        rows.append(["aggregated", f"tp={st['tp']} pp={st['pp']} dp={st['dp']} {st['weights']}/{st['kv_cache']}",
                     str(agg["gpus_used"]), _fmt(agg["ttft_ms"]), _fmt(agg["tpot_ms"]), _fmt(agg["objective"])])
    else:
        rows.append(["aggregated", agg["status"], "-", "-", "-", "-"])
    if dis:
        p, d = dis["prefill"], dis["decode"]
        rows.append(["disaggregated", f"{p['workers']} x prefill {_pool_layout(p)} + {d['workers']} x decode "
                     f"{_pool_layout(d)} {d['weights']}/{d['kv_cache']}", str(dis["gpus_used"]),
                     _fmt(dis["ttft_ms"]), _fmt(dis["tpot_ms"]), _fmt(dis.get("objective"))])
    else:
        rows.append(["disaggregated", f"{sv['disaggregated_status']}: {sv['disaggregated_note']}", "-", "-", "-", "-"])
    out += _table(["serving", "plan", "GPUs", "TTFT ms", "TPOT ms", sv["objective_unit"]], rows, md)
    for r in sv.get("refuted") or []:
        out.append(f"  refuted by the simulator: {r}")
    if sv["chosen"] != "disaggregated" or not dis:
        return out
    out.append(h("Disaggregated plan"))
    out.append(f"  {dis['statement']}")
    for name in ("prefill", "decode"):
        pool = dis[name]
        mem = pool["memory_GiB"][0]
        out.append(f"  {name} pool: {pool['workers']} worker(s) x {pool['gpus'] // max(1, pool['workers'])} GPU(s) "
                   f"({_pool_layout(pool)}), "
                   f"{pool['capacity_request_rate']:.2f} req/s; per GPU (stage 0) weights {mem['weights']:.2f} + KV "
                   f"{mem['kv_cache']:.2f} + activations {mem['activations']:.2f} + overhead {mem['overhead']:.2f} = "
                   f"{mem['total']:.2f} / {mem['capacity']:.2f} GiB")
    out.append(h("Requirements"))
    out += _table(["", "rule", "value", "limit", "slack", "unit"],
                  [["PASS" if r["passed"] else "FAIL", r["rule"], _fmt(r["value"]), _fmt(r["limit"]),
                    "" if r["slack"] is None else _fmt(r["slack"]), r["unit"]] for r in doc["requirements"]], md)
    launch = doc.get("launch")
    if launch:
        out.append(h("Launch (one command per worker, then the router)"))
        out.append(f"  topology: {launch['topology']}")
        fence = ["```bash"] if md else []
        for eng in [launch["engine"]] + [e for e in ("vllm", "sglang", "trtllm") if e != launch["engine"]]:
            cmds = launch[eng]
            out += fence + [f"  [{eng}] {c}" for c in cmds["prefill"] + cmds["decode"]] + \
                [f"  [{eng}] router: {cmds['router']}"] + (["```"] if md else [])
            for name in (k for k in cmds if k.endswith(".yaml")):  # the files the commands read
                out += [f"  [{eng}] {name}:"] + (["```yaml"] if md else []) + \
                    [f"    {line}" for line in cmds[name].splitlines()] + (["```"] if md else [])
        for n in launch.get("notes", []):
            out.append(f"  note: {n}")
    return out

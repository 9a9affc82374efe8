"""Disaggregated serving: pool physics, the verifier, the CP-SAT choice against brute force, the simulator."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import pytest

from solver.api import load_instance, plan
from solver.physics import Config, even_split, step_model
from solver.physics.disagg import decode_figures, kv_transfer_s, prefill_figures
from solver.physics.memory import kv_bytes_per_token
from solver.problem import RATE_LEVELS
from solver.search.disagg import plan_disagg
from solver.verify import DisaggPlacement, Placement, evaluate_disagg
from tests.conftest import INSTANCES, run_cli, run_json

FLAGSHIP = INSTANCES / "llama70b_h100_disagg.json"
LONG = INSTANCES / "llama70b_h100_disagg_4k_prompts.json"
MOE = INSTANCES / "mixtral8x22b_2x8_h100_disagg.json"


def _l4(write_instance, **slo) -> str:
    data = json.loads((INSTANCES / "llama8b_4_l4.json").read_text())
    data.pop("expect")
    data["search"] = {"serving": "auto"}
    data["workload"] = {"input_tokens": 2048, "output_tokens": 256, "request_rate": 2}
    data["slo"] = {"ttft_ms": 2000, "tpot_ms": 60, **slo}
    return write_instance(data)


def _pools(tp_p, x, tp_d, y, batch, w="fp8", kv="fp8", layers=80):
    return DisaggPlacement(Placement(Config(tp_p, 1, x, 1, w, kv), 4, (layers,)),
                           Placement(Config(tp_d, 1, y, 1, w, kv), batch, (layers,)))


# --- physics ----------------------------------------------------------------------------------------


def test_prefill_latency_passes_every_stage_and_capacity_batches_prompts():
    problem = load_instance(FLAGSHIP)
    cfg = Config(2, 2, 1, 1, "fp8", "fp8")
    model = step_model(problem.ctx, cfg, tuple(even_split(80, 2)))
    pf = prefill_figures(model, 2048, 8192)
    assert pf.prompts_per_step == 4
    # A lone prompt is not pipelined: its latency is the sum of the stages, above the pipelined step's share.
    lone = sum(st.time_s(2048, 0, 2048 * 2049 / 2, 1.0 if s == 1 else 0.0) for s, st in enumerate(model.stages))
    assert pf.latency_s == pytest.approx(lone)
    assert pf.capacity_per_s > 1 / pf.latency_s  # four prompts a step share the weight reads
    longer = prefill_figures(model, 20_000, 8192)  # three chunks, each attending to the earlier ones
    assert longer.prompts_per_step == 1 and longer.latency_s > 2 * pf.latency_s


def test_decode_tpot_is_one_step_at_the_mean_context_and_grows_with_the_batch():
    problem = load_instance(FLAGSHIP)
    model = step_model(problem.ctx, Config(2, 1, 1, 1, "fp8", "fp8"), (80,))
    small, big = decode_figures(model, 16, 2048, 256), decode_figures(model, 128, 2048, 256)
    assert small.tpot_s == pytest.approx(model.step_s(16, 16 * (2048 + 128)))
    assert big.tpot_s > small.tpot_s and big.capacity_per_s > small.capacity_per_s
    assert big.capacity_per_s == pytest.approx(128 / (256 * big.tpot_s))


def test_kv_transfer_moves_every_layer_of_the_prompt_over_the_slower_end():
    problem = load_instance(FLAGSHIP)
    ctx = problem.ctx
    p, d = Config(4, 1, 1, 1, "fp8", "fp8"), Config(2, 1, 1, 1, "fp8", "fp8")
    link = ctx.hw.intra
    got = kv_transfer_s(ctx, p, d, 2048, link)
    want = kv_bytes_per_token(ctx.arch, "fp8", 1) * 2048 / (link.bandwidth_GBps * 1e9 * ctx.eff.link * 2) \
        + link.latency_us * 1e-6
    assert got == pytest.approx(want)
    assert kv_transfer_s(ctx, p, d, 2048, ctx.hw.inter) > got  # the network is slower than NVLink


# --- the verifier -------------------------------------------------------------------------------------


def test_a_good_plan_passes_and_names_every_pool_rule():
    problem = load_instance(FLAGSHIP)
    ev = evaluate_disagg(problem, _pools(4, 1, 2, 1, 96), simulate=False)
    assert ev.feasible, [r.statement for r in ev.failed()]
    rules = {r.rule for r in ev.requirements}
    assert {"prefill.mem_cap[stage=0]", "decode.mem_cap[stage=0]", "gpu_count", "prefill.request_rate",
            "decode.request_rate", "slo.ttft_ms", "slo.tpot_ms", "prefill.worker_packing"} <= rules
    assert ev.metrics.transfer_link == "nvlink" and ev.metrics.gpus == 6


@pytest.mark.parametrize("pools, rule", [
    ((1, 6, 2, 1, 96), "prefill.mem_cap[stage=0]"),   # 70B FP8 does not fit one H100 at 0.85
    ((4, 1, 2, 1, 2000), "decode.mem_cap[stage=0]"),  # 2000 sequences' KV on 2 GPUs
    ((2, 1, 2, 1, 96), "prefill.request_rate"),       # one TP2 prefill worker carries < 8 req/s
    ((4, 1, 2, 1, 8), "decode.request_rate"),         # 8 sequences per worker is too few for 8 req/s
    ((4, 2, 4, 1, 96), "gpu_count"),                  # 12 GPUs on an 8-GPU node
])
def test_each_failing_rule_is_named(pools, rule):
    ev = evaluate_disagg(load_instance(FLAGSHIP), _pools(*pools), simulate=False)
    assert not ev.feasible and rule in {r.rule for r in ev.failed()}, [r.rule for r in ev.failed()]


# --- the search against brute force ------------------------------------------------------------------


def test_cp_sat_finds_the_fewest_gpus_any_disaggregated_plan_needs(write_instance):
    problem = load_instance(_l4(write_instance))
    res = plan_disagg(problem)
    assert res.status == "optimal" and res.evaluation.feasible
    best = None
    hw = problem.ctx.hw
    inst = problem.instance
    for tp_p, tp_d, w, kv in itertools.product((1, 2, 4), (1, 2, 4), inst.precision.weights, inst.precision.kv_cache):
        for x, y in itertools.product(range(1, 5), range(1, 5)):
            gpus = x * tp_p + y * tp_d
            if gpus > hw.total_gpus or (best is not None and gpus >= best):
                continue
            for b in (lv for lv in RATE_LEVELS if lv <= inst.limits.max_num_seqs):
                dp = _pools(tp_p, x, tp_d, y, b, w, kv, layers=problem.arch.layers)
                dp = DisaggPlacement(Placement(dp.prefill.cfg, prefill_figures(
                    step_model(problem.ctx, dp.prefill.cfg, (problem.arch.layers,)), 2048,
                    inst.limits.max_num_batched_tokens).prompts_per_step, (problem.arch.layers,)), dp.decode)
                if evaluate_disagg(problem, dp, simulate=False).feasible:
                    best = gpus
                    break
    assert best is not None and res.evaluation.metrics.gpus == best


def test_percentile_targets_are_checked_by_the_disaggregated_simulator(write_instance):
    def forced(**slo):
        data = json.loads(Path(_l4(write_instance, **slo)).read_text())
        data["search"]["serving"] = "disaggregated"
        data["simulation"] = {"requests": 300, "max_candidates": 4}
        return plan(load_instance(write_instance(data, "forced.json")))

    loose = forced(ttft_p99_ms=5000)
    assert loose.document["serving"]["chosen"] == "disaggregated"
    assert loose.document["simulated"]["ttft_ms"]["p99"] <= 5000
    tight = forced(ttft_p99_ms=1)
    block = tight.document["serving"]
    assert block["disaggregated"] is None and block["disaggregated_status"] == "unknown" and block["refuted"]
    assert tight.exit_code == 3


def test_the_simulator_agrees_with_the_linear_model_at_light_load():
    problem = load_instance(FLAGSHIP)
    ev = evaluate_disagg(problem, _pools(4, 1, 2, 1, 96), simulate=True)
    sim = ev.simulation
    assert sim.completed == problem.instance.simulation.requests and sim.rejected == 0
    # At 8 req/s against ~9 req/s of decode capacity the batch stays below 96, so TPOT is below its level's.
    assert sim.tpot_ms.mean <= ev.metrics.tpot_ms * 1.02
    assert sim.ttft_ms.p99 >= sim.ttft_ms.mean >= ev.metrics.prefill_latency_ms


# --- reports -----------------------------------------------------------------------------------------


def test_the_flagship_reports_both_and_breaks_the_tie_for_aggregated():
    code, doc = run_json(str(FLAGSHIP))
    s = doc["serving"]
    assert code == 0 and s["chosen"] == "aggregated" and doc["strategy"] is not None
    assert s["aggregated"]["objective"] == pytest.approx(s["disaggregated"]["objective"])
    assert s["disaggregated"]["gpus_used"] == s["aggregated"]["gpus_used"]


def test_long_prompts_choose_disaggregation_with_commands_per_pool():
    code, doc = run_json(str(LONG))
    s = doc["serving"]
    assert code == 0 and s["chosen"] == "disaggregated" and s["aggregated"]["status"] == "infeasible"
    assert doc["strategy"] is None and doc["disaggregated"]["gpus_used"] == doc["metrics"]["gpus_used"]
    launch = doc["launch"]
    assert all("--disaggregation-mode prefill" in c for c in launch["sglang"]["prefill"])
    assert all("--disaggregation-mode decode" in c for c in launch["sglang"]["decode"])
    assert "--pd-disaggregation" in launch["sglang"]["router"]
    assert all("NixlConnector" in c for c in launch["vllm"]["prefill"] + launch["vllm"]["decode"])
    pools = {g["pool"] for g in doc["gpus"]}
    assert pools == {"prefill", "decode"} and len(doc["gpus"]) == doc["metrics"]["gpus_used"]
    assert all(r["passed"] for r in doc["requirements"])
    code, out, _ = run_cli(str(LONG))
    assert "Disaggregated plan" in out and "router" in out


def test_moe_disaggregation_beats_aggregated_on_gpus():
    doc = plan(load_instance(MOE)).document
    s = doc["serving"]
    assert s["chosen"] == "disaggregated"
    assert s["disaggregated"]["gpus_used"] < s["aggregated"]["gpus_used"]


def test_forcing_disaggregation_without_any_plan_is_infeasible(write_instance):
    path = _l4(write_instance, tpot_ms=1)
    data = json.loads(Path(path).read_text())
    data["search"]["serving"] = "disaggregated"
    code, doc = run_json(write_instance(data, "forced.json"))
    assert code == 1 and doc["status"] == "infeasible" and "no disaggregated plan" in doc["proof"]["summary"]


def test_the_closed_loop_fixed_point_is_settled_and_grows_with_the_clients(monkeypatch):
    from solver.simulate import disagg as sim_disagg
    from solver.simulate.workload import closed_loop

    problem = load_instance(FLAGSHIP)
    pools = ((Config(4, 1, 1, 1, "fp8", "fp8"), (80,)), (Config(2, 1, 1, 1, "fp8", "fp8"), (80,)))

    def run(clients):
        reqs = closed_loop(clients, 10 * clients, (1638, 2048), (205, 256), seed=0)
        return sim_disagg.simulate_disagg(problem, *pools, 256, 0.001, reqs)

    few, many = run(4), run(64)
    assert few.completed == 40 and many.completed == 640
    assert many.ttft_ms.mean > few.ttft_ms.mean and many.tpot_ms.mean > few.tpot_ms.mean
    monkeypatch.setattr(sim_disagg, "CLOSED_LOOP_TOLERANCE", 1e-5)
    monkeypatch.setattr(sim_disagg, "CLOSED_LOOP_ITERATIONS", 60)
    settled = run(64)
    assert settled.ttft_ms.mean == pytest.approx(many.ttft_ms.mean, rel=0.02)
    assert settled.tpot_ms.mean == pytest.approx(many.tpot_ms.mean, rel=0.01)


def test_strategy_verifies_a_disaggregated_layout():
    code, doc = run_json(str(INSTANCES / "llama70b_h100.json"), "--strategy",
                         "prefill=1xtp4,decode=1xtp2,weights=fp8,kv=fp8")
    assert code == 0 and doc["status"] == "feasible" and doc["solver"]["mode"] == "verify"
    assert doc["disaggregated"]["prefill"]["tp"] == 4 and doc["disaggregated"]["decode"]["workers"] == 1
    assert "decode_batch" in doc["strategy_defaults"]
    code, doc = run_json(str(INSTANCES / "llama70b_h100.json"), "--strategy", "prefill=1xtp2,decode=1xtp2")
    assert code == 1 and "prefill.request_rate" in doc["proof"]["summary"]
    assert "no allowed pair passes" in doc["strategy_defaults"]["precision"]


@pytest.mark.parametrize("text, needle", [
    ("prefill=1xtp4", "decode= is missing"),
    ("prefill=1xtp4,decode=two", "prefill=NxtpT"),
    ("prefill=1xtp4,decode=1xtp2,tp=4", "prefill=NxtpT"),
])
def test_bad_disaggregated_strategies_are_input_errors(text, needle):
    code, _, err = run_cli(str(INSTANCES / "llama70b_h100.json"), "--strategy", text)
    assert code == 2 and needle in err and "Traceback" not in err


# --- the engines' hand-off and attention-DP pools ------------------------------------------------------


def test_the_hand_off_and_decode_polling_are_one_figure_in_verifier_and_simulator(write_instance):
    from solver.simulate.disagg import simulate_disagg
    from solver.simulate.workload import closed_loop

    data = json.loads(FLAGSHIP.read_text())
    data.pop("expect", None)
    figures = {}
    for handoff_ms, step_us in ((0, 0), (100, 1000)):
        data["cost_model"] = {"kv_handoff_ms": handoff_ms, "disagg_step_overhead_us": step_us}
        problem = load_instance(write_instance(data, f"h{handoff_ms}.json"))
        assert problem.defaults["cost_model"]["kv_handoff_ms"] == handoff_ms
        ev = evaluate_disagg(problem, _pools(4, 1, 2, 1, 16), simulate=False)
        one = closed_loop(1, 3, (2048, 2048), (64, 64), seed=0)  # one client: no queueing
        sim = simulate_disagg(problem, (ev.placement.prefill.cfg, (80,)), (ev.placement.decode.cfg, (80,)), 16,
                              ev.metrics.transfer_ms * 1e-3, one)
        ttft_rule = next(r for r in ev.requirements if r.rule == "slo.ttft_ms")
        assert f"hand-off {handoff_ms} " in ttft_rule.statement
        figures[handoff_ms] = (ev.metrics, sim)
    (m0, s0), (m1, s1) = figures[0], figures[100]
    # The linear model: TPOT one step longer by the polling; TTFT by the hand-off and that step.
    assert m1.tpot_ms - m0.tpot_ms == pytest.approx(1.0, rel=1e-6)
    assert m1.ttft_ms - m0.ttft_ms == pytest.approx(100.0 + 1.0, rel=1e-6)
    assert (m0.handoff_ms, m1.handoff_ms) == (0, 100)
    # The simulator, one lone request at a time: the same hand-off, the same polling per step.
    assert s1.ttft_ms.mean - s0.ttft_ms.mean == pytest.approx(101.0, abs=0.5)
    assert s1.tpot_ms.mean - s0.tpot_ms.mean == pytest.approx(1.0, abs=0.05)


def _deepseek_auto(write_instance) -> str:
    data = json.loads((INSTANCES / "deepseekv3_4x8_h200.json").read_text())
    data.pop("expect")
    data["search"] = {"serving": "auto", "pp": [1]}
    return write_instance(data, "deepseek_auto.json")


def test_pools_with_attention_dp_are_searched_verified_and_launched(write_instance):
    code, doc = run_json(_deepseek_auto(write_instance))
    s, dis = doc["serving"], doc["disaggregated"]
    assert code == 0 and s["chosen"] == "disaggregated"
    assert doc["defaults"]["search.attention_dp"] == [1]  # the aggregated side keeps one rank
    assert doc["defaults"]["search.attention_dp (disaggregated pool workers)"] == [1, 2, 4, 8]
    pools = [dis["prefill"], dis["decode"]]
    assert any(p["attention_dp"] > 1 for p in pools)
    assert s["disaggregated"]["gpus_used"] < s["aggregated"]["gpus_used"]
    assert all(r["passed"] for r in doc["requirements"])
    # One GPU entry per rank of every worker, with its attention-DP rank.
    assert len(doc["gpus"]) == dis["gpus_used"]
    assert {g["attention_dp_rank"] for g in doc["gpus"] if g["pool"] == "decode"} == \
        set(range(dis["decode"]["attention_dp"])) or dis["decode"]["attention_dp"] == 1
    launch = doc["launch"]
    wide = dis["decode"] if dis["decode"]["attention_dp"] > 1 else dis["prefill"]
    name = "decode" if wide is dis["decode"] else "prefill"
    assert all(f"--dp-size {wide['attention_dp']} --enable-dp-attention" in c for c in launch["sglang"][name])
    assert f"attention_dp={wide['attention_dp']}" in launch["topology"]
    trt = launch["trtllm"]
    assert "disable_overlap_scheduler: true" in trt["ctx_config.yaml"]
    assert "disable_overlap_scheduler" not in trt["gen_config.yaml"]
    assert all("cache_transceiver_config:\n  backend: UCX" in trt[f] for f in ("ctx_config.yaml", "gen_config.yaml"))
    assert f"context_servers:\n  num_instances: {dis['prefill']['workers']}" in trt["disagg_config.yaml"]
    assert f"generation_servers:\n  num_instances: {dis['decode']['workers']}" in trt["disagg_config.yaml"]
    assert all("--extra_llm_api_options ctx_config.yaml" in c for c in trt["prefill"])
    assert all("--extra_llm_api_options gen_config.yaml" in c for c in trt["decode"])


def test_strategy_takes_attention_dp_per_pool(write_instance):
    path = _deepseek_auto(write_instance)
    code, doc = run_json(path, "--strategy", "prefill=1xtp1adp8ep8,decode=2xtp1adp8ep8,weights=fp8,kv=fp8")
    assert code == 0 and doc["status"] == "feasible"
    assert doc["disaggregated"]["prefill"]["attention_dp"] == 8 and doc["disaggregated"]["decode"]["workers"] == 2
    assert doc["disaggregated"]["gpus_used"] == 24
    code, _, err = run_cli(path, "--strategy", "prefill=1xtp1adp0,decode=1xtp8")
    assert code == 2 and "adpA" in err and "Traceback" not in err


# --- why no disaggregated plan ------------------------------------------------------------------------


@pytest.mark.parametrize("slo, rate, rule, needle", [
    ({"ttft_ms": 2000, "tpot_ms": 1}, 2, "decode.slo.tpot_ms", "the fastest decode worker that holds a sequence"),
    ({"ttft_ms": 10, "tpot_ms": 60}, 2, "slo.ttft_ms", "the fastest pair"),
    ({"ttft_ms": 20000, "tpot_ms": 60}, 200, "gpu_count", "the prefill pool needs at least"),
])
def test_the_proof_bounds_every_pool_layout(write_instance, slo, rate, rule, needle):
    data = json.loads(Path(_l4(write_instance)).read_text())
    data["search"]["serving"] = "disaggregated"
    data["slo"], data["workload"]["request_rate"] = slo, rate
    code, doc = run_json(write_instance(data, "forced.json"))
    bounds = doc["proof"]["disaggregated_bounds"]
    assert code == 1 and bounds and bounds[0]["rule"] == rule and needle in bounds[0]["statement"]
    b = bounds[0]
    assert b["value"] > b["limit"]  # each fact is a violated bound, with its numbers
    # Its repair lifts it and is verified by the disaggregated search on the changed instance.
    (repair,) = doc["proof"]["repairs"]
    assert repair["verified"] and repair["result"].startswith("feasible")
    key = {"gpu_count": "cluster.nodes", "slo.ttft_ms": "slo.ttft_ms"}.get(rule, "slo.tpot_ms")
    assert repair["change"].startswith(key)
    if key.startswith("slo."):
        assert float(repair["change"].split("= ")[1].split()[0]) >= b["value"]
    if rule == "gpu_count":
        # The bound is the model's own count: the same instance with that many GPUs has a plan.
        data["cluster"]["nodes"] = math.ceil(b["value"] / data["cluster"]["gpus_per_node"])
        code, doc = run_json(write_instance(data, "bigger.json"))
        assert code == 0 and doc["disaggregated"]["gpus_used"] >= b["value"]
    else:
        code, out, _ = run_cli(write_instance(data, "text.json"))
        assert code == 1 and "Why no disaggregated plan" in out and needle in out


def test_the_proof_names_the_memory_of_the_closest_worker(write_instance):
    data = json.loads(FLAGSHIP.read_text())
    data.pop("expect")
    data["cluster"].update(gpus_per_node=1, nodes=1)
    data["search"] = {"serving": "disaggregated"}
    code, doc = run_json(write_instance(data))
    (b,) = doc["proof"]["disaggregated_bounds"]
    assert code == 1 and b["rule"].startswith("prefill.mem_cap") and b["unit"] == "GiB"
    assert "the closest, tp=1 pp=1" in b["statement"] and b["value"] > b["limit"]


def test_an_attention_dp_prefill_worker_prefills_a_lone_prompt_on_one_rank():
    from solver.physics.disagg import prefill_worker

    problem = load_instance(INSTANCES / "deepseekv3_4x8_h200.json")
    ctx, layers = problem.ctx, (problem.arch.layers,)
    adp4 = Config(2, 1, 1, 8, "fp8", "fp8", 4)
    pf = prefill_worker(ctx, adp4, layers, 8192, 8192)
    lone = prefill_figures(step_model(ctx, adp4, layers, balanced=False), 8192, 8192)
    spread = prefill_figures(step_model(ctx, adp4, layers), 8192, 8192)
    # A lone prompt is on one rank (not a quarter on each); under load each rank takes its own.
    assert pf.latency_s == pytest.approx(lone.latency_s) and pf.latency_s > spread.latency_s
    assert pf.prompts_per_step == 4 and pf.capacity_per_s > 1 / pf.latency_s
    one_rank = Config(2, 1, 1, 8, "fp8", "fp8")
    assert prefill_worker(ctx, one_rank, layers, 8192, 8192) == prefill_figures(step_model(ctx, one_rank, layers),
                                                                                8192, 8192)

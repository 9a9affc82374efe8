"""Attention data parallelism with expert parallelism: memory, time, rules, planner choice, launch flags."""

from __future__ import annotations

import dataclasses
import json

import pytest

from solver.api import load_instance
from solver.physics import Config, kv_capacity_tokens, stage_coefficients
from solver.physics.memory import layer_weight_bytes_per_gpu, routed_expert_bytes_per_gpu
from solver.physics.timing import layer_cost
from solver.search.options import static_violations
from solver.verify import Placement, evaluate
from tests.conftest import INSTANCES, run_cli, run_json

DSV3 = INSTANCES / "deepseekv3_8_h200_offline.json"
DENSE = INSTANCES / "llama70b_h100.json"


def _dsv3(write_instance, engine: str = "vllm", **changes) -> str:
    data = json.loads(DSV3.read_text())
    data.pop("expect")
    data.setdefault("search", {})["engine"] = engine
    data.update(changes)
    return write_instance(data, f"dsv3_{engine}.json")


# --- physics ----------------------------------------------------------------------------------------


def test_experts_split_over_all_ranks_attention_replicated_and_latent_cache_not():
    problem = load_instance(DSV3)
    a, ctx = problem.arch, problem.ctx
    tp8 = Config(8, 1, 1, 1, "fp8", "fp8")
    adp8 = Config(1, 1, 1, 8, "fp8", "fp8", adp=8)
    # Routed experts: 1/8 of them per GPU either way.
    assert routed_expert_bytes_per_gpu(a, "moe", adp8) == pytest.approx(routed_expert_bytes_per_gpu(a, "moe", tp8))
    # Attention is whole on every attention rank (TP 1), a TP-8 shard otherwise.
    assert layer_weight_bytes_per_gpu(a, "moe", adp8) > layer_weight_bytes_per_gpu(a, "moe", tp8)
    # MLA's latent cache is replicated over TP: eight attention ranks hold about eight times the tokens
    # (less the extra attention weights they keep).
    cap_tp, cap_adp = kv_capacity_tokens(ctx, tp8, (a.layers,)), kv_capacity_tokens(ctx, adp8, (a.layers,))
    assert 4 * cap_tp < cap_adp < 8 * cap_tp
    # A rank holds the KV of its share of the replica's sequences.
    c_tp, c_adp = stage_coefficients(ctx, tp8, 64), stage_coefficients(ctx, adp8, 64)
    assert c_adp.kv_per_layer["moe"] == pytest.approx(c_tp.kv_per_layer["moe"] / 8)


def test_attention_is_charged_per_rank_experts_over_the_whole_stage():
    problem = load_instance(DSV3)
    ctx = problem.ctx
    one = Config(1, 1, 1, 1, "fp8", "fp8")
    adp8 = Config(1, 1, 1, 8, "fp8", "fp8", adp=8)
    bal, lone = layer_cost(ctx, "moe", adp8), layer_cost(ctx, "moe", adp8, balanced=False)
    # Per key of context and per prefill pair: 1/8 on the busiest rank when the sequences spread.
    assert bal.per_context_s == pytest.approx(lone.per_context_s / 8)
    assert bal.per_pair_s == pytest.approx(lone.per_pair_s / 8)
    assert lone.per_context_s == pytest.approx(layer_cost(ctx, "moe", one).per_context_s)
    # The experts' bytes per GPU are an eighth of a single GPU's; dispatch and combine add a latency.
    assert bal.experts_s == pytest.approx(layer_cost(ctx, "moe", one).experts_s / 8)
    assert bal.fixed_s > 0 and lone.per_token_s > bal.per_token_s


# --- rules ------------------------------------------------------------------------------------------


def test_engine_rules_for_attention_dp_and_the_expert_group(write_instance):
    vllm = load_instance(_dsv3(write_instance, "vllm"))
    trt = load_instance(_dsv3(write_instance, "trtllm"))
    # vLLM: EP spans the TP x DP group (ep is 1 or 8 with tp 2 x adp 4).
    assert "ep_layout" in static_violations(vllm, Config(2, 1, 1, 4, "fp8", "fp8", adp=4))
    assert not static_violations(vllm, Config(2, 1, 1, 8, "fp8", "fp8", adp=4))
    # TensorRT-LLM: attention DP makes every rank an attention rank of its own (attention TP 1).
    assert "attention_dp_layout" in static_violations(trt, Config(2, 1, 1, 8, "fp8", "fp8", adp=4))
    assert not static_violations(trt, Config(1, 1, 1, 8, "fp8", "fp8", adp=8))
    # A group larger than a node must fill whole nodes.
    assert "attention_dp_layout" in static_violations(vllm, Config(3, 1, 1, 1, "fp8", "fp8", adp=4)) or \
        "tp_within_node" in static_violations(vllm, Config(3, 1, 1, 1, "fp8", "fp8", adp=4))


def test_a_proof_cites_the_attention_dp_rule(write_instance):
    # One pipeline degree keeps the diagnosis's candidate list (every relaxation's) small.
    path = _dsv3(write_instance, "trtllm", search={"engine": "trtllm", "pp": [1]})
    code, doc = run_json(path, "--strategy", "tp=2,attention_dp=4,ep=8")
    assert code == 1
    failed = {r["rule"] for r in doc["requirements"] if not r["passed"]}
    assert "attention_dp_layout" in failed
    rules = {r for c in doc["proof"]["conflicts"] for r in c["rules"]} if "conflicts" in doc["proof"] else set()
    assert not rules or "attention_dp_layout" in rules or "pin.tp" in rules


def test_dense_model_refuses_attention_dp(write_instance):
    data = json.loads(DENSE.read_text())
    data.pop("expect")
    data["search"] = {"attention_dp": [1, 2]}
    code, out, err = run_cli(write_instance(data))
    assert code == 2 and "search.attention_dp" in err and "dense" in err
    code, out, err = run_cli(str(DENSE), "--strategy", "attention_dp=2")
    assert code == 2 and "attention_dp" in err


# --- the planner and the launch flags -------------------------------------------------------------


def test_planner_chooses_attention_dp_for_deepseek_and_it_beats_tp8():
    code, doc = run_json(str(DSV3))
    assert code == 0
    st = doc["strategy"]
    assert st["attention_dp"] == 8 and st["tp"] == 1
    best = doc["metrics"]["output_tokens_per_s_per_gpu"]
    code, tp8 = run_json(str(DSV3), "--strategy", "tp=8,attention_dp=1")
    assert code == 0 and tp8["metrics"]["output_tokens_per_s_per_gpu"] < best


@pytest.mark.parametrize("engine, needles", [
    ("vllm", ["--data-parallel-size 8", "--enable-expert-parallel", "--tensor-parallel-size 1"]),
    ("sglang", ["--tp-size 8", "--dp-size 8", "--enable-dp-attention", "--ep-size 8"]),
    ("trtllm", ["--tp_size 8", "--ep_size 8", "enable_attention_dp: true"]),
])
def test_strategy_accepts_attention_dp_and_ep_and_launches_it(write_instance, engine, needles):
    code, doc = run_json(_dsv3(write_instance, engine), "--strategy", "attention_dp=8,ep=8")
    assert code == 0, doc.get("proof")
    assert doc["strategy"]["attention_dp"] == 8 and doc["strategy"]["ep"] == 8 and doc["strategy"]["tp"] == 1
    launch = doc["launch"]
    text = launch[engine] + "\n" + (launch.get("trtllm_extra_llm_api_options") or "")
    for needle in needles:
        assert needle in text, (needle, text)


def _qwen3_fp8(write_instance, tmp_path) -> str:
    """Qwen3-235B-A22B-FP8: the catalog card's config with the block-FP8 quantization_config."""
    card = json.loads((INSTANCES.parent / "models" / "llm" / "qwen3-235b-a22b.json").read_text())
    cfg = dict(card["config"], quantization_config={"quant_method": "fp8", "fmt": "e4m3",
                                                     "activation_scheme": "dynamic", "weight_block_size": [128, 128]})
    path = tmp_path / "qwen3_fp8_config.json"
    path.write_text(json.dumps(cfg))
    data = json.loads((INSTANCES / "qwen3_235b_8_h100.json").read_text())
    data.pop("expect")
    data["model"] = {"hf_config": str(path), "name": "qwen3-235b-a22b-fp8"}
    data["precision"] = {"weights": ["fp8"], "kv_cache": ["fp8"]}
    data.setdefault("search", {})["pp"] = [1]  # one pipeline degree: a small diagnosis
    return write_instance(data, "qwen3_fp8.json")


def test_block_fp8_checkpoint_cannot_split_experts_eight_ways(write_instance, tmp_path):
    inst = _qwen3_fp8(write_instance, tmp_path)
    problem = load_instance(inst)
    assert problem.arch.fp8_block == 128
    # 1536 / 8 = 192 columns per shard: not whole 128-wide blocks; EP 8 keeps whole experts.
    assert "fp8_block_divisible" in static_violations(problem, Config(8, 1, 1, 1, "fp8", "fp8"))
    assert "fp8_block_divisible" not in static_violations(problem, Config(8, 1, 1, 8, "fp8", "fp8"))
    assert "fp8_block_divisible" not in static_violations(problem, Config(4, 1, 2, 1, "fp8", "fp8"))  # 384
    code, doc = run_json(inst, "--strategy", "tp=8,ep=1")
    assert code == 1
    failed = [r for r in doc["requirements"] if not r["passed"]]
    assert [r["rule"] for r in failed] == ["fp8_block_divisible"]
    assert "1536" in failed[0]["statement"] and "128" in failed[0]["statement"]
    # The planner never picks a layout that breaks the rule.
    code, doc = run_json(inst)
    assert code == 0
    st = doc["strategy"]
    assert 1536 // (st["tp"] * st["attention_dp"] // st["ep"]) % 128 == 0


# --- the busiest EP rank (workload.expert_loads) ---------------------------------------------------

MOE16 = INSTANCES / "moe16x64_16gpu.json"


def test_contiguous_placement_imbalance_by_hand():
    import numpy as np

    from solver.physics.experts import contiguous_ep_imbalance

    # Two layers of four experts; ranks of two hold (0, 1) and (2, 3).
    counts = np.array([[4.0, 0.0, 2.0, 2.0], [1.0, 1.0, 1.0, 1.0]])
    # Busiest ranks 4 and 2 against means 4 and 2: 6 / 6 = 1; with four ranks: (4 + 1) / (2 + 1).
    assert contiguous_ep_imbalance(counts, 2) == pytest.approx(1.0)
    assert contiguous_ep_imbalance(counts, 4) == pytest.approx(5 / 3)
    assert contiguous_ep_imbalance(counts, 1) == 1.0


def test_a_skewed_profile_slows_ep_and_leaves_moe_tp_alone(write_instance):
    with_loads = load_instance(MOE16)
    data = json.loads(MOE16.read_text())
    data.pop("expect")
    data["workload"].pop("expert_loads")
    even = load_instance(write_instance(data))
    assert with_loads.ctx.ep_imbalance(8) > 2.0 and even.ctx.ep_imbalance(8) == 1.0
    ep8 = Config(1, 1, 1, 8, "bf16", "bf16", adp=8)
    tp8 = Config(1, 1, 1, 1, "bf16", "bf16", adp=8)
    assert layer_cost(with_loads.ctx, "moe", ep8).per_token_s > layer_cost(even.ctx, "moe", ep8).per_token_s
    assert layer_cost(with_loads.ctx, "moe", tp8).per_token_s == layer_cost(even.ctx, "moe", tp8).per_token_s
    # The planner keeps the experts TP-split when the profile makes EP's busiest rank the bottleneck.
    code, doc = run_json(str(MOE16))
    assert code == 0 and doc["strategy"]["ep"] == 1
    assert doc["defaults"]["cost_model"]["ep_busiest_over_mean"]["8"] > 2.0


def test_a_profile_of_the_wrong_model_is_refused(write_instance):
    data = json.loads(DSV3.read_text())
    data.pop("expect")
    data["workload"]["expert_loads"] = str(INSTANCES / "loads" / "moe16x64_skewed.json")
    code, out, err = run_cli(write_instance(data))
    assert code == 2 and "workload.expert_loads" in err and "64 experts" in err


def test_a_balanced_expert_map_is_charged_its_packing_and_launched(write_instance, tmp_path):
    from solver.input.expert_loads import zipf_loads
    from solver.physics.experts import balanced_ep_imbalance, contiguous_ep_imbalance

    loads = zipf_loads(0.8, 16, 64, integer=True)
    profile = tmp_path / "zipf08.json"
    profile.write_text(json.dumps({"layers": loads.counts.tolist()}))
    for ep in (2, 4, 8, 16):
        assert 1.0 <= balanced_ep_imbalance(loads.counts, ep) <= contiguous_ep_imbalance(loads.counts, ep)
    base = json.loads((INSTANCES / "moe16x64_16gpu.json").read_text())
    base.pop("expect")
    base["workload"]["expert_loads"] = str(profile)
    docs = {}
    for placement in ("contiguous", "balanced"):
        data = json.loads(json.dumps(base))
        data["workload"]["expert_placement"] = placement
        code, docs[placement] = run_json(write_instance(data, f"{placement}.json"))
        assert code == 0
    contiguous, balanced = docs["contiguous"], docs["balanced"]
    # The balanced map is never charged more, and here it is what makes EP worth it.
    imb_c = contiguous["defaults"]["cost_model"]["ep_busiest_over_mean"]
    imb_b = balanced["defaults"]["cost_model"]["ep_busiest_over_mean"]
    assert all(imb_b[ep] <= imb_c[ep] for ep in imb_c) and imb_b["4"] < imb_c["4"]
    assert balanced["solver"]["objective"] >= contiguous["solver"]["objective"]
    assert contiguous["strategy"]["ep"] == 1 and balanced["strategy"]["ep"] > 1
    ep = balanced["strategy"]["ep"]
    launch = balanced["launch"]
    assert "--init-expert-location expert_map.json" in launch["sglang"]
    assert "moe_load_balancer: expert_map.yaml" in launch["trtllm_extra_llm_api_options"]
    red = balanced["strategy"].get("redundant_experts", 0)  # replicas the map places (searched, below)
    assert any(f"solve experts --loads {profile} --gpus {ep} --slots-per-gpu {(64 + red) // ep} --redundant {red}"
               in n for n in launch["notes"])
    # Without a profile there is nothing to balance: an input error naming the field.
    data = json.loads(json.dumps(base))
    del data["workload"]["expert_loads"]
    data["workload"]["expert_placement"] = "balanced"
    code, _, err = run_cli(write_instance(data, "noprofile.json"))
    assert code == 2 and "workload.expert_placement" in err and "workload.expert_loads" in err


def test_redundant_experts_trade_memory_for_balance_and_are_launched(write_instance, tmp_path):
    from solver.input.expert_loads import zipf_loads
    from solver.physics.experts import balanced_ep_imbalance

    loads = zipf_loads(0.8, 16, 64, integer=True)
    # Replicas of the hottest experts even the EP ranks out (the greedy start solve experts improves).
    assert balanced_ep_imbalance(loads.counts, 8, 8) < balanced_ep_imbalance(loads.counts, 8) - 0.3
    assert balanced_ep_imbalance(loads.counts, 8, 4) == 1.0  # 4 replicas do not divide over 8 ranks: unknown
    profile = tmp_path / "zipf08.json"
    profile.write_text(json.dumps({"layers": loads.counts.tolist()}))
    base = json.loads((INSTANCES / "moe16x64_16gpu.json").read_text())
    base.pop("expect")
    base["workload"].update(expert_loads=str(profile), expert_placement="balanced")
    problem = load_instance(write_instance(base, "base.json"))
    a = problem.arch
    plain, replicated = Config(1, 1, 1, 8, "bf16", "bf16", 8), Config(1, 1, 1, 8, "bf16", "bf16", 8, 8)
    # Each replica is a whole expert more, over the stage's GPUs.
    extra = routed_expert_bytes_per_gpu(a, "moe", replicated) - routed_expert_bytes_per_gpu(a, "moe", plain)
    assert extra == pytest.approx(8 / (64 + 0) * routed_expert_bytes_per_gpu(a, "moe", plain))
    # The planner searches 0, E/8 and E/4 replicas and keeps them where they pay: never worse than without.
    code, doc = run_json(write_instance(base, "searched.json"))
    without = json.loads(json.dumps(base))
    without["search"] = {**without.get("search", {}), "redundant_experts": [0]}
    code0, doc0 = run_json(write_instance(without, "without.json"))
    assert code == code0 == 0 and doc["defaults"]["search.redundant_experts"] == [0, 8, 16]
    red = doc["strategy"].get("redundant_experts", 0)
    assert red > 0 and doc["solver"]["objective"] > doc0["solver"]["objective"]
    assert all(r["passed"] for r in doc["requirements"])
    assert any(r["rule"] == "redundant_layout" for r in doc["requirements"])
    launch = doc["launch"]
    assert f"--ep-num-redundant-experts {red} --init-expert-location expert_map.json" in launch["sglang"]
    assert f"--enable-eplb --eplb-config '{{\"num_redundant_experts\": {red}}}'" in launch["vllm"]
    # The layout goes back in as a strategy, and a count that does not divide over the ranks is refuted.
    st = doc["strategy"]
    text = (f"tp={st['tp']},pp=1,dp={st['dp']},ep={st['ep']},attention_dp={st['attention_dp']},"
            f"redundant_experts={red},weights=bf16,kv=bf16")
    code, ok = run_json(write_instance(base, "again.json"), "--strategy", text)
    assert code == 0 and ok["strategy"]["redundant_experts"] == red
    bad = evaluate(problem, Placement(dataclasses.replace(replicated, redundant=5, dp=2), 256, (a.layers,)),
                   simulate=False)
    assert [r.rule for r in bad.failed()] == ["redundant_layout"]
    # Replicas need a balanced map to place them.
    contiguous = json.loads(json.dumps(base))
    contiguous["workload"]["expert_placement"] = "contiguous"
    contiguous["search"] = {**contiguous.get("search", {}), "redundant_experts": [0, 8]}
    code, _, err = run_cli(write_instance(contiguous, "contiguous.json"))
    assert code == 2 and "search.redundant_experts" in err and "balanced" in err

"""Launch commands: exactly the plan, for vLLM, SGLang and TensorRT-LLM, and only for passing plans."""

from __future__ import annotations

from tests.conftest import flagship, run_cli, run_json


def _plan(write_instance, **changes) -> dict:
    data = flagship()
    for key, value in changes.items():
        data[key] = value
    code, doc = run_json(write_instance(data))
    return doc


def test_int4_plan_names_a_quantized_checkpoint(write_instance):
    doc = _plan(write_instance, precision={"weights": ["int4"], "kv_cache": ["bf16"]})
    launch = doc["launch"]
    assert doc["strategy"]["weights"] == "int4"
    for engine in ("vllm", "sglang", "trtllm"):
        assert "<a AWQ or GPTQ INT4 checkpoint of meta-llama/Meta-Llama-3-70B-Instruct>" in launch[engine]
        assert "--quantization fp8" not in launch[engine]
    assert any("replace" in n for n in launch["notes"])


def test_fp8_from_bf16_is_quantized_online_and_fp8_kv_matches(write_instance):
    doc = _plan(write_instance)
    launch = doc["launch"]
    assert doc["strategy"]["weights"] == "fp8"
    assert "--quantization fp8" in launch["vllm"] and "--kv-cache-dtype fp8 " in launch["vllm"] + " "
    assert "--quantization fp8" in launch["sglang"] and "--kv-cache-dtype fp8_e4m3" in launch["sglang"]
    assert launch["trtllm"].startswith("trtllm-serve <an FP8 (ModelOpt) checkpoint of")
    assert "dtype: fp8" in launch["trtllm_extra_llm_api_options"]
    assert set(launch["versions"]) == {"vllm", "sglang", "trtllm"}


def test_block_fp8_checkpoint_is_served_as_it_is():
    code, doc = run_json("instances/deepseekv3_8_h200_offline.json")
    assert code == 0 and doc["strategy"]["weights"] == "fp8"
    for engine, at in (("vllm", 2), ("sglang", 4), ("trtllm", 1)):
        assert doc["launch"][engine].split()[at] == "deepseek-ai/DeepSeek-V3"
        assert "--quantization" not in doc["launch"][engine]


def test_trtllm_instance_leads_with_trtllm(write_instance):
    data = flagship()
    data["search"] = {"engine": "trtllm"}
    code, doc = run_json(write_instance(data))
    assert doc["launch"]["engine"] == "trtllm"
    frac = float(doc["launch"]["trtllm"].split("--kv_cache_free_gpu_memory_fraction ")[1].split()[0])
    assert 0 < frac < 1


def test_failing_strategy_prints_no_launch_command():
    code, doc = run_json("instances/llama70b_h100.json", "--strategy", "tp=1,pp=1,weights=bf16")
    assert code == 1 and doc["launch"] is None


def test_engine_scheduler_settings_reach_launch_simulation_and_checks(write_instance):
    base = flagship()
    base["search"] = {"engine": "sglang"}
    code, plain = run_json(write_instance(base, "plain.json"))
    assert code == 0 and plain["defaults"]["limits.scheduler_recv_interval"] == 1
    assert "--scheduler-recv-interval" not in plain["launch"]["sglang"]
    gated = dict(base, limits={**base.get("limits", {}), "scheduler_recv_interval": 30})
    code, doc = run_json(write_instance(gated, "gated.json"))
    assert code == 0 and "--scheduler-recv-interval 30" in doc["launch"]["sglang"]
    assert "limits.scheduler_recv_interval" not in doc["defaults"]
    # New requests wait for the scheduler's poll while others decode: the simulated TTFT rises.
    if doc["strategy"] == plain["strategy"]:
        assert doc["simulated"]["ttft_ms"]["mean"] > plain["simulated"]["ttft_ms"]["mean"]
    # Another engine's setting is an input error, with the field and what is accepted.
    wrong = dict(flagship(), limits={"attention_dp_balance_iters": 60})
    code, _, err = run_cli(write_instance(wrong, "wrong.json"))
    assert code == 2
    assert "limits.attention_dp_balance_iters" in err and "a trtllm setting; search.engine is vllm" in err


def test_trtllm_attention_dp_balancing_is_written_to_its_options():
    from solver.engines import engine
    from solver.engines.base import LaunchInput
    from solver.input.catalog import resolve_gpu
    from solver.physics import Config

    li = LaunchInput(repo="deepseek-ai/DeepSeek-V3", cfg=Config(1, 1, 1, 8, "fp8", "fp8", 8), layers_per_stage=(61,),
                     num_layers=61, max_num_seqs=256, max_model_len=8192, max_num_batched_tokens=8192,
                     memory_utilization=0.9, gpu=resolve_gpu("h200-141gb"), gpus_per_node=8, checkpoint_dtype="fp8",
                     attention_dp_balance_iters=60)
    _, yaml, _ = engine("trtllm").launch(li)
    assert "enable_attention_dp: true\nattention_dp_config:\n  enable_balance: true\n  timeout_iters: 60\n" in yaml
    gate = engine("trtllm").admission_gate(li.cfg, 1, 60)
    assert gate == {"admit_every_steps": 60, "gate_min_running": 8}
    assert engine("trtllm").admission_gate(Config(8, 1, 1, 8, "fp8", "fp8"), 1, 60) == {}
    assert engine("sglang").admission_gate(Config(1, 1, 1, 8, "fp8", "fp8", 8), 10, 0) == {}  # SGLang refuses it with DP attention


def test_trtllm_batch_waiting_reaches_options_simulation_and_checks(write_instance):
    """limits.batch_wait_*: written to TensorRT-LLM's options (without attention DP), priced by the
    simulator (TTFT rises), both or neither, and a TensorRT-LLM setting only."""
    from solver.engines import engine
    from solver.engines.base import LaunchInput
    from solver.input.catalog import resolve_gpu
    from solver.physics import Config

    li = LaunchInput(repo="deepseek-ai/DeepSeek-V3", cfg=Config(8, 1, 1, 1, "fp8", "fp8"), layers_per_stage=(61,),
                     num_layers=61, max_num_seqs=256, max_model_len=8192, max_num_batched_tokens=8192,
                     memory_utilization=0.9, gpu=resolve_gpu("b200-180gb"), gpus_per_node=8, checkpoint_dtype="fp8",
                     batch_wait_timeout_iters=40, batch_wait_max_tokens_ratio=0.8)
    _, yaml, _ = engine("trtllm").launch(li)
    assert "batch_wait_timeout_iters: 40\nbatch_wait_max_tokens_ratio: 0.8\n" in yaml
    _, yaml, notes = engine("trtllm").launch(LaunchInput(**{**li.__dict__, "cfg": Config(1, 1, 1, 8, "fp8", "fp8", 8)}))
    assert "batch_wait" not in yaml and any("batch waiting" in n for n in notes)
    gate = engine("trtllm").admission_gate(li.cfg, batch_wait_timeout_iters=40, batch_wait_max_tokens_ratio=0.8,
                                           max_num_batched_tokens=8192)
    assert gate == {"batch_wait_iters": 40, "batch_wait_tokens": 0.8 * 8192}

    base = dict(flagship(), search={"engine": "trtllm"})
    base["workload"] = {**base["workload"], "request_rate": 2}
    code, plain = run_json(write_instance(base, "plain.json"))
    assert code == 0
    waits = dict(base, limits={**base.get("limits", {}), "batch_wait_timeout_iters": 40,
                               "batch_wait_max_tokens_ratio": 0.8})
    code, doc = run_json(write_instance(waits, "waits.json"))
    assert code == 0 and "batch_wait_timeout_iters: 40" in doc["launch"]["trtllm_extra_llm_api_options"]
    if doc["strategy"] == plain["strategy"]:
        assert doc["simulated"]["ttft_ms"]["mean"] > plain["simulated"]["ttft_ms"]["mean"]
    half = dict(base, limits={**base.get("limits", {}), "batch_wait_timeout_iters": 40})
    code, _, err = run_cli(write_instance(half, "half.json"))
    assert code == 2 and "limits" in err and "set both, or neither" in err
    other = dict(flagship(), limits={**flagship().get("limits", {}), "batch_wait_timeout_iters": 40,
                                     "batch_wait_max_tokens_ratio": 0.8})
    code, _, err = run_cli(write_instance(other, "other.json"))
    assert code == 2 and "a trtllm setting; search.engine is vllm" in err

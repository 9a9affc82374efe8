"""Launch commands: exactly the plan, for vLLM, SGLang and TensorRT-LLM, and only for passing plans."""

from __future__ import annotations

from tests.conftest import flagship, run_json


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

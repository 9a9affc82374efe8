"""Memory as the engine counts it: the torch-visible total, non-PyTorch buffers by TP / PP, the sampler's
activation peak on the last stage, CUDA graphs by vLLM release, and the KV cache size the engine logs."""

from __future__ import annotations

import copy
import json

import pytest

from solver.engines import memory_conventions, vllm
from solver.input.catalog import resolve_gpu
from solver.input.schema import Instance
from solver.physics import (
    Config,
    DRIVER_RESERVED_GiB,
    GiB,
    even_split,
    kv_bytes_per_token_layer,
    kv_cache_tokens,
    stage_coefficients,
    stage_counts,
    torch_visible_GiB,
)
from solver.problem import build_problem
from tests.conftest import flagship, run_cli, run_json


def _problem(model: str = "llama3.1-8b-instruct", gpu: str = "h100-sxm-80gb", version: str | None = "0.19.0",
             tp: int = 1, pp: int = 1, **limits):
    data = {
        "name": "memory", "model": model, "cluster": {"gpu": gpu, "gpus_per_node": 8, "nodes": 1},
        "precision": {"weights": ["bf16"], "kv_cache": ["bf16"]},
        "workload": {"input_tokens": 4096, "output_tokens": 4096, "max_model_len": 8192, "offline": True},
        "limits": {"memory_utilization": 0.95, "max_num_seqs": 1024, "max_num_batched_tokens": 8192, **limits},
        "search": {"tp": [tp], "pp": [pp], "dp": [1]},
    }
    if version is not None:
        data["search"]["engine_version"] = version
    return build_problem(Instance.model_validate(data))


def _stage_memory(problem, tp: int, pp: int) -> list[dict[str, float]]:
    cfg = Config(tp, pp, 1, 1, "bf16", "bf16")
    coef = stage_coefficients(problem.ctx, cfg, 1)
    counts = stage_counts(problem.arch.layer_kinds(), even_split(problem.arch.layers, pp))
    return [{k: v / GiB for k, v in coef.stage_values(c, s).items() if k in ("activations", "overhead")}
            for s, c in enumerate(counts)]


# ---- usable memory: memory_utilization x the device total the engine measures ----------------------

def test_usable_memory_is_the_torch_visible_total_not_the_drivers():
    problem = _problem()
    gpu = problem.ctx.hw.gpu
    assert (gpu.memory_GiB, gpu.torch_visible_GiB) == (79.65, 79.19)  # nvidia-smi 81559 MiB; vLLM logs 79.19
    assert problem.ctx.capacity_bytes / GiB == pytest.approx(79.19 * 0.95)
    assert problem.ctx.capacity_bytes / GiB < 79.65 * 0.95


def test_a_card_without_a_measured_figure_takes_the_documented_rule():
    problem = _problem(gpu="h200-141gb")
    gpu = problem.ctx.hw.gpu
    assert gpu.torch_visible_GiB is None
    assert torch_visible_GiB(gpu) == pytest.approx(gpu.memory_GiB - DRIVER_RESERVED_GiB)  # 140.40 -> 139.80
    assert problem.ctx.capacity_bytes / GiB == pytest.approx(torch_visible_GiB(gpu) * 0.95)
    assert "cluster.gpu.torch_visible_GiB" in problem.defaults


def test_a_card_cannot_see_more_than_the_driver_reports(write_instance):
    data = copy.deepcopy(flagship())
    data.pop("expect", None)
    card = json.loads(resolve_gpu("h100-sxm-80gb").model_dump_json())
    card["torch_visible_GiB"] = 80.0
    data["cluster"]["gpu"] = card
    code, out, err = run_cli(write_instance(data))
    assert code == 2 and "torch_visible_GiB" in err and "Traceback" not in err


# ---- non-PyTorch memory by TP / PP -----------------------------------------------------------------

def test_non_torch_memory_depends_on_tp_as_vllm_logs_it():
    c = vllm.memory_conventions("0.19.0")
    assert c.non_torch_GiB(tp=1, pp=1, last_stage=True) == pytest.approx(0.25)  # 0.24-0.26 in the logs
    for tp in (2, 4, 8):
        assert c.non_torch_GiB(tp=tp, pp=1, last_stage=True) == pytest.approx(2.10)  # 2.06-2.21
    # Pipeline point-to-point alone adds nothing measurable: 0.07 GiB on a stage without the LM head.
    assert c.non_torch_GiB(tp=1, pp=4, last_stage=False) == pytest.approx(0.07)
    assert c.non_torch_GiB(tp=1, pp=4, last_stage=True) == pytest.approx(0.25)


def test_the_overhead_reaching_the_stage_tables_follows_the_rule():
    # vLLM 0.19: no CUDA graphs in the budget, so the overhead is the non-PyTorch memory alone.
    assert _stage_memory(_problem(tp=1), 1, 1)[0]["overhead"] == pytest.approx(0.25)
    assert _stage_memory(_problem(tp=2), 2, 1)[0]["overhead"] == pytest.approx(2.10)
    pp4 = _stage_memory(_problem(pp=4), 1, 4)
    assert [round(s["overhead"], 2) for s in pp4] == [0.07, 0.07, 0.07, 0.25]


def test_an_explicit_runtime_overhead_replaces_the_rule():
    stages = _stage_memory(_problem(pp=2, runtime_overhead_GiB=1.5), 1, 2)
    assert [s["overhead"] for s in stages] == pytest.approx([1.5, 1.5])


# ---- the activation peak ---------------------------------------------------------------------------

def test_a_middle_stage_peaks_lower_than_the_last():
    """Only the last stage runs the sampler over the whole vocabulary: vLLM 0.19 logs 1.10 GiB on stage 0
    of Llama-3.1-8B at pp 2 and 4 against 1.89 GiB at pp 1 (the first stage, which holds the embedding,
    peaks like a middle one: the embedding lookup adds one hidden-size tensor)."""
    act = [s["activations"] for s in _stage_memory(_problem(pp=4), 1, 4)]
    first, middle, last = act[0], act[1], act[3]
    assert middle < last
    assert middle == pytest.approx(first)
    assert middle == pytest.approx(1.10, rel=0.10)
    assert last == pytest.approx(1.89, rel=0.02)


def test_the_last_stage_peak_does_not_shrink_with_tp():
    """The sampler's logits are full-vocabulary on every TP rank: 1.89 GiB at TP 1, 2 and 4 (v027-v038)."""
    peaks = [_stage_memory(_problem(tp=tp), tp, 1)[0]["activations"] for tp in (1, 2, 4)]
    assert peaks == pytest.approx([1.89] * 3, rel=0.02)


# ---- CUDA graphs by engine release -----------------------------------------------------------------

@pytest.mark.parametrize("version, inside", [("0.19.0", False), ("0.20.2", False), ("v0.21.0rc1", True),
                                             ("0.21", True), ("0.27.1", True), ("1.0.0", True)])
def test_cuda_graphs_count_only_where_the_release_budgets_them(version, inside):
    c = vllm.memory_conventions(version)
    assert c.cuda_graphs_in_budget is inside
    base = _stage_memory(_problem(version="0.19.0"), 1, 1)[0]["overhead"]
    got = _stage_memory(_problem(version=version), 1, 1)[0]["overhead"]
    graphs = vllm.CUDA_GRAPH_BASE_GiB + vllm.CUDA_GRAPH_PER_LAYER_GiB * 32 if inside else 0.0
    assert got == pytest.approx(base + graphs)
    if inside:
        assert 0.5 <= graphs <= 1.9  # the 0.5-1.9 GiB vLLM logs by model size


def test_cuda_graphs_scale_with_the_layers_a_stage_holds():
    stages = _stage_memory(_problem(version="0.21.0", pp=2), 1, 2)
    per_layer = vllm.CUDA_GRAPH_PER_LAYER_GiB
    assert stages[0]["overhead"] == pytest.approx(0.07 + vllm.CUDA_GRAPH_BASE_GiB + 16 * per_layer)


def test_the_default_release_is_stated_and_other_engines_keep_their_rule():
    problem = _problem(version=None)
    assert problem.defaults["search.engine_version"] == vllm.DEFAULT_VERSION
    assert problem.ctx.memory.cuda_graphs_in_budget  # the default counts graphs in the budget
    assert "CUDA graphs inside the budget" in problem.defaults["limits.runtime_overhead_GiB"]
    sg = memory_conventions("sglang")
    assert (sg.non_torch_GiB(1, 1, True), sg.non_torch_GiB(2, 1, True)) == pytest.approx((0.75, 1.25))


# ---- the engine's own figure: "GPU KV cache size: N tokens" ----------------------------------------

def test_metrics_kv_cache_tokens_is_the_physics_kv_capacity(write_instance):
    data = copy.deepcopy(flagship())
    data.pop("expect", None)
    code, doc = run_json(write_instance(data), "--strategy", "tp=2,pp=2,dp=2,weights=fp8,kv_cache=fp8")
    assert code == 0
    problem = build_problem(Instance.model_validate(data))
    cfg = Config(2, 2, 2, 1, "fp8", "fp8")
    layers = [s["layers"][1] - s["layers"][0] + 1 for s in doc["stages"]]
    tokens = doc["metrics"]["kv_cache_tokens"]
    assert tokens == kv_cache_tokens(problem.ctx, cfg, layers)
    # By hand: the fullest stage's free memory over one token's KV bytes on its layers, in blocks of 16.
    per_token = kv_bytes_per_token_layer(problem.arch, "fp8", 2)
    free = [(s["memory_GiB"]["capacity"] - s["memory_GiB"]["weights"] - s["memory_GiB"]["activations"]
             - s["memory_GiB"]["overhead"]) * GiB / (per_token * n) for s, n in zip(doc["stages"], layers, strict=True)]
    assert tokens % vllm.KV_BLOCK_TOKENS == 0
    assert tokens == pytest.approx(min(free), abs=vllm.KV_BLOCK_TOKENS + 1)
    code, out, _ = run_cli(write_instance(data), "--strategy", "tp=2,pp=2,dp=2,weights=fp8,kv_cache=fp8")
    assert f"{tokens:,} tokens per replica" in out


def test_kv_cache_tokens_match_a_cited_vllm_log():
    """v028 of benchmarks/data/vllm_memory_logs.json: Llama-3.1-8B, H100, TP 1, utilization 0.95, vLLM
    0.19.0, 'GPU KV cache size: 476,000 tokens'."""
    problem = _problem()
    tokens = kv_cache_tokens(problem.ctx, Config(1, 1, 1, 1, "bf16", "bf16"), [32])
    assert tokens == pytest.approx(476_000, rel=0.005)


# ---- engine_version is checked input ---------------------------------------------------------------

@pytest.mark.parametrize("bad", ["latest", "0.x", "", "0.21.0-final", 0.21])
def test_a_bad_engine_version_is_bad_input(write_instance, bad):
    data = copy.deepcopy(flagship())
    data.setdefault("search", {})["engine_version"] = bad
    path = write_instance(data)
    code, out, err = run_cli(path)
    assert code == 2, (out, err)
    assert out == "" and "Traceback" not in err
    assert "search.engine_version" in err and path in err


def test_mixed_precision_checkpoint_weighs_its_16_bit_layers():
    # Meta's Llama-3.1-405B-Instruct-FP8 keeps every attention and the first and last layers' MLPs
    # in BF16: vLLM loads 57.75 GiB per GPU at TP 8 (vllm-project/vllm#6746, "Loading model weights
    # took 57.7520 GB", 2**30 bytes); an FP8-everything reading gives 47.8.
    from solver.input.catalog import resolve_model
    from solver.physics import Config
    from solver.physics.memory import (
        embedding_bytes_per_gpu,
        layer_weight_bytes_per_gpu,
        lm_head_bytes_per_gpu,
        rotary_cache_bytes,
    )

    a = resolve_model("llama3.1-405b-instruct-fp8")
    assert a.layer_kinds().count("dense16") == 2 and a.unquantised == {"attention"}

    def weights_GiB(arch, w):
        cfg = Config(8, 1, 1, 1, w, "fp8")
        total = sum(layer_weight_bytes_per_gpu(arch, k, cfg) for k in arch.layer_kinds())
        return (total + embedding_bytes_per_gpu(arch, 8) + lm_head_bytes_per_gpu(arch, 8, 1)
                + rotary_cache_bytes(arch)) / 2**30

    assert abs(weights_GiB(a, "fp8") / 57.752 - 1) < 0.02
    # An online FP8 of the BF16 repository converts every linear layer.
    assert weights_GiB(resolve_model("llama3.1-405b-instruct"), "fp8") < 48.0

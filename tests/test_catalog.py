"""Catalog cards and the Hugging Face config.json loader."""

from __future__ import annotations

import json

import pytest

from solver.input.catalog import (
    architecture_from_config,
    known_gpus,
    known_models,
    resolve_gpu,
    resolve_model,
)
from solver.input.errors import InputError
from solver.physics import param_counts

MODELS = ["llama3-8b-instruct", "llama3-70b-instruct", "llama3.1-405b-instruct", "mixtral-8x7b-instruct",
          "mixtral-8x22b-instruct", "qwen3-235b-a22b", "deepseek-v3", "kimi-k2.5", "minimax-m2.5"]
GPUS = ["h100-sxm-80gb", "h100-pcie-80gb", "h200-141gb", "a100-sxm-80gb", "a100-sxm-40gb", "l40s-48gb",
        "l4-24gb", "t4-16gb", "b200-180gb", "mi300x-192gb"]


def test_catalogs_complete():
    assert set(MODELS) <= set(known_models())
    assert set(GPUS) <= set(known_gpus())


@pytest.mark.parametrize("name", MODELS)
def test_model_cards_consistent(name):
    a = resolve_model(name)
    assert a.hf_repo
    assert abs(param_counts(a).total / 1e9 - a.declared_params_B) / a.declared_params_B < 0.03


@pytest.mark.parametrize("name", GPUS)
def test_gpu_cards_have_sources(name):
    g = resolve_gpu(name)
    assert g.sources and g.memory_GiB > 0 and g.hbm_TBps > 0
    if g.family in ("ampere", "turing"):
        assert g.dense_TFLOPS.fp8 is None  # no FP8 tensor cores
    if g.family != "blackwell":
        assert g.dense_TFLOPS.fp4 is None


@pytest.mark.parametrize(
    ("arch", "extra", "moe_layers"),
    [
        ("LlamaForCausalLM", {}, 0),
        ("MistralForCausalLM", {}, 0),
        ("Qwen2ForCausalLM", {}, 0),
        ("MixtralForCausalLM", {"num_local_experts": 8, "num_experts_per_tok": 2}, 4),
        ("Qwen3MoeForCausalLM", {"num_experts": 16, "num_experts_per_tok": 4, "moe_intermediate_size": 128,
                                 "decoder_sparse_step": 1, "mlp_only_layers": [0]}, 3),
        ("MiniMaxM2ForCausalLM", {"num_local_experts": 8, "num_experts_per_tok": 2, "head_dim": 64,
                                  "use_qk_norm": True, "use_routing_bias": True, "attn_type_list": [1] * 4}, 4),
        ("DeepseekV3ForCausalLM", {"n_routed_experts": 16, "num_experts_per_tok": 4, "moe_intermediate_size": 128,
                                   "n_shared_experts": 1, "first_k_dense_replace": 1, "q_lora_rank": 64,
                                   "kv_lora_rank": 32, "qk_nope_head_dim": 16, "qk_rope_head_dim": 8,
                                   "v_head_dim": 16}, 3),
    ],
)
def test_hf_config_loader(arch, extra, moe_layers):
    cfg = {"architectures": [arch], "hidden_size": 256, "num_hidden_layers": 4, "num_attention_heads": 8,
           "num_key_value_heads": 2, "intermediate_size": 512, "vocab_size": 1000, **extra}
    a = architecture_from_config(cfg, name="x")
    assert sum(a.moe_layers) == moe_layers
    assert param_counts(a).total > 0
    if arch == "DeepseekV3ForCausalLM":
        assert a.is_mla


def test_hf_config_missing_field_is_named():
    with pytest.raises(InputError) as err:
        architecture_from_config({"architectures": ["LlamaForCausalLM"], "hidden_size": 64}, name="x", file="c.json")
    assert "num_hidden_layers" in str(err.value) and "c.json" in str(err.value)


def test_cards_ship_in_the_installed_package():
    from importlib import resources

    root = resources.files("solver.catalog_data")
    llm = {p.name for p in root.joinpath("llm").iterdir()}
    gpu = {p.name for p in root.joinpath("gpu").iterdir()}
    assert {f"{m}.json" for m in MODELS} <= llm and {f"{g}.json" for g in GPUS} <= gpu
    assert json.loads(root.joinpath("gpu", "t4-16gb.json").read_text())["name"] == "t4-16gb"


def test_checkpoint_quantisation_scope_and_format():
    # Kimi-K2.5's compressed-tensors INT4 (group 32) quantises the routed experts alone.
    kimi = resolve_model("kimi-k2.5")
    assert kimi.checkpoint_dtype == "int4" and kimi.checkpoint_weight_bytes == 0.5 + 2 / 32
    assert kimi.unquantised == {"attention", "dense_mlp", "shared_experts"}
    # MiniMax-M2.5: block FP8 of every linear layer but the router and LM head.
    mm = resolve_model("minimax-m2.5")
    assert (mm.checkpoint_dtype, mm.fp8_block, mm.unquantised, mm.experts, mm.head_dim) == ("fp8", 128, set(), 256, 128)
    assert architecture_from_config({"architectures": ["LlamaForCausalLM"], "hidden_size": 64, "num_hidden_layers": 2,
                                     "num_attention_heads": 4, "intermediate_size": 128, "vocab_size": 100,
                                     "quantization_config": {"quant_method": "modelopt", "quant_algo": "NVFP4"}},
                                    name="x").checkpoint_dtype == "fp4"


def test_expert_only_checkpoint_weighs_its_16_bit_parts():
    from solver.physics import Config
    from solver.physics.memory import layer_weight_bytes_per_gpu, routed_expert_bytes_per_gpu

    kimi = resolve_model("kimi-k2.5")
    cfg = Config(8, 1, 1, 1, "int4", "fp8")
    online = Config(8, 1, 1, 1, "fp8", "fp8")  # an online FP8 of the BF16 weights converts everything
    moe = layer_weight_bytes_per_gpu(kimi, "moe", cfg)
    routed = routed_expert_bytes_per_gpu(kimi, "moe", cfg)
    # 384 experts x 3 x 7168 x 2048 / 8 GPUs at 0.5625 bytes; the attention and shared expert at 2 bytes.
    assert routed == pytest.approx(384 * 3 * 7168 * 2048 / 8 * 0.5625)
    assert moe - routed > 2.0 * 3 * 7168 * 2048 / 8  # the shared expert alone, 16-bit
    online_static = layer_weight_bytes_per_gpu(kimi, "moe", online) - routed_expert_bytes_per_gpu(kimi, "moe", online)
    assert moe - routed > 1.8 * online_static  # 2 bytes a weight against 1 (norms and router 16-bit in both)


def test_minimax_linear_attention_layers_are_refused():
    cfg = {"architectures": ["MiniMaxM2ForCausalLM"], "hidden_size": 64, "num_hidden_layers": 2,
           "num_attention_heads": 4, "num_key_value_heads": 2, "intermediate_size": 32, "vocab_size": 100,
           "num_local_experts": 4, "num_experts_per_tok": 2, "attn_type_list": [0, 1]}
    with pytest.raises(InputError) as err:
        architecture_from_config(cfg, name="x", file="c.json")
    assert "attn_type_list" in str(err.value) and "linear" in str(err.value)

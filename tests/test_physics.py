"""The cost model against hand-computed values (DESIGN section 5)."""

from __future__ import annotations

import pytest

from solver.input.catalog import (
    architecture_from_config,
    known_gpus,
    known_models,
    resolve_gpu,
    resolve_model,
)
from solver.input.errors import InputError
from solver.input.schema import WEIGHT_DTYPES
from solver.physics import (
    Config,
    GiB,
    even_split,
    kv_bytes_per_token,
    layer_weight_bytes_per_gpu,
    param_counts,
    peak_tflops,
    weight_dtype_supported,
)
from solver.physics.memory import (
    attended_context,
    embedding_bytes_per_gpu,
    kv_tokens_held,
    lm_head_bytes_per_gpu,
    routed_expert_bytes_per_gpu,
)
from solver.physics.params import layer_params
from solver.physics.precision import COMPUTE_DTYPE, WEIGHT_BYTES, compute_dtype


@pytest.mark.parametrize(
    ("model", "total_B", "active_B"),
    [
        ("llama3-70b-instruct", 70.6, None),
        ("llama3.1-405b-instruct", 405.9, None),
        ("mixtral-8x7b-instruct", 46.7, 12.9),
        ("deepseek-v3", 671.0, 37.0),
        ("llama3-8b-instruct", 8.03, None),
        ("qwen3-235b-a22b", 235.0, 22.0),
    ],
)
def test_parameter_counts(model, total_B, active_B):
    pc = param_counts(resolve_model(model))
    assert abs(pc.total / 1e9 - total_B) / total_B < 0.015
    if active_B is not None:
        assert abs(pc.active / 1e9 - active_B) / active_B < 0.03


def test_llama70b_exact_count():
    # 80 x (q,o 8192^2 x 2 + k,v 8192 x 1024 x 2 + MLP 3 x 8192 x 28672 + 2 norms) + 2 x 128256 x 8192 + norm
    per_layer = 2 * 8192 * 8192 + 2 * 8192 * 1024 + 3 * 8192 * 28672 + 2 * 8192
    expected = 80 * per_layer + 2 * 128256 * 8192 + 8192
    assert param_counts(resolve_model("llama3-70b-instruct")).total == expected


def test_kv_bytes_per_token():
    assert kv_bytes_per_token(resolve_model("llama3-70b-instruct"), "bf16") == 327_680
    assert kv_bytes_per_token(resolve_model("deepseek-v3"), "bf16") == 70_272  # (512 + 64) x 2 x 61
    assert kv_bytes_per_token(resolve_model("llama3-70b-instruct"), "fp8") == 163_840


def test_kv_heads_split_then_replicate():
    a = resolve_model("llama3-70b-instruct")  # 8 KV heads
    assert kv_bytes_per_token(a, "bf16", tp=8) == 327_680 / 8
    # Beyond 8-way TP each rank keeps one KV head: no further saving.
    assert kv_bytes_per_token(a, "bf16", tp=16) == 327_680 / 8
    # MLA's latent cache is replicated on every TP rank.
    ds = resolve_model("deepseek-v3")
    assert kv_bytes_per_token(ds, "bf16", tp=8) == 70_272


def test_weights_shard_with_tp_and_precision():
    a = resolve_model("llama3-70b-instruct")
    full = layer_weight_bytes_per_gpu(a, "dense", Config(1, 1, 1, 1, "bf16", "bf16"))
    half = layer_weight_bytes_per_gpu(a, "dense", Config(2, 1, 1, 1, "bf16", "bf16"))
    fp8 = layer_weight_bytes_per_gpu(a, "dense", Config(1, 1, 1, 1, "fp8", "bf16"))
    assert half == pytest.approx(full / 2, rel=1e-4)
    assert fp8 == pytest.approx(full / 2, rel=1e-4)


def test_moe_experts_split_over_tp_group():
    a = resolve_model("mixtral-8x7b-instruct")
    one = layer_weight_bytes_per_gpu(a, "moe", Config(1, 1, 1, 1, "bf16", "bf16"))
    four = layer_weight_bytes_per_gpu(a, "moe", Config(4, 1, 1, 4, "bf16", "bf16"))
    assert four == pytest.approx(one / 4, rel=1e-3)


def test_even_split_matches_vllm_default():
    assert even_split(80, 4) == [20, 20, 20, 20]
    # vLLM puts the remainder on the stages before the last (the last holds the LM head).
    assert even_split(32, 3) == [11, 11, 10]
    assert even_split(7, 4) == [2, 2, 2, 1]
    assert sum(even_split(61, 8)) == 61


def test_precision_support_from_cards():
    t4, h100, a100 = resolve_gpu("t4-16gb"), resolve_gpu("h100-sxm-80gb"), resolve_gpu("a100-sxm-80gb")
    assert not weight_dtype_supported(t4, "fp8")
    assert not weight_dtype_supported(a100, "fp8")
    assert weight_dtype_supported(h100, "fp8")
    assert weight_dtype_supported(t4, "bf16")  # computed at FP16 (engines cast on pre-Ampere GPUs)
    assert peak_tflops(t4, "bf16") == t4.dense_TFLOPS.fp16
    assert weight_dtype_supported(t4, "int4")  # weight-only: 16-bit compute


def test_weights_in_GiB_match_hand_arithmetic():
    a = resolve_model("llama3-70b-instruct")
    cfg = Config(2, 4, 1, 1, "bf16", "bf16")
    per_layer = layer_weight_bytes_per_gpu(a, "dense", cfg) / GiB
    # (151.0 M attention + 704.6 M MLP) x 2 bytes / 2 ranks = 0.797 GiB per layer
    assert per_layer == pytest.approx(855.6e6 * 2 / 2 / GiB, rel=1e-3)


# ---------------------------------------------------------------------------------------------
# gpt-oss: parameters, MXFP4, sliding-window KV; the cards added with it
# ---------------------------------------------------------------------------------------------


def test_every_catalog_card_matches_its_declared_counts():
    # Every card in the catalog, not a fixed list: total within 3% (the load-time rule) and, for MoE
    # cards, active within 3% under the convention of the published figures (input embedding not
    # counted: gpt-oss Table 1, DeepSeek-V3 36.7 B; the others differ from it by < 2%).
    for name in known_models():
        a = resolve_model(name)
        pc = param_counts(a)
        assert abs(pc.total / 1e9 - a.declared_params_B) / a.declared_params_B < 0.03, name
        if a.declared_active_params_B is not None:
            active = pc.active_without_embedding / 1e9
            assert abs(active - a.declared_active_params_B) / a.declared_active_params_B < 0.03, name


def test_every_gpu_card_is_sourced_and_blackwell_has_fp4():
    for name in known_gpus():
        g = resolve_gpu(name)
        assert g.sources.keys() >= {"memory_GiB", "dense_TFLOPS", "hbm_TBps", "intra_node", "inter_node"}, name
        assert (g.dense_TFLOPS.fp4 is not None) == (g.family == "blackwell"), name


@pytest.mark.parametrize(
    ("model", "total", "active", "mlp_B", "attention_B"),
    [
        # gpt-oss model card (arXiv:2508.10925) Table 1: MLP, Attention, Embed + Unembed 1.16 B,
        # Active (unembedding counted, embedding not), Total.
        ("gpt-oss-120b", 116.83, 5.13, 114.71, 0.96),
        ("gpt-oss-20b", 20.91, 3.61, 19.12, 0.64),
    ],
)
def test_gpt_oss_counts_match_the_model_card(model, total, active, mlp_B, attention_B):
    a = resolve_model(model)
    pc = param_counts(a)
    assert pc.total / 1e9 == pytest.approx(total, abs=0.005)
    assert pc.active_without_embedding / 1e9 == pytest.approx(active, abs=0.005)
    assert (pc.embedding + pc.lm_head) / 1e9 == pytest.approx(1.16, abs=0.005)
    lp = layer_params(a, "moe")
    mlp = a.layers * ((lp.expert + lp.expert_bias) * lp.experts + lp.router)
    attention = a.layers * (lp.attn_split + lp.small - 2 * a.hidden)  # q/k/v/o, biases, sinks; no norms
    assert mlp / 1e9 == pytest.approx(mlp_B, abs=0.005)
    assert attention / 1e9 == pytest.approx(attention_B, abs=0.005)


def test_gpt_oss_120b_exact_count():
    h, inter, experts, heads, kv, hd, vocab = 2880, 2880, 128, 64, 8, 64, 201088
    attention = (h * heads * hd + heads * hd) + 2 * (h * kv * hd + kv * hd) + (heads * hd * h + h) + heads  # + sinks
    expert = h * 2 * inter + 2 * inter + inter * h + h  # gate_up_proj (+ bias), down_proj (+ bias)
    router = h * experts + experts
    per_layer = attention + experts * expert + router + 2 * h  # two RMSNorms
    expected = 36 * per_layer + 2 * vocab * h + h  # untied embedding and LM head, final norm
    assert expected == 116_829_156_672
    pc = param_counts(resolve_model("gpt-oss-120b"))
    assert pc.total == expected
    assert pc.active_without_embedding == 36 * (attention + 4 * expert + router + 2 * h) + vocab * h + h
    assert pc.active == pc.active_without_embedding + vocab * h  # active counts the embedding too


def test_active_without_embedding_keeps_a_tied_matrix_once():
    cfg = {"architectures": ["LlamaForCausalLM"], "hidden_size": 64, "num_hidden_layers": 2,
           "num_attention_heads": 4, "num_key_value_heads": 2, "intermediate_size": 128, "vocab_size": 100}
    untied = param_counts(architecture_from_config(cfg, name="x"))
    tied = param_counts(architecture_from_config({**cfg, "tie_word_embeddings": True}, name="x"))
    assert untied.active_without_embedding == untied.active - 100 * 64
    assert tied.active_without_embedding == tied.active


def test_gpt_oss_loader_reads_the_new_shape():
    a = resolve_model("gpt-oss-120b")
    assert a.architecture == "GptOssForCausalLM" and a.is_moe and not a.is_mla
    assert (a.experts, a.top_k, a.moe_intermediate, a.head_dim, a.kv_heads) == (128, 4, 2880, 64, 8)
    assert a.attention_bias and a.attention_out_bias and a.attention_sinks and a.router_bias and a.expert_bias
    assert a.sliding_window == 128 and a.has_sliding_window
    assert a.sliding_layers == (True, False) * 18  # even layers slide (config layer_types)
    assert a.layer_kinds() == ("moe",) * 36
    # Models without sliding layers keep the defaults.
    llama = resolve_model("llama3-70b-instruct")
    assert (llama.sliding_window, llama.sliding_layers, llama.has_sliding_window) == (0, (), False)
    assert not (llama.attention_sinks or llama.expert_bias or llama.attention_out_bias)


def _gpt_oss_cfg(**extra):
    return {"architectures": ["GptOssForCausalLM"], "hidden_size": 64, "num_hidden_layers": 4,
            "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16, "intermediate_size": 32,
            "vocab_size": 100, "num_local_experts": 8, "num_experts_per_tok": 2, "sliding_window": 8,
            **extra}


def test_gpt_oss_layer_types_default_to_transformers_alternation():
    a = architecture_from_config(_gpt_oss_cfg(), name="x")
    assert a.sliding_layers == (True, False, True, False)
    full = architecture_from_config(_gpt_oss_cfg(layer_types=["full_attention"] * 4), name="x")
    assert not full.has_sliding_window and full.sliding_window == 0


@pytest.mark.parametrize(
    ("extra", "path", "fragment"),
    [
        ({"layer_types": "sliding_attention"}, "config.layer_types", "must be a list"),
        ({"layer_types": ["sliding_attention", "full_attention"]}, "config.layer_types", "one per layer"),
        ({"layer_types": ["sliding_attention", "full_attention", "local", "full_attention"]},
         "config.layer_types[2]", "sliding_attention, full_attention"),
        ({"layer_types": ["sliding_attention", "full_attention", 3, "full_attention"]},
         "config.layer_types[2]", "unknown layer type"),
        ({"sliding_window": None}, "config.sliding_window", "positive integer"),
        ({"sliding_window": 0}, "config.sliding_window", "positive integer"),
        ({"sliding_window": "128"}, "config.sliding_window", "integer from 0 to"),
        ({"sliding_window": True}, "config.sliding_window", "integer from 0 to"),
        ({"num_local_experts": 0}, "config.num_local_experts", "positive integer"),
        ({"num_experts_per_tok": 9}, "config.num_experts_per_tok", "cannot exceed"),
    ],
)
def test_gpt_oss_loader_rejects_bad_fields_with_their_path(extra, path, fragment):
    with pytest.raises(InputError) as err:
        architecture_from_config(_gpt_oss_cfg(**extra), name="x", file="c.json", prefix="config")
    assert err.value.path == path and fragment in str(err.value) and "c.json" in str(err.value)


def test_mxfp4_bytes_and_compute_dtype():
    assert WEIGHT_BYTES["mxfp4"] == 0.5 + 1 / 32  # 4 bits + one E8M0 byte per 32 weights = 4.25 bits
    assert WEIGHT_DTYPES[-1] == "mxfp4"
    for name in known_gpus():
        g = resolve_gpu(name)
        for w in WEIGHT_DTYPES:
            if w != "mxfp4":
                assert compute_dtype(g, w) == COMPUTE_DTYPE[w]
        # FP4 tensor cores compute MXFP4 natively; elsewhere it is weight-only at the 16-bit peak.
        assert compute_dtype(g, "mxfp4") == ("fp4" if g.dense_TFLOPS.fp4 else "bf16")
        assert weight_dtype_supported(g, "mxfp4")
    assert compute_dtype(resolve_gpu("b200-180gb"), "mxfp4") == "fp4"
    assert compute_dtype(resolve_gpu("h100-sxm-80gb"), "mxfp4") == "bf16"
    assert not weight_dtype_supported(resolve_gpu("h100-sxm-80gb"), "fp4")


def test_mxfp4_quantises_only_routed_experts():
    a = resolve_model("gpt-oss-120b")
    lp = layer_params(a, "moe")
    for tp in (1, 2, 8):
        cfg = Config(tp, 1, 1, tp, "mxfp4", "bf16")
        experts = routed_expert_bytes_per_gpu(a, "moe", cfg)
        assert experts == pytest.approx(128 * (lp.expert * 0.53125 + lp.expert_bias * 2) / tp, rel=1e-12)
        static = layer_weight_bytes_per_gpu(a, "moe", cfg) - experts
        # attention (KV heads split while tp <= 8), norms, biases, sinks and router all in BF16
        assert static == pytest.approx((lp.attn_split / tp + lp.small + lp.router) * 2, rel=1e-9)
    # The published checkpoint: 60.8 GiB (model card Table 1) for the whole model at MXFP4.
    cfg = Config(1, 1, 1, 1, "mxfp4", "bf16")
    total = (36 * layer_weight_bytes_per_gpu(a, "moe", cfg) + embedding_bytes_per_gpu(a, 1)
             + lm_head_bytes_per_gpu(a, 1, 1))
    assert total / GiB == pytest.approx(60.8, abs=0.1)


def test_routed_expert_bytes_split_every_dtype():
    for name, kind in (("mixtral-8x7b-instruct", "moe"), ("deepseek-v3", "moe"), ("deepseek-v3", "dense"),
                       ("llama3-70b-instruct", "dense"), ("gpt-oss-20b", "moe")):
        a = resolve_model(name)
        lp = layer_params(a, kind)
        for w in WEIGHT_DTYPES:
            cfg = Config(4, 1, 1, 4, w, "bf16")
            expected = lp.experts * (lp.expert * WEIGHT_BYTES[w] + lp.expert_bias * 2) / 4
            assert routed_expert_bytes_per_gpu(a, kind, cfg) == pytest.approx(expected, rel=1e-12)
            assert routed_expert_bytes_per_gpu(a, kind, cfg) < layer_weight_bytes_per_gpu(a, kind, cfg)
    assert routed_expert_bytes_per_gpu(resolve_model("llama3-70b-instruct"), "dense",
                                       Config(1, 1, 1, 1, "bf16", "bf16")) == 0


def test_mxfp4_on_a_model_without_experts_is_16_bit():
    a = resolve_model("llama3-8b-instruct")
    assert layer_weight_bytes_per_gpu(a, "dense", Config(2, 1, 1, 1, "mxfp4", "bf16")) == pytest.approx(
        layer_weight_bytes_per_gpu(a, "dense", Config(2, 1, 1, 1, "bf16", "bf16")), rel=1e-12)


def test_sliding_window_kv_tokens_and_attended_context():
    a = resolve_model("gpt-oss-120b")  # 18 full + 18 sliding layers, window 128
    assert kv_tokens_held(a, 100) == 100  # shorter than the window: every layer keeps all
    assert kv_tokens_held(a, 128) == 128
    assert kv_tokens_held(a, 1000) == (18 * 1000 + 18 * 128) / 36 == 564
    assert attended_context(a, 8192) == (18 * 8192 + 18 * 128) / 36
    assert attended_context(a, 50) == 50
    # KV bytes of one 8192-token sequence: 36 layers x 2 x 8 KV heads x 64 x 2 bytes per token held.
    per_token_all_layers = kv_bytes_per_token(a, "bf16")
    assert per_token_all_layers == 36 * 2 * 8 * 64 * 2
    assert kv_tokens_held(a, 8192) * per_token_all_layers == 18 * (8192 + 128) * 2 * 8 * 64 * 2
    # Without sliding layers the input comes back unchanged.
    for name in ("llama3-70b-instruct", "deepseek-v3", "qwen3-32b"):
        m = resolve_model(name)
        for n in (1, 128, 4096, 131072):
            assert kv_tokens_held(m, n) == n and attended_context(m, n) == n
    b = architecture_from_config(_gpt_oss_cfg(layer_types=["full_attention"] * 4), name="x")
    assert kv_tokens_held(b, 1000) == 1000


def test_sliding_window_kv_is_monotone_and_bounded():
    a = resolve_model("gpt-oss-20b")
    held = [kv_tokens_held(a, n) for n in range(0, 2000, 7)]
    assert held == sorted(held)
    for n in range(0, 2000, 7):
        assert min(n, 128) <= kv_tokens_held(a, n) <= n


def test_new_gpu_cards():
    b300, gb200, gb300 = resolve_gpu("b300-288gb"), resolve_gpu("gb200-186gb"), resolve_gpu("gb300-288gb")
    assert (b300.memory_GiB, gb200.memory_GiB, gb300.memory_GiB) == (268.59, 185.03, 277.55)
    for g in (b300, gb200, gb300):
        assert g.family == "blackwell" and g.intra_node.kind == "nvlink" and g.intra_node.bandwidth_GBps == 900
        assert g.dense_TFLOPS.fp4 >= 2 * g.dense_TFLOPS.fp8 >= 4 * g.dense_TFLOPS.bf16
        assert weight_dtype_supported(g, "fp4") and weight_dtype_supported(g, "fp8")
    # Blackwell Ultra trades INT8 for NVFP4: INT8 below the 16-bit peak.
    assert b300.dense_TFLOPS.int8 < b300.dense_TFLOPS.bf16 and gb300.dense_TFLOPS.int8 < gb300.dense_TFLOPS.bf16


def test_moe_prefill_pays_per_expert_held_and_only_on_prompt_steps():
    import dataclasses

    from solver.physics import Config, layer_cost, step_model
    from solver.physics.efficiency import MOE_PREFILL_EXPERT_S
    from solver.problem import load_problem

    problem = load_problem("instances/qwen3_235b_8_h100.json")
    ctx = problem.ctx
    mtp = layer_cost(ctx, "moe", Config(1, 1, 1, 1, "fp8", "fp8", 8))  # experts split by TP over 8 GPUs
    ep = layer_cost(ctx, "moe", Config(1, 1, 1, 8, "fp8", "fp8", 8))  # whole experts, 16 a GPU
    experts = problem.arch.experts
    assert mtp.prefill_fixed_s == pytest.approx(MOE_PREFILL_EXPERT_S * experts)
    assert ep.prefill_fixed_s == pytest.approx(MOE_PREFILL_EXPERT_S * experts / 8)
    # A decode-only step pays nothing of it; a step with a prompt chunk pays it once per MoE layer.
    cfg = Config(4, 1, 1, 1, "fp8", "fp8")
    base = step_model(ctx, cfg, [problem.arch.layers])
    off = step_model(dataclasses.replace(ctx, eff=dataclasses.replace(ctx.eff, moe_prefill_expert_s=0.0)), cfg,
                     [problem.arch.layers])
    assert base.step_s(16, 16 * 1024) == pytest.approx(off.step_s(16, 16 * 1024))
    extra = base.step_s(16, 16 * 1024, 512, 512 * 513 / 2, 1) - off.step_s(16, 16 * 1024, 512, 512 * 513 / 2, 1)
    moe_layers = problem.arch.layer_kinds().count("moe")
    assert extra == pytest.approx(MOE_PREFILL_EXPERT_S * experts * moe_layers)


def test_moe_layer_overhead_on_unfused_moe_layers_only():
    """The engine's per-MoE-layer routing kernels cost every step of an MoE layer, not a dense layer's,
    and nothing where the experts' precision fuses the routing into the expert GEMMs (MXFP4)."""
    import dataclasses

    from solver.engines import engine
    from solver.physics import Config, layer_cost
    from solver.physics.precision import FUSED_ROUTING_WEIGHTS
    from solver.problem import load_problem

    problem = load_problem("instances/qwen3_235b_8_h100.json")
    ctx = problem.ctx
    assert engine("vllm").MOE_LAYER_OVERHEAD_US > 0
    assert ctx.eff.moe_layer_overhead_s == pytest.approx(engine("vllm").MOE_LAYER_OVERHEAD_US * 1e-6)
    off_ctx = dataclasses.replace(ctx, eff=dataclasses.replace(ctx.eff, moe_layer_overhead_s=0.0))
    cfg = Config(8, 1, 1, 1, "fp8", "fp8")
    for kind in set(problem.arch.layer_kinds()):
        on, off = layer_cost(ctx, kind, cfg), layer_cost(off_ctx, kind, cfg)
        expected = ctx.eff.moe_layer_overhead_s if kind == "moe" else 0.0
        assert on.time_s(4, 4096) - off.time_s(4, 4096) == pytest.approx(expected)
    fused = dataclasses.replace(cfg, weights=sorted(FUSED_ROUTING_WEIGHTS)[0])
    assert layer_cost(ctx, "moe", fused).fixed_s == pytest.approx(layer_cost(off_ctx, "moe", fused).fixed_s)
    # The report states the factor with the other defaults.
    assert problem.defaults["cost_model"]["moe_layer_overhead_us"] == pytest.approx(
        engine("vllm").MOE_LAYER_OVERHEAD_US)

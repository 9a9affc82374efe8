"""The cost model against hand-computed values (DESIGN section 5)."""

from __future__ import annotations

import pytest

from solver.input.catalog import resolve_gpu, resolve_model
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

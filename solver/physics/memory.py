"""Bytes per GPU: weights as TP / EP / PP shard them, the KV cache, activations and runtime overhead."""

from __future__ import annotations

from ..input.catalog import Architecture
from ..input.schema import LimitsSpec, WorkloadSpec
from .layout import Config, GiB
from .params import LayerParams, layer_params
from .precision import ACT_BYTES, EXPERT_ONLY_WEIGHTS, KV_BYTES, UNQUANTISED_BYTES, WEIGHT_BYTES

# Runtime memory outside weights, KV and activations, per GPU. m0690 (vLLM startup log, 80 GB GPU)
# shows 0.16 GiB of non-torch memory after start-up; CUDA graphs for the decode batch sizes and the
# cuBLAS workspace add about 0.5 GiB (vLLM logs "Graph capturing finished ... 0.4-0.6 GiB").
RUNTIME_OVERHEAD_SINGLE_GiB = 0.75
# NCCL and custom all-reduce buffers when the GPU communicates (vLLM custom all-reduce registers
# 8 MiB x ranks buffers; NCCL channels take a few hundred MiB).
RUNTIME_OVERHEAD_COMM_GiB = 0.5
# Activation workspace multiplier over the live tensors of one layer at max_num_batched_tokens,
# covering intermediate copies and allocator fragmentation. Public vLLM start-up logs ("PyTorch
# activation peak memory takes ...") show 1.19 GiB for Llama-3-8B at 8192 batched tokens and
# 6.90 GiB for a 32B model at tp=1 and 32768 tokens; 1.5 over-covers both (1.66 and ~8 GiB).
# Calibration row m0690 (2.38 GiB, reliability C, model identity inferred) is not matched.
ACTIVATION_FACTOR = 1.5
# The sampler holds logits, probabilities and sort buffers in FP32 for every sequence in the batch.
SAMPLER_FP32_COPIES = 4


def kv_heads_per_gpu(a: Architecture, tp: int) -> float:
    """KV heads each TP rank stores: they split when TP <= KV heads and replicate beyond."""
    return max(a.kv_heads / tp, 1.0)


def kv_bytes_per_token_layer(a: Architecture, kv_dtype: str, tp: int = 1) -> float:
    """KV-cache bytes per token per layer on one GPU.

    GQA: 2 (K and V) x KV heads on the GPU x head dim x bytes. MLA: the compressed latent plus the
    decoupled RoPE key, (kv_lora_rank + qk_rope_head_dim) x bytes, replicated on every TP rank.
    """
    b = KV_BYTES[kv_dtype]
    if a.is_mla:
        return (a.kv_lora_rank + a.qk_rope_head_dim) * b
    return 2 * kv_heads_per_gpu(a, tp) * a.head_dim * b


def kv_bytes_per_token(a: Architecture, kv_dtype: str, tp: int = 1) -> float:
    """KV-cache bytes per token over all layers, on one GPU of a TP group."""
    return a.layers * kv_bytes_per_token_layer(a, kv_dtype, tp)


def kv_tokens_held(a: Architecture, seq_tokens: float) -> float:
    """KV tokens per layer, averaged over the model's layers, that one sequence keeps.

    A full-attention layer keeps every token of the sequence; a sliding-window layer at most the
    last ``sliding_window`` (gpt-oss: 128), since no later query looks further back. Multiply by
    ``kv_bytes_per_token(a, ...)`` (all layers) for the sequence's KV bytes. Without sliding layers
    the input comes back unchanged.
    """
    if not a.has_sliding_window:
        return seq_tokens
    sliding = sum(a.sliding_layers)
    return ((a.layers - sliding) * seq_tokens + sliding * min(seq_tokens, a.sliding_window)) / a.layers


def attended_context(a: Architecture, context_tokens: float) -> float:
    """Keys a decode token attends to per layer, averaged over the model's layers.

    Full-attention layers read the whole context, sliding-window layers at most ``sliding_window``
    keys: the attention FLOPs and KV bytes read per decode token scale with this, not with the
    context. Without sliding layers the input comes back unchanged.
    """
    if not a.has_sliding_window:
        return context_tokens
    sliding = sum(a.sliding_layers)
    return ((a.layers - sliding) * context_tokens + sliding * min(context_tokens, a.sliding_window)) / a.layers


def windowed_keys(full_fraction: float, window: int, queries: float, keys: float) -> float:
    """Keys attended per layer on average by ``queries`` queries over ``keys`` keys in total, when a
    share ``1 - full_fraction`` of the layers attends only within ``window`` keys (0: no window)."""
    if not window:
        return keys
    return full_fraction * keys + (1 - full_fraction) * min(keys, queries * window)


def window_of(a: Architecture) -> tuple[float, int]:
    """(share of full-attention layers, sliding window) of a model; (1.0, 0) without sliding layers."""
    if not a.has_sliding_window:
        return 1.0, 0
    return 1 - sum(a.sliding_layers) / a.layers, a.sliding_window


def _attention_split_replicated(a: Architecture, lp: LayerParams, tp: int) -> tuple[float, float]:
    """Attention parameters a GPU holds (split over TP, replicated), at TP = ``tp``."""
    attn_split = lp.attn_split
    attn_repl = lp.attn_replicated
    if not a.is_mla and a.kv_heads < tp:
        # K/V projections replicate beyond the KV-head count: each rank holds one KV head.
        kv_full = 2 * a.hidden * a.kv_heads * a.head_dim
        attn_split -= kv_full
        attn_repl += kv_full * kv_heads_per_gpu(a, tp) / a.kv_heads * tp
    return attn_split, attn_repl


def layer_weight_bytes_per_gpu(a: Architecture, kind: str, cfg: Config) -> float:
    """Weight bytes one GPU holds for one decoder layer.

    TP splits heads and MLP columns; EP splits routed experts over ``ep`` groups of ``tp / ep``
    ranks, each group TP-splitting its experts, so a GPU holds 1/tp of all routed experts.
    Expert-only precisions (mxfp4) quantise the routed experts alone: attention, dense MLP and
    shared experts stay 16-bit. ``routed_expert_bytes_per_gpu`` is the routed-expert part.
    """
    lp = layer_params(a, kind)
    tp = cfg.tp
    attn_split, attn_repl = _attention_split_replicated(a, lp, tp)
    if cfg.weights in EXPERT_ONLY_WEIGHTS:
        static = (attn_split / tp + attn_repl + (lp.mlp + lp.shared) / tp) * UNQUANTISED_BYTES
        return static + (lp.small + lp.router) * 2.0 + routed_expert_bytes_per_gpu(a, kind, cfg)
    wb = WEIGHT_BYTES[cfg.weights]
    quantised = attn_split / tp + attn_repl + (lp.mlp + lp.shared + lp.expert * lp.experts) / tp
    return quantised * wb + (lp.small + lp.router) * 2.0 + lp.expert_bias * lp.experts / tp * 2.0


def routed_expert_bytes_per_gpu(a: Architecture, kind: str, cfg: Config) -> float:
    """Bytes of all routed experts of one layer on one GPU: experts x expert params / tp x bytes.

    The part of ``layer_weight_bytes_per_gpu`` that scales with how many experts a step touches
    (the rest is read once per step whatever the batch). Expert biases (gpt-oss) stay 16-bit.
    Zero for a dense layer.
    """
    lp = layer_params(a, kind)
    return lp.experts * (lp.expert * WEIGHT_BYTES[cfg.weights] + lp.expert_bias * 2.0) / cfg.tp


def embedding_bytes_per_gpu(a: Architecture, tp: int) -> float:
    """Vocab-parallel input embedding on the first stage (16-bit)."""
    return a.vocab * a.hidden * 2.0 / tp


def lm_head_bytes_per_gpu(a: Architecture, tp: int, pp: int) -> float:
    """Vocab-parallel LM head on the last stage (16-bit) plus the final norm.

    A tied head costs nothing extra at pp=1; with pp>1 the last stage holds its own copy.
    """
    head = 0.0 if (a.tie_embeddings and pp == 1) else a.vocab * a.hidden * 2.0 / tp
    return head + a.hidden * 2.0


def activation_bytes(a: Architecture, tp: int, limits: LimitsSpec) -> float:
    """Peak activation workspace per GPU during the profiling step of max_num_batched_tokens."""
    q_out = a.heads * (a.qk_nope_head_dim + a.qk_rope_head_dim if a.is_mla else a.head_dim)
    kv_out = (a.kv_lora_rank + a.qk_rope_head_dim) if a.is_mla else 2 * a.kv_heads * a.head_dim
    ffn = max(a.intermediate, a.top_k * a.moe_intermediate + a.shared_intermediate)
    per_token = ACT_BYTES * (4 * a.hidden + (q_out + kv_out + 2 * ffn) / tp)
    sampler = limits.max_num_seqs * a.vocab / tp * 4.0 * SAMPLER_FP32_COPIES
    return limits.max_num_batched_tokens * per_token * ACTIVATION_FACTOR + sampler


def runtime_overhead_bytes(cfg: Config, limits: LimitsSpec) -> float:
    """CUDA context, graphs, cuBLAS and communication buffers per GPU."""
    if limits.runtime_overhead_GiB is not None:
        return limits.runtime_overhead_GiB * GiB
    comm = RUNTIME_OVERHEAD_COMM_GiB if cfg.tp * cfg.pp > 1 else 0.0
    return (RUNTIME_OVERHEAD_SINGLE_GiB + comm) * GiB


def kv_tokens_per_replica(batch: int, workload: WorkloadSpec, a: Architecture | None = None) -> float:
    """KV tokens per layer one replica must hold for ``batch`` sequences.

    Every sequence may reach input + output tokens (no preemption), and the engine refuses to
    start unless one sequence of max_model_len fits. Sliding-window layers hold at most their
    window of each sequence (:func:`kv_tokens_held`, averaged over the layers).
    """
    seq, longest = workload.input_tokens + workload.output_tokens, workload.model_len
    if a is not None and a.has_sliding_window:
        return max(batch * kv_tokens_held(a, seq), kv_tokens_held(a, longest))
    return max(batch * seq, longest)

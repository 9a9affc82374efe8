"""Bytes per GPU: weights as TP / EP / PP shard them, the KV cache, activations and runtime overhead."""

from __future__ import annotations

from ..input.catalog import Architecture
from ..input.schema import LimitsSpec, WorkloadSpec
from .engine_memory import LEGACY_MEMORY, MemoryConventions
from .layout import Config, GiB
from .params import LayerParams, layer_params
from .precision import ACT_BYTES, EXPERT_ONLY_WEIGHTS, KV_BYTES, UNQUANTISED_BYTES, WEIGHT_BYTES

# Activation workspace multiplier over the live tensors of one layer at max_num_batched_tokens,
# covering intermediate copies and allocator fragmentation. Public vLLM start-up logs ("PyTorch
# activation peak memory takes ...") show 1.19 GiB for Llama-3-8B at 8192 batched tokens and
# 6.90 GiB for a 32B model at tp=1 and 32768 tokens; 1.5 over-covers both (1.66 and ~8 GiB).
# vLLM 0.19 on a first pipeline stage (no LM head, so no sampler): 1.10 GiB for Llama-3.1-8B at
# 8192 tokens (benchmarks/data/vllm_memory_logs.json v035 / v036), 1.17 GiB by this rule.
ACTIVATION_FACTOR = 1.5
# The profile step ends with a dummy sampler run on the last pipeline stage (vLLM
# gpu_model_runner.py profile_run -> _dummy_sampler_run): logits of min(max_num_seqs,
# max_num_batched_tokens) sequences over the *whole* vocabulary on every TP rank (the LM head's
# shards are all-gathered before sampling), cast to FP32 ("logits = logits.to(torch.float32)",
# vllm/v1/sample/sampler.py; vllm-project/vllm#27508 runs out of memory on that line), then
# probabilities and the top-k / top-p sort. Its peak is this many FP32 copies of the logits, plus
# the step's hidden states still held. The forward activations are freed by then, so the last
# stage peaks at the larger of the two, and the peak does not shrink with TP: vLLM 0.19 logs 1.89
# GiB for Llama-3.1-8B (vocab 128,256, 1,024 sequences) at TP 1, 2 and 4 (v027-v038) and 2.21 GiB
# for Qwen2.5-7B (vocab 152,064) at TP 1, 2 and 4 (v052-v061): 3.73 and 3.72 copies.
SAMPLER_FP32_COPIES = 3.73
# Logits are computed, and the sampler runs, on the last pipeline stage only; the stages before
# it peak with their forward activations (v035 / v036: 1.10 GiB on stage 0 against 1.89 at pp=1).
# Engines whose start-up logs are not yet checked (MemoryConventions.profiled_sampler false) keep
# the earlier rule: the forward pass plus logits, probabilities and sort buffers in FP32 of every
# sequence over the TP rank's vocabulary shard, 4 copies, on every stage.
LEGACY_SAMPLER_FP32_COPIES = 4
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

    TP splits heads and MLP columns; the routed experts are split over the stage's ``tp x adp``
    GPUs (``cfg.moe_group``): EP places whole experts on ``ep`` groups of ``tp x adp / ep`` ranks,
    each group TP-splitting its experts, so a GPU holds 1/(tp x adp) of all routed experts. With
    attention data parallelism every attention rank keeps a whole copy of the attention, dense MLP
    and shared-expert weights of its TP group. Expert-only precisions (mxfp4) quantise the routed
    experts alone: attention, dense MLP and shared experts stay 16-bit.
    ``routed_expert_bytes_per_gpu`` is the routed-expert part.
    """
    lp = layer_params(a, kind)
    tp = cfg.tp
    attn_split, attn_repl = _attention_split_replicated(a, lp, tp)
    routed = routed_expert_bytes_per_gpu(a, kind, cfg)
    wb = quantised_weight_bytes(a, cfg.weights)
    keep = UNQUANTISED_COMPONENTS if cfg.weights in EXPERT_ONLY_WEIGHTS else checkpoint_unquantised(a, cfg.weights)
    if kind == "dense16" and weights_from_checkpoint(a, cfg.weights):
        keep = keep | {"dense_mlp"}
    at = {c: (UNQUANTISED_BYTES if c in keep else wb) for c in UNQUANTISED_COMPONENTS}
    static = ((attn_split / tp + attn_repl) * at["attention"] + lp.mlp / tp * at["dense_mlp"]
              + lp.shared / tp * at["shared_experts"])
    return static + (lp.small + lp.router) * 2.0 + routed


# The components a checkpoint may leave in 16-bit (catalog.Architecture.unquantised).
UNQUANTISED_COMPONENTS = frozenset({"attention", "dense_mlp", "shared_experts"})


def weights_from_checkpoint(a: Architecture, weights: str) -> bool:
    """True when a plan of ``weights`` serves the repository's own quantised weights as they ship."""
    return weights == a.checkpoint_dtype and weights not in ("bf16", "fp16")


def checkpoint_unquantised(a: Architecture, weights: str) -> frozenset[str]:
    """The components kept 16-bit when serving ``weights``: the checkpoint's own list when the plan
    serves the checkpoint's precision (an online quantisation of a 16-bit repository converts all)."""
    return a.unquantised if weights_from_checkpoint(a, weights) else frozenset()


def quantised_weight_bytes(a: Architecture, weights: str) -> float:
    """Bytes per quantised parameter: the checkpoint's own format when the plan serves it, else the dtype's."""
    if weights == a.checkpoint_dtype and a.checkpoint_weight_bytes:
        return a.checkpoint_weight_bytes
    return WEIGHT_BYTES[weights]


def routed_expert_bytes_per_gpu(a: Architecture, kind: str, cfg: Config) -> float:
    """Bytes of all routed experts of one layer on one GPU: experts x expert params / (tp x adp) x bytes.

    The part of ``layer_weight_bytes_per_gpu`` that scales with how many experts a step touches
    (the rest is read once per step whatever the batch). Expert biases (gpt-oss) stay 16-bit.
    Zero for a dense layer.
    """
    lp = layer_params(a, kind)
    held = lp.experts + cfg.redundant if lp.experts else 0  # the replicas are whole experts too
    return held * (lp.expert * quantised_weight_bytes(a, cfg.weights) + lp.expert_bias * 2.0) / cfg.moe_group


def rotary_cache_bytes(a: Architecture) -> float:
    """The rotary-embedding cos / sin table every GPU holds beside the weights (16-bit).

    vLLM builds one ``cos_sin_cache`` of max_position_embeddings x rotary dim in the model dtype
    (model_executor/layers/rotary_embedding: ``register_buffer("cos_sin_cache", ...)``), shared by the
    layers and counted in "Model loading took X GiB": 32 MiB for Llama-3.1-8B's 131,072 positions,
    the 0.03 GiB by which its loaded weights exceed the parameters (v027-v038 of
    benchmarks/data/vllm_memory_logs.json).
    """
    rotary_dim = a.qk_rope_head_dim if a.is_mla else a.head_dim
    return a.max_position_embeddings * rotary_dim * ACT_BYTES


def embedding_bytes_per_gpu(a: Architecture, tp: int) -> float:
    """Vocab-parallel input embedding on the first stage (16-bit)."""
    return a.vocab * a.hidden * 2.0 / tp


def lm_head_bytes_per_gpu(a: Architecture, tp: int, pp: int) -> float:
    """Vocab-parallel LM head on the last stage (16-bit) plus the final norm.

    A tied head costs nothing extra at pp=1; with pp>1 the last stage holds its own copy.
    """
    head = 0.0 if (a.tie_embeddings and pp == 1) else a.vocab * a.hidden * 2.0 / tp
    return head + a.hidden * 2.0


def forward_activation_bytes(a: Architecture, tp: int, limits: LimitsSpec) -> float:
    """Peak activations of the profiling forward pass over max_num_batched_tokens, per GPU.

    The residual stream and norms in full width, the attention projections and the MLP (or the
    routed experts a token visits plus the shared ones) split over TP, times ACTIVATION_FACTOR.
    """
    q_out = a.heads * (a.qk_nope_head_dim + a.qk_rope_head_dim if a.is_mla else a.head_dim)
    kv_out = (a.kv_lora_rank + a.qk_rope_head_dim) if a.is_mla else 2 * a.kv_heads * a.head_dim
    ffn = max(a.intermediate, a.top_k * a.moe_intermediate + a.shared_intermediate)
    per_token = ACT_BYTES * (4 * a.hidden + (q_out + kv_out + 2 * ffn) / tp)
    return limits.max_num_batched_tokens * per_token * ACTIVATION_FACTOR


def sampler_activation_bytes(a: Architecture, limits: LimitsSpec) -> float:
    """Peak of the profiling sampler run on the last stage: FP32 logits over the whole vocabulary.

    min(max_num_seqs, max_num_batched_tokens) sequences x vocab x 4 bytes x SAMPLER_FP32_COPIES,
    plus the step's hidden states it still holds; the same on every TP rank.
    """
    seqs = min(limits.max_num_seqs, limits.max_num_batched_tokens)
    held = limits.max_num_batched_tokens * a.hidden * ACT_BYTES
    return seqs * a.vocab * 4.0 * SAMPLER_FP32_COPIES + held


def activation_bytes(a: Architecture, tp: int, limits: LimitsSpec, last_stage: bool = True,
                     conventions: MemoryConventions = LEGACY_MEMORY) -> float:
    """Peak activation workspace per GPU in the engine's profiling step of max_num_batched_tokens.

    With a profiled sampler (vLLM) the last pipeline stage peaks at the larger of the forward pass
    and the sampler run (which does not shrink with TP), the stages before it at the forward pass
    alone. Otherwise the earlier rule: forward plus a TP-split sampler, the same on every stage.
    """
    fwd = forward_activation_bytes(a, tp, limits)
    if not conventions.profiled_sampler:
        return fwd + limits.max_num_seqs * a.vocab / tp * 4.0 * LEGACY_SAMPLER_FP32_COPIES
    return max(fwd, sampler_activation_bytes(a, limits)) if last_stage else fwd


def runtime_overhead_bytes(cfg: Config, limits: LimitsSpec, conventions: MemoryConventions = LEGACY_MEMORY,
                           last_stage: bool = True, layers: int = 0) -> float:
    """Memory the engine counts besides weights, KV cache and activations, on one GPU of a stage.

    Its non-PyTorch buffers (NCCL and custom all-reduce, kernel modules; by TP / PP and whether the
    stage runs the sampler) and, where the engine release reserves them in its budget, its CUDA
    graphs for ``layers`` decoder layers (:class:`MemoryConventions`). ``limits.runtime_overhead_GiB``
    replaces all of it, the same on every GPU.
    """
    if limits.runtime_overhead_GiB is not None:
        return limits.runtime_overhead_GiB * GiB
    c = conventions
    graphs = c.cuda_graph_base_GiB + c.cuda_graph_per_layer_GiB * layers
    return (c.non_torch_GiB(cfg.tp, cfg.pp, last_stage) + graphs) * GiB


def cuda_graph_bytes_per_layer(limits: LimitsSpec, conventions: MemoryConventions = LEGACY_MEMORY) -> float:
    """CUDA-graph bytes the engine reserves per decoder layer on a GPU (0 outside its budget)."""
    if limits.runtime_overhead_GiB is not None:
        return 0.0
    return conventions.cuda_graph_per_layer_GiB * GiB


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

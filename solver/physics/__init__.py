"""The exact cost model: parameters and bytes, memory, compute and communication time, serving metrics.

This package is the specification. The CP-SAT coefficients (:mod:`solver.search.options`), the
verifier, the simulator and the report all come from these functions; it never imports ortools and
imports nothing of the project but :mod:`solver.input` (the validated input types). Units are in
names: bytes, seconds (``_s``), GiB, GB/s. Every constant says why and where it comes from.

Modules, lowest first: ``precision`` (bytes and peaks per dtype), ``efficiency`` (named factors per
GPU family), ``engine_memory`` (the device total an engine sees, what it counts besides weights and
KV), ``params`` (parameter counts), ``layout`` (configuration, hardware, context, GPU
numbering, layer splits), ``memory`` (bytes per GPU), ``timing`` (per-layer roofline and
collectives), ``stages`` (per-stage linear coefficients), ``serving`` (TTFT, TPOT, throughput).
Other packages import from here; the modules import each other directly, never this package.
"""

from .efficiency import EFFICIENCY_BY_FAMILY, Efficiency, efficiency_for
from .engine_memory import (
    DRIVER_RESERVED_MAX_FRACTION,
    LEGACY_MEMORY,
    DRIVER_RESERVED_GiB,
    MemoryConventions,
    driver_reserved_GiB,
    torch_visible_GiB,
)
from .layout import (
    GB,
    KINDS,
    Config,
    Context,
    GiB,
    Hardware,
    attention_dp_packs,
    boundary_link,
    even_split,
    fp8_blocks_whole,
    gpu_index,
    moe_tp,
    packs_in_nodes,
    redundant_ok,
    replica_seq_cap,
    stage_counts,
)
from .memory import (
    ACTIVATION_FACTOR,
    SAMPLER_FP32_COPIES,
    activation_bytes,
    attended_context,
    cuda_graph_bytes_per_layer,
    embedding_bytes_per_gpu,
    forward_activation_bytes,
    kv_bytes_per_token,
    kv_bytes_per_token_layer,
    kv_heads_per_gpu,
    kv_tokens_held,
    kv_tokens_per_replica,
    layer_weight_bytes_per_gpu,
    lm_head_bytes_per_gpu,
    rotary_cache_bytes,
    runtime_overhead_bytes,
    sampler_activation_bytes,
)
from .params import LayerParams, ParamCounts, layer_params, param_counts
from .precision import (
    ACT_BYTES,
    COMPUTE_DTYPE,
    KV_BYTES,
    WEIGHT_BYTES,
    compute_dtype,
    kv_dtype_supported,
    peak_tflops,
    weight_dtype_supported,
)
from .serving import Metrics, serving_metrics, stage_cycles_s
from .stages import (
    StageCoefficients,
    kv_cache_tokens,
    kv_capacity_tokens,
    max_batch_that_fits,
    prefill_chunks,
    prefill_latency_s,
    prefill_work_s,
    stage_coefficients,
)
from .steps import StageCost, StepModel, stage_costs, step_model
from .timing import (
    ZERO_COST,
    LayerCost,
    allreduce_latency_s,
    causal_pairs,
    experts_touched_fraction,
    layer_cost,
    lm_head_cost,
    send_cost,
)

__all__ = [
    "ACTIVATION_FACTOR", "ACT_BYTES", "COMPUTE_DTYPE", "compute_dtype", "Config", "Context", "DRIVER_RESERVED_GiB",
    "DRIVER_RESERVED_MAX_FRACTION",
    "EFFICIENCY_BY_FAMILY", "Efficiency", "GB", "GiB", "Hardware", "KINDS", "KV_BYTES", "LEGACY_MEMORY", "LayerCost",
    "LayerParams", "MemoryConventions", "Metrics", "ParamCounts", "SAMPLER_FP32_COPIES",
    "StageCoefficients", "StageCost", "StepModel", "WEIGHT_BYTES", "ZERO_COST", "activation_bytes", "attended_context",
    "allreduce_latency_s", "boundary_link", "causal_pairs", "cuda_graph_bytes_per_layer", "driver_reserved_GiB", "efficiency_for",
    "embedding_bytes_per_gpu", "even_split", "experts_touched_fraction", "forward_activation_bytes", "gpu_index", "packs_in_nodes", "attention_dp_packs", "redundant_ok", "fp8_blocks_whole", "moe_tp", "replica_seq_cap",
    "kv_bytes_per_token", "kv_bytes_per_token_layer", "kv_cache_tokens", "kv_capacity_tokens", "kv_dtype_supported", "kv_heads_per_gpu",
    "kv_tokens_held", "kv_tokens_per_replica", "layer_cost", "layer_params", "layer_weight_bytes_per_gpu",
    "lm_head_bytes_per_gpu", "lm_head_cost", "max_batch_that_fits", "param_counts",
    "peak_tflops", "prefill_chunks", "prefill_latency_s", "prefill_work_s", "rotary_cache_bytes", "runtime_overhead_bytes",
    "sampler_activation_bytes", "send_cost", "serving_metrics", "stage_coefficients", "stage_cycles_s", "stage_costs", "stage_counts", "step_model",
    "torch_visible_GiB", "weight_dtype_supported",
]

"""The exact cost model: parameters and bytes, memory, compute and communication time, serving metrics.

This package is the specification. The CP-SAT coefficients (:mod:`solver.search.options`), the
verifier, the simulator and the report all come from these functions; it never imports ortools and
imports nothing of the project but :mod:`solver.input` (the validated input types). Units are in
names: bytes, seconds (``_s``), GiB, GB/s. Every constant says why and where it comes from.

Modules, lowest first: ``precision`` (bytes and peaks per dtype), ``efficiency`` (named factors per
GPU family), ``params`` (parameter counts), ``layout`` (configuration, hardware, context, GPU
numbering, layer splits), ``memory`` (bytes per GPU), ``timing`` (per-layer roofline and
collectives), ``stages`` (per-stage linear coefficients), ``serving`` (TTFT, TPOT, throughput).
Other packages import from here; the modules import each other directly, never this package.
"""

from .efficiency import EFFICIENCY_BY_FAMILY, Efficiency, efficiency_for
from .layout import (
    GB,
    KINDS,
    Config,
    Context,
    GiB,
    Hardware,
    boundary_link,
    even_split,
    gpu_index,
    stage_counts,
)
from .memory import (
    ACTIVATION_FACTOR,
    SAMPLER_FP32_COPIES,
    RUNTIME_OVERHEAD_COMM_GiB,
    RUNTIME_OVERHEAD_SINGLE_GiB,
    activation_bytes,
    attended_context,
    embedding_bytes_per_gpu,
    kv_bytes_per_token,
    kv_bytes_per_token_layer,
    kv_heads_per_gpu,
    kv_tokens_held,
    kv_tokens_per_replica,
    layer_weight_bytes_per_gpu,
    lm_head_bytes_per_gpu,
    runtime_overhead_bytes,
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
    "ACTIVATION_FACTOR", "ACT_BYTES", "COMPUTE_DTYPE", "compute_dtype", "Config", "Context", "EFFICIENCY_BY_FAMILY",
    "Efficiency", "GB", "GiB", "Hardware", "KINDS", "KV_BYTES", "LayerCost", "LayerParams", "Metrics",
    "ParamCounts", "RUNTIME_OVERHEAD_COMM_GiB", "RUNTIME_OVERHEAD_SINGLE_GiB", "SAMPLER_FP32_COPIES",
    "StageCoefficients", "StageCost", "StepModel", "WEIGHT_BYTES", "ZERO_COST", "activation_bytes", "attended_context",
    "allreduce_latency_s", "boundary_link", "causal_pairs", "efficiency_for", "embedding_bytes_per_gpu",
    "even_split", "experts_touched_fraction", "gpu_index",
    "kv_bytes_per_token", "kv_bytes_per_token_layer", "kv_capacity_tokens", "kv_dtype_supported", "kv_heads_per_gpu",
    "kv_tokens_held", "kv_tokens_per_replica", "layer_cost", "layer_params", "layer_weight_bytes_per_gpu",
    "lm_head_bytes_per_gpu", "lm_head_cost", "max_batch_that_fits", "param_counts",
    "peak_tflops", "prefill_chunks", "prefill_latency_s", "prefill_work_s", "runtime_overhead_bytes",
    "send_cost", "serving_metrics", "stage_coefficients", "stage_cycles_s", "stage_costs", "stage_counts", "step_model",
    "weight_dtype_supported",
]

"""TensorRT-LLM: the defaults of its benchmark and runtime that the cost model's calibration relies on.

The offline throughput tables in the calibration data were measured with ``trtllm-bench``; these are
the settings it applies when none are given (see benchmarks/fidelity.py for how a row maps onto an
instance). Expert parallelism splits experts over ``moe_expert_parallel_size`` groups of the TP ranks.
"""

from __future__ import annotations

NAME = "trtllm"
# How a step mixes prefill and decode (solver.simulate.engine): TensorRT-LLM inflight batching puts context (prefill) and generation requests in the same iteration within max_num_tokens.
SCHEDULER_POLICY = "mixed"
# Fixed time per engine step (scheduling, input preparation, sampling bookkeeping), us; None: the GPU
# family's default in solver.physics.efficiency.
STEP_OVERHEAD_US: float | None = 18.7
# Per request, from the client's send to the engine's queue (HTTP, tokenisation, IPC), ms.
REQUEST_OVERHEAD_MS: float = 113.5


# trtllm-bench heuristic hard cap on max_batch_size (tensorrt_llm/bench/build/tuning.py,
# finetune_setting: ``raw_bs = min(kv_cache_max_requests, 4096) / pp_size``).
BENCH_MAX_BATCH_CAP = 4096
# TensorRT-LLM default max_num_tokens (tensorrt_llm/builder.py BuildConfig.max_num_tokens = 8192,
# DEFAULT_MAX_NUM_TOKENS in tensorrt_llm/bench/build/build.py); sizes only the activation workspace.
MAX_NUM_TOKENS = 8192
# trtllm-bench throughput --kv_cache_free_gpu_mem_fraction default (throughput.py: default=.90,
# "The percentage of memory to use for KV Cache after model load").
KV_CACHE_FREE_FRACTION = 0.90
# trtllm-serve defaults (tensorrt_llm/commands/serve.py, get_llm_args): max_batch_size 2048,
# max_num_tokens 8192, KvCacheConfig.free_gpu_memory_fraction 0.9, chunked prefill off.
SERVE_MAX_BATCH_SIZE = 2048


def ep_layout_ok(is_moe: bool, tp: int, ep: int) -> bool:
    """``moe_expert_parallel_size`` divides the TP group (``moe_tensor_parallel_size`` = tp / ep)."""
    return ep == 1 or (is_moe and tp % ep == 0)


EP_LAYOUT_RULE = "ep must divide tp (experts split over ep groups of tp/ep ranks)"


def defaults(gpu_memory_GiB: float, gpu_name: str) -> dict[str, float]:
    """trtllm-serve defaults; its KV fraction is of the memory left after the weights, which an
    instance's memory_utilization (of the whole device) approximates from above: 0.9."""
    del gpu_memory_GiB, gpu_name
    return {"max_num_seqs": SERVE_MAX_BATCH_SIZE, "max_num_batched_tokens": MAX_NUM_TOKENS,
            "memory_utilization": KV_CACHE_FREE_FRACTION}

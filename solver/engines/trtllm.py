"""TensorRT-LLM: the defaults of its benchmark and runtime that the cost model's calibration relies on.

The offline throughput tables in the calibration data were measured with ``trtllm-bench``; these are
the settings it applies when none are given (see benchmarks/fidelity.py for how a row maps onto an
instance). Expert parallelism splits experts over ``moe_expert_parallel_size`` groups of the TP ranks.
"""

from __future__ import annotations

from dataclasses import replace

from ..physics import LEGACY_MEMORY, MemoryConventions
from .base import LaunchInput

NAME = "trtllm"
# The release whose `trtllm-serve` flags and extra-options keys these commands use.
FLAGS_VERSION = "TensorRT-LLM 1.0 (PyTorch backend)"
# The release an instance plans for when `search.engine_version` is not given (the flags' release).
DEFAULT_VERSION = "1.0"
# The KV cache is allocated in blocks of this many tokens: TensorRT-LLM KvCacheConfig tokens_per_block default 32.
KV_BLOCK_TOKENS = 32

# How a step mixes prefill and decode (solver.simulate.engine): TensorRT-LLM inflight batching puts context (prefill) and generation requests in the same iteration within max_num_tokens.
SCHEDULER_POLICY = "mixed"
# Fixed time per engine step (scheduling, input preparation, sampling bookkeeping), us; None: the GPU
# family's default in solver.physics.efficiency.
STEP_OVERHEAD_US: float | None = 37.2
# Per request, from the client's send to the engine's queue (HTTP, tokenisation, IPC), ms.
# Per generated token per step: detokenisation, streaming and bookkeeping on the engine's CPU, us.
TOKEN_OVERHEAD_US: float = 0.0
REQUEST_OVERHEAD_MS: float = 135.1


def memory_conventions(version: str | None = None) -> MemoryConventions:
    """What this engine counts besides weights, KV and activations: the flat rule of
    :data:`solver.physics.LEGACY_MEMORY` for every release (its start-up logs are not yet checked)."""
    return replace(LEGACY_MEMORY, engine=NAME, version=version or DEFAULT_VERSION, kv_block_tokens=KV_BLOCK_TOKENS)


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


def launch(li: LaunchInput) -> tuple[str, str, list[str]]:
    """``trtllm-serve`` and the YAML of its ``--extra_llm_api_options`` for a plan.

    Flags as documented for trtllm-serve: ``--backend pytorch``, ``--tp_size``, ``--pp_size``,
    ``--ep_size``, ``--max_batch_size``, ``--max_num_tokens``, ``--max_seq_len``,
    ``--kv_cache_free_gpu_memory_fraction`` (a fraction of the memory left after the weights and
    buffers, converted from the plan's share of the whole device), ``--extra_llm_api_options``.
    """
    cfg = li.cfg
    notes: list[str] = []
    model, _ = li.model()
    if cfg.weights == "fp8" and li.checkpoint_dtype != "fp8":
        # TensorRT-LLM's PyTorch backend reads quantization from the checkpoint (ModelOpt FP8).
        model = f"<an FP8 (ModelOpt) checkpoint of {li.repo}>"
    if model != li.repo:
        notes.append(f"TensorRT-LLM: replace {model} by such a checkpoint (it reads the quantization from it)")
    cmd = ["trtllm-serve", model, "--backend pytorch", f"--tp_size {cfg.tp}", f"--pp_size {cfg.pp}"]
    if cfg.ep > 1:
        cmd.append(f"--ep_size {cfg.ep}")
    cmd += [f"--max_batch_size {li.max_num_seqs}", f"--max_num_tokens {li.max_num_batched_tokens}",
            f"--max_seq_len {li.max_model_len}", f"--kv_cache_free_gpu_memory_fraction {li.kv_free_fraction:.3f}",
            "--extra_llm_api_options extra_llm_api_options.yaml"]
    yaml = ["enable_chunked_prefill: true", "kv_cache_config:",
            f"  dtype: {'fp8' if cfg.kv_cache == 'fp8' else 'auto'}",
            f"  free_gpu_memory_fraction: {li.kv_free_fraction:.3f}"]
    if cfg.dp > 1:
        notes.append(f"TensorRT-LLM: run {cfg.dp} such servers (one per replica) behind a load balancer")
    if li.uneven:
        notes.append("TensorRT-LLM splits layers evenly over pipeline stages")
    return " ".join(cmd), "\n".join(yaml) + "\n", notes

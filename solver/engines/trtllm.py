"""TensorRT-LLM: the defaults of its benchmark and runtime that the cost model's calibration relies on.

The offline throughput tables in the calibration data were measured with ``trtllm-bench``; these are
the settings it applies when none are given (see benchmarks/fidelity.py for how a row maps onto an
instance). Expert parallelism splits experts over ``moe_expert_parallel_size`` groups of the TP ranks.
"""

from __future__ import annotations

from dataclasses import replace

from ..physics import LEGACY_MEMORY, Config, MemoryConventions
from .base import LaunchInput, release_tuple

NAME = "trtllm"
# The release whose `trtllm-serve` flags and extra-options keys these commands use.
FLAGS_VERSION = "TensorRT-LLM 1.0 (PyTorch backend)"
# The release an instance plans for when `search.engine_version` is not given (the flags' release).
DEFAULT_VERSION = "1.0"
# The KV cache is allocated in blocks of this many tokens: TensorRT-LLM KvCacheConfig tokens_per_block default 32.
KV_BLOCK_TOKENS = 32

# How a step mixes prefill and decode (solver.simulate.engine): TensorRT-LLM inflight batching puts context (prefill) and generation requests in the same iteration within max_num_tokens.
SCHEDULER_POLICY = "mixed"


def admission_gate(cfg: Config, scheduler_recv_interval: int = 1, attention_dp_balance_iters: int = 0,
                   batch_wait_timeout_iters: int = 0, batch_wait_max_tokens_ratio: float = 0.0,
                   max_num_batched_tokens: int = 0) -> dict:
    """The simulator's gates for new prompts.

    Attention-DP balancing (``attention_dp_config: {enable_balance: true, timeout_iters: N,
    batching_wait_iters: 0}``): new prompts are held until every rank has one, on a counter that
    runs every iteration and releases them at N, unless some rank has nothing to decode (PyExecutor
    ``_balance_adp_requests``). Without attention DP the setting does nothing.

    Batch waiting (``batch_wait_timeout_iters`` N with ``batch_wait_max_tokens_ratio`` r), without
    attention DP only: while generation requests run, the iteration's context requests are held
    until their prompt tokens plus the generation tokens reach r x ``max_num_tokens`` or N held
    iterations have passed, and the count restarts when they go (PyExecutor ``_waiting_requests``;
    with N or r at 0 the test passes at once and nothing waits).
    """
    del scheduler_recv_interval
    gate: dict = {}
    if attention_dp_balance_iters > 1 and cfg.adp > 1:
        gate.update(admit_every_steps=attention_dp_balance_iters, gate_min_running=cfg.adp)
    if batch_wait_timeout_iters > 0 and batch_wait_max_tokens_ratio > 0 and cfg.adp == 1:
        gate.update(batch_wait_iters=batch_wait_timeout_iters,
                    batch_wait_tokens=batch_wait_max_tokens_ratio * max_num_batched_tokens)
    return gate
# Fixed time per engine step (scheduling, input preparation, sampling bookkeeping), us; None: the GPU
# family's default in solver.physics.efficiency.
STEP_OVERHEAD_US: float | None = 34.2
# Per MoE layer per step beyond a dense layer's, us (Efficiency.moe_layer_overhead_s says what and why;
# fitted by benchmarks/fit_factors.py).
MOE_LAYER_OVERHEAD_US: float = 54.1
# Per generated token per step: detokenisation, streaming and bookkeeping on the engine's CPU, us.
TOKEN_OVERHEAD_US: float = 0.0
# Disaggregated serving (solver.physics.efficiency.Efficiency.kv_handoff_s / disagg_step_overhead_s),
# fitted on every third disaggregated calibration row that gives its worker counts
# (benchmarks/disagg_fidelity.py --fit; grids 0-200 ms by 25, 0-3000 us by 500): on TensorRT-LLM's 43
# rows (DeepSeek-R1/V3, Kimi-K2.5, Qwen3-32B on B200 / GB200 / GB300 under Dynamo) no hand-off beyond
# the front end's and no per-step cost: both at the bottom of their grids. Before the per-MoE-layer
# overhead (MOE_LAYER_OVERHEAD_US) entered the step model they were 25 ms and 2 ms, the decode-only
# TPOT being 20-30% below the measured at low load without the latter; with it the decode pools'
# TPOT is above the measured (+6% to +21% median on DeepSeek-V3): the overhead fitted on the
# aggregated rows is more than these pools pay.
DISAGG_HANDOFF_MS: float = 0.0
DISAGG_STEP_OVERHEAD_US: float = 0.0
# Per request, from the client's send to the engine's queue (HTTP, tokenisation, IPC), ms.
REQUEST_OVERHEAD_MS: float = 135.1
# From 1.1 on, fitted on the rows measured with 1.1.0rc2-1.3.0rc5 and on the unversioned rows of the
# same sweeps (benchmarks/fit_factors.py): the 1.0 figure above comes from the Qwen3-32B H100 rows
# of 1.0.0rc3, where a lone 1,024-token prompt at TP 8 takes 135 ms against 41-45 ms for gpt-oss-120b
# on 1.2 at TP 1-8 (the prefill itself is under 10 ms in both).
REQUEST_OVERHEAD_MS_SINCE_1_1: float = 40.0


def request_overhead_ms(version: str | None = None) -> float:
    """The front end's latency per request (trtllm-serve's HTTP server, tokenisation, executor IPC), ms."""
    return REQUEST_OVERHEAD_MS_SINCE_1_1 if release_tuple(version or DEFAULT_VERSION) >= (1, 1) else REQUEST_OVERHEAD_MS


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


def ep_layout_ok(is_moe: bool, group: int, ep: int) -> bool:
    """``moe_expert_parallel_size`` divides the group of tp x attention-DP ranks
    (``moe_tensor_parallel_size`` = group / ep)."""
    return ep == 1 or (is_moe and group % ep == 0)


EP_LAYOUT_RULE = "ep must divide tp x attention_dp (experts split over ep groups of the stage's ranks)"


def attention_dp_ok(is_moe: bool, tp: int, adp: int) -> bool:
    """``enable_attention_dp`` makes every rank of ``--tp_size`` an attention rank of its own: the
    attention's TP is 1 (TensorRT-LLM llm_args: attention DP replaces attention TP)."""
    return adp == 1 or (is_moe and tp == 1)


ATTENTION_DP_RULE = ("attention data parallelism (enable_attention_dp) needs an MoE model and attention tp = 1 "
                     "(every rank of --tp_size becomes an attention rank)")


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
    # With attention DP every rank of --tp_size is an attention rank (attention TP 1) and the
    # experts span all of them; max_batch_size is per rank.
    cmd = ["trtllm-serve", model, "--backend pytorch", f"--tp_size {cfg.tp * cfg.adp}", f"--pp_size {cfg.pp}"]
    if cfg.ep > 1:
        cmd.append(f"--ep_size {cfg.ep}")
    cmd += [f"--max_batch_size {-(-li.max_num_seqs // cfg.adp)}", f"--max_num_tokens {li.max_num_batched_tokens}",
            f"--max_seq_len {li.max_model_len}", f"--kv_cache_free_gpu_memory_fraction {li.kv_free_fraction:.3f}",
            "--extra_llm_api_options extra_llm_api_options.yaml"]
    yaml = ["enable_chunked_prefill: true", "kv_cache_config:",
            f"  dtype: {'fp8' if cfg.kv_cache == 'fp8' else 'auto'}",
            f"  free_gpu_memory_fraction: {li.kv_free_fraction:.3f}"]
    if cfg.adp > 1:
        yaml.append("enable_attention_dp: true")
        if li.attention_dp_balance_iters > 0:
            yaml += ["attention_dp_config:", "  enable_balance: true",
                     f"  timeout_iters: {li.attention_dp_balance_iters}", "  batching_wait_iters: 0"]
    elif li.attention_dp_balance_iters > 0:
        notes.append("TensorRT-LLM: attention_dp_config applies with attention DP only; left out")
    if li.batch_wait_timeout_iters > 0:
        if cfg.adp > 1:
            notes.append("TensorRT-LLM: batch waiting (batch_wait_*) applies without attention DP only; left out")
        else:
            yaml += [f"batch_wait_timeout_iters: {li.batch_wait_timeout_iters}",
                     f"batch_wait_max_tokens_ratio: {li.batch_wait_max_tokens_ratio:g}"]
    if li.expert_map_command:
        yaml.append("moe_load_balancer: expert_map.yaml")
        notes.append(f"TensorRT-LLM: write expert_map.yaml first: {li.expert_map_command} --trtllm-out expert_map.yaml")
    if cfg.dp > 1:
        notes.append(f"TensorRT-LLM: run {cfg.dp} such servers (one per replica) behind a load balancer")
    if li.uneven:
        notes.append("TensorRT-LLM splits layers evenly over pipeline stages")
    return " ".join(cmd), "\n".join(yaml) + "\n", notes

"""vLLM: launch flags, the uneven-split environment variable, and its expert-parallel layout rule.

Flags as documented for ``vllm serve`` (engine arguments): ``--tensor-parallel-size``,
``--pipeline-parallel-size``, ``--data-parallel-size``, ``--enable-expert-parallel``,
``--max-model-len``, ``--max-num-seqs``, ``--max-num-batched-tokens``, ``--gpu-memory-utilization``,
``--kv-cache-dtype``, ``--quantization``, ``--dtype``; ``VLLM_PP_LAYER_PARTITION`` sets the layers
of each pipeline stage.
"""

from __future__ import annotations

from ..physics import Config, MemoryConventions
from .base import LaunchInput, release_tuple

NAME = "vllm"
# The release whose `vllm serve` flags these commands use (docs.vllm.ai engine arguments).
FLAGS_VERSION = "vLLM 0.11"
# The release an instance plans for when `search.engine_version` is not given: the first that
# counts CUDA-graph memory inside its budget, which later releases keep (a vLLM 0.27.1 log:
# "CUDA graph memory profiling is enabled (default since v0.21.0)", gpustack/runner#251). Planning
# with it never promises a KV cache that an older release, which leaves graphs outside, lacks.
DEFAULT_VERSION = "0.21.0"

# ---- Memory as vLLM V1 counts it at start-up (vllm/v1/worker/gpu_worker.py determine_available_memory):
# KV budget = gpu_memory_utilization x the torch-visible total - (weights + torch peak increase of the
# profile step + non-torch increase [+ the CUDA-graph estimate from 0.21]). Figures from the 31 vLLM
# 0.19.0 H100 logs of benchmarks/data/vllm_memory_logs.json (llm-d-planner accuracy sweep, each
# cited there), per GPU of rank 0 ("non-torch forward increase memory", "Graph capturing finished
# ... took X GiB"):
# Non-PyTorch memory the profile step adds on a GPU without the LM head: 0.07 GiB (Llama-3.1-8B at
# pp 2 and pp 4, stage 0: v035, v036): kernel modules loaded on first use.
NON_TORCH_BASE_GiB = 0.07
# ... on the stage that runs the LM head and sampler: 0.24-0.26 GiB at tp 1, pp 1 (v015, v027-v034,
# v052-v059, v065-v069), i.e. 0.18 GiB more than without them.
NON_TORCH_SAMPLER_GiB = 0.18
# ... in a TP group: 2.06-2.21 GiB at tp 2 and 4 (v013, v014, v037, v038, v045, v060, v061, v064),
# i.e. 1.85 GiB above tp 1: the custom all-reduce and NCCL buffers, which are allocated outside
# PyTorch's allocator (vllm-project/vllm#2031: "some memory (probably related to NCCL?) is
# allocated/freed not through the PyTorch memory allocator" when TP > 1).
NON_TORCH_TP_GiB = 1.85
# ... for pipeline point-to-point sends alone: none measurable (v035 / v036 show 0.07 GiB in all).
NON_TORCH_PP_GiB = 0.0
# CUDA graphs, from 0.21 reserved inside the budget (VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS on by
# default: vllm/envs.py "Enabled by default as of v0.21.0"; added opt-in by vllm-project/vllm#30515,
# which 0.19 logs advise setting). Captured sizes in the 0.19 logs: Llama-3.1-8B 0.91 GiB with its 32
# layers on one GPU (v027), 0.65 with 16 (pp 2, v035), 0.51 with 8 (pp 4, v036): a fixed pool plus a
# share per layer; the same rule gives 1.72 GiB for 80 layers (Llama-3.3-70B: 1.66-1.85, v013, v014,
# v064) and 0.85 for 28 (Qwen2.5-7B: 0.86, v052). Before 0.21 the graphs are captured after the KV
# cache is sized, in the memory the utilization leaves free, and are not counted here.
CUDA_GRAPH_BASE_GiB = 0.38
CUDA_GRAPH_PER_LAYER_GiB = 0.0167
# The first release that reserves CUDA graphs inside the budget.
CUDA_GRAPHS_IN_BUDGET_SINCE = (0, 21, 0)
# vLLM allocates the KV cache in blocks of 16 tokens on CUDA (CacheConfig.block_size default).
KV_BLOCK_TOKENS = 16


def memory_conventions(version: str | None = None) -> MemoryConventions:
    """How vLLM ``version`` (default :data:`DEFAULT_VERSION`) counts memory against its budget."""
    version = version or DEFAULT_VERSION
    graphs = release_tuple(version) >= CUDA_GRAPHS_IN_BUDGET_SINCE
    where = ("CUDA graphs inside the budget (from 0.21)" if graphs
             else "CUDA graphs outside the budget (before 0.21)")
    return MemoryConventions(
        engine=NAME, version=version, non_torch_base_GiB=NON_TORCH_BASE_GiB,
        non_torch_sampler_GiB=NON_TORCH_SAMPLER_GiB, non_torch_tp_GiB=NON_TORCH_TP_GiB,
        non_torch_pp_GiB=NON_TORCH_PP_GiB,
        cuda_graph_base_GiB=CUDA_GRAPH_BASE_GiB if graphs else 0.0,
        cuda_graph_per_layer_GiB=CUDA_GRAPH_PER_LAYER_GiB if graphs else 0.0,
        kv_block_tokens=KV_BLOCK_TOKENS, profiled_sampler=True,
        summary=(f"vLLM {version}: non-PyTorch memory {NON_TORCH_BASE_GiB:g} GiB per GPU, +{NON_TORCH_SAMPLER_GiB:g} on "
                 f"the stage with the LM head, +{NON_TORCH_TP_GiB:g} in a TP group; {where}"
                 + (f", {CUDA_GRAPH_BASE_GiB:g} GiB + {CUDA_GRAPH_PER_LAYER_GiB:g} GiB per layer" if graphs else "")),
    )
# How a step mixes prefill and decode (solver.simulate.engine): vLLM V1 schedules decodes first, then fills the step's token budget with prefill chunks (chunked prefill is always on in V1).
SCHEDULER_POLICY = "mixed"


def admission_gate(cfg: Config, scheduler_recv_interval: int = 1, attention_dp_balance_iters: int = 0,
                   batch_wait_timeout_iters: int = 0, batch_wait_max_tokens_ratio: float = 0.0,
                   max_num_batched_tokens: int = 0) -> dict:
    """When vLLM's scheduler takes new requests: every step (no setting holds them back)."""
    del cfg, scheduler_recv_interval, attention_dp_balance_iters, batch_wait_timeout_iters
    del batch_wait_max_tokens_ratio, max_num_batched_tokens
    return {}
# Fixed time per engine step (scheduling, input preparation, sampling bookkeeping), us; None: the GPU
# family's default in solver.physics.efficiency.
STEP_OVERHEAD_US: float | None = 274.3
# Per MoE layer per step beyond a dense layer's, us (Efficiency.moe_layer_overhead_s says what and why;
# fitted by benchmarks/fit_factors.py).
MOE_LAYER_OVERHEAD_US: float = 22.8
# Per generated token per step: detokenisation, streaming and bookkeeping on the engine's CPU, us.
TOKEN_OVERHEAD_US: float = 11.9
# Disaggregated serving (solver.physics.efficiency.Efficiency.kv_handoff_s / disagg_step_overhead_s),
# fitted on every third disaggregated calibration row that gives its worker counts
# (benchmarks/disagg_fidelity.py --fit; grids 0-200 ms by 25, 0-3000 us by 500): vLLM has 5 such rows,
# all one deployment (Kimi-K2.5 NVFP4 on GB200, 0.18, NixlConnector behind a proxy that sends each
# request twice): a 175 ms hand-off and 0.5 ms per decode step (1.5 ms before the per-MoE-layer
# overhead entered the step model). Thin evidence; override per deployment.
DISAGG_HANDOFF_MS: float = 175.0
DISAGG_STEP_OVERHEAD_US: float = 500.0
# Per request, from the client's send to the engine's queue (HTTP, tokenisation, IPC), ms.
REQUEST_OVERHEAD_MS: float = 40.0


def request_overhead_ms(version: str | None = None) -> float:
    """The front end's latency per request for a release (one figure for every release)."""
    del version
    return REQUEST_OVERHEAD_MS


def defaults(gpu_memory_GiB: float, gpu_name: str) -> dict[str, float]:
    """``vllm serve`` defaults: on GPUs of 70 GiB or more (not A100) 1024 sequences and 8192 tokens
    per step, else 256 and 2048 (vllm/engine/arg_utils.py, get_batch_defaults); 0.9 of the memory."""
    big = gpu_memory_GiB >= 70 and "a100" not in gpu_name
    return {"max_num_seqs": 1024 if big else 256, "max_num_batched_tokens": 8192 if big else 2048,
            "memory_utilization": 0.9}


def ep_layout_ok(is_moe: bool, group: int, ep: int) -> bool:
    """vLLM's ``--enable-expert-parallel`` spreads the experts over the whole group of TP x DP ranks
    (``group``): ep is 1 or the group."""
    return ep == 1 or (is_moe and ep == group)


EP_LAYOUT_RULE = "ep must be 1 or equal tp x attention_dp (vLLM's expert parallelism spans the TP x DP ranks)"


def attention_dp_ok(is_moe: bool, tp: int, adp: int) -> bool:
    """``--data-parallel-size`` with an MoE model: attention ranks of ``tp`` GPUs share the experts."""
    del tp
    return adp == 1 or is_moe


ATTENTION_DP_RULE = "attention data parallelism needs an MoE model (a dense model's DP ranks are replicas)"


def launch(li: LaunchInput) -> tuple[str, dict[str, str], list[str]]:
    """The ``vllm serve`` command, its environment and notes for a plan."""
    cfg = li.cfg
    notes: list[str] = []
    model, online_fp8 = li.model()
    v = ["vllm serve", model, f"--tensor-parallel-size {cfg.tp}", f"--pipeline-parallel-size {cfg.pp}"]
    seqs = li.max_num_seqs
    if cfg.adp > 1:
        # vLLM's DP ranks of an MoE model are attention-DP ranks whose experts form one group of
        # TP x DP GPUs; --max-num-seqs is per DP rank (each runs its own engine core and scheduler).
        v.append(f"--data-parallel-size {cfg.adp}")
        seqs = -(-li.max_num_seqs // cfg.adp)
        if cfg.dp > 1:
            notes.append(f"run {cfg.dp} such servers (one per replica) behind a load balancer")
    elif cfg.dp > 1:
        v.append(f"--data-parallel-size {cfg.dp}")
    if cfg.ep > 1:
        v.append("--enable-expert-parallel")
    v += [f"--max-model-len {li.max_model_len}", f"--max-num-seqs {seqs}",
          f"--max-num-batched-tokens {li.max_num_batched_tokens}",
          f"--gpu-memory-utilization {li.memory_utilization:g}"]
    if li.serves_16bit_as_fp16:
        # The cost model computes BF16 at the FP16 peak on such GPUs; the engine must be told.
        v.append("--dtype half")
        notes.append(f"{li.gpu.name} has no BF16: the model is served in FP16 (--dtype half), as costed")
    if cfg.kv_cache == "fp8":
        v.append("--kv-cache-dtype fp8")
    if online_fp8:
        v.append("--quantization fp8")
    elif model != li.repo:
        notes.append(f"{cfg.weights} weights: replace {model} by such a checkpoint (vLLM reads its quantization "
                     "from the checkpoint)")
    if cfg.weights == "fp16" and not li.no_bf16:
        v.append("--dtype float16")
    if cfg.redundant:
        # vLLM places replicas with its own load balancer (EPLB), at run time from the observed loads.
        v += ["--enable-eplb", f"--eplb-config '{{\"num_redundant_experts\": {cfg.redundant}}}'"]
    if li.expert_map_command:
        notes.append("vLLM loads no static expert map: the plan's balanced expert placement is SGLang's or "
                     "TensorRT-LLM's (vLLM's --enable-eplb rebalances at run time, which is not modelled)")
    env: dict[str, str] = {}
    if li.uneven:
        env["VLLM_PP_LAYER_PARTITION"] = ",".join(map(str, li.layers_per_stage))
    if li.nodes_used > 1:
        if cfg.dp > 1 or cfg.adp > 1:
            v.append("--data-parallel-backend ray")  # vLLM places DP ranks over nodes through Ray
        notes.append(f"spans {li.nodes_used} nodes: start a Ray cluster over them first and run the command on "
                     "the head node (vLLM multi-node serving)")
    env_prefix = " ".join(f"{k}={val}" for k, val in env.items())
    return (env_prefix + " " if env_prefix else "") + " ".join(v), env, notes
